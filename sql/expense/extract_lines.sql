-- Lines (flow_detail) of expense claims of the synced form type. {lines_scope} restricts them
-- to the claims a run takes (the same scope as extract_claims.sql).
SELECT fl.code,
       fd.seq,
       fd.fee_type,
       fd.amount,
       fd.invoice_code,
       fd.invoice_number,
       fd.invoice_date
FROM {schema}.flow_detail fd
JOIN {schema}.flow fl ON fl.id = fd.flow_id
WHERE fl.form_type = %(form_type)s AND ({lines_scope})
