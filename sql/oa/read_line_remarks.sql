-- 说明 of the form lines of the given requests, in line order (the canonical line seq is the
-- position by line id), for the lines of the claims claimsync creates (claimsync.sync).
-- Placeholders: {schema} {form_table} {lines_table} (quoted). Bound: %(ids)s.
SELECT f.requestid,
       row_number() OVER (PARTITION BY f.requestid ORDER BY d.id) AS seq,
       d.sm
FROM {schema}.{lines_table} d
JOIN {schema}.{form_table} f ON f.id = d.mainid
WHERE f.requestid = ANY(%(ids)s)
