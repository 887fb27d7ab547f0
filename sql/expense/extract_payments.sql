-- Payments of expense claims, by flow id; {lines_scope} as in extract_lines.sql. The payee's
-- bank account is masked here, in the query, so the clear number never leaves the database
-- (first and last four kept from 12 characters up, as claimsync.masking.mask_bank_account does).
SELECT p.id,
       p.flow_id,
       p.amount,
       p.status,
       p.payee_name,
       CASE WHEN length(p.payee_account) >= 12
            THEN left(p.payee_account, 4) || ' **** **** ' || right(p.payee_account, 4)
            WHEN length(p.payee_account) > 4 THEN '**** ' || right(p.payee_account, 4)
            ELSE '****' END AS payee_account_masked,
       p.create_time,
       p.finish_time,
       p.update_time
FROM {schema}.payment p
WHERE {lines_scope}
