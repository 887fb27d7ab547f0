-- Lines (flow_detail) of expense claims, by the id of their flow (claimsync.extract maps it to
-- the claim code through the claims it took, and keeps only the lines of those). {lines_scope}
-- restricts them to the flows a run takes (TRUE when it takes all: no join then).
SELECT fd.flow_id,
       fd.seq,
       fd.fee_type,
       fd.amount,
       fd.invoice_code,
       fd.invoice_number,
       fd.invoice_date
FROM {schema}.flow_detail fd
WHERE {lines_scope}
