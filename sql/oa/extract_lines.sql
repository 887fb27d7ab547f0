-- Lines (明细) of OA expense requests, amounts and dates as stored text, by the id of the form
-- they belong to (claimsync.extract maps it to the request id through the claims it took, and
-- keeps only the lines of those). {lines_scope} restricts them to the forms of the requests a
-- run takes (TRUE when it takes all: no join then, the lines table is read as it is stored).
SELECT d.mainid AS form_id,
       d.id,
       d.fylx,
       d.je,
       d.fpdm,
       d.fphm,
       d.kprq
FROM {schema}.{lines_table} d
WHERE {lines_scope}
