-- Expense claims (flow) of the synced form type: one row per claim, with the submitter's
-- and department's codes. Placeholders: {schema} (quoted), {scope} and {scope_bucket}
-- (see sql/oa/extract_claims.sql). Amounts come out as their exact decimal text.
SELECT fl.id,
       fl.code,
       fl.oa_request_id,
       s.code           AS submitter_code,
       d.code           AS department_code,
       fl.sum_amount,
       fl.pay_money,
       fl.currency,
       fl.state,
       fl.approve_time,
       fl.pay_time,
       fl.voucher_no,
       fl.create_time,
       fl.update_time,
       {scope_bucket}   AS scope_bucket
FROM {schema}.flow fl
LEFT JOIN {schema}.staff s ON s.id = fl.submitter_id
LEFT JOIN {schema}.department d ON d.id = fl.department_id
WHERE fl.form_type = %(form_type)s AND ({scope})
