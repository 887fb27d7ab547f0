-- Lines (明细) of OA expense requests, amounts and dates as stored text. {lines_scope}
-- restricts them to the requests a run takes (TRUE when it takes all: claimsync keeps
-- only the lines of the requests it extracted).
SELECT f.requestid,
       d.id,
       d.fylx,
       d.je,
       d.fpdm,
       d.fphm,
       d.kprq
FROM {schema}.{lines_table} d
JOIN {schema}.{form_table} f ON f.id = d.mainid
WHERE {lines_scope}
