-- What a new expense claim takes from its OA request beyond the canonical model, read by key
-- for the requests claimsync is about to create claims for (claimsync.sync).
-- Placeholders: {schema} (quoted). Bound: %(ids)s. Times are local text (settings.timezone).
SELECT r.requestid,
       r.requestname,
       (SELECT min(l.operatedate || ' ' || l.operatetime)
          FROM {schema}.workflow_requestlog l
         WHERE l.requestid = r.requestid AND l.logtype = '2') AS submitted
FROM {schema}.workflow_requestbase r
WHERE r.requestid = ANY(%(ids)s)
