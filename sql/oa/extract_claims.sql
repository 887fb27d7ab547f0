-- OA expense requests of the configured workflow: one row per request, the form header,
-- the claimant, and the last decisive approval-log entry (which the lifecycle needs).
-- Placeholders: {schema} {form_table} (quoted identifiers); {scope}: which requests (all,
-- a window of the change cursor, a hash bucket, or given keys; see claimsync.extract);
-- {log_scope}: the same restriction for the log (TRUE when every request is taken);
-- {scope_bucket}: the bucket of a row the run's window selected, else NULL.
-- Values are bound parameters. Text stays text: dates, times and amounts as stored.
SELECT r.requestid,
       f.id              AS form_id,
       r.requestmark,
       f.bxdh,
       e.workcode        AS sqr_workcode,
       e.status          AS sqr_status,
       d.departmentmark  AS sqbm_departmentmark,
       f.bxje,
       f.bz,
       r.currentnodetype,
       r.deleted,
       f.fkzt,
       f.fkrq,
       f.pzh,
       r.createdate,
       r.createtime,
       r.lastoperatedate,
       r.lastoperatetime,
       g.logtype         AS last_logtype,
       g.operatedate     AS last_logdate,
       g.operatetime     AS last_logtime,
       {scope_bucket}    AS scope_bucket
FROM {schema}.workflow_requestbase r
JOIN {schema}.{form_table} f ON f.requestid = r.requestid
LEFT JOIN {schema}.hrmresource e ON e.id = f.sqr
LEFT JOIN {schema}.hrmdepartment d ON d.id = f.sqbm
LEFT JOIN (
    -- decisive = submit, approve, send back, withdraw, force-archive; the latest by date, time, logid.
    -- The text dates compare byte by byte (COLLATE "C"): the same order whatever the database's
    -- collation, and a cheaper sort of the whole log than a locale's.
    SELECT DISTINCT ON (l.requestid) l.requestid, l.logtype, l.operatedate, l.operatetime
    FROM {schema}.workflow_requestlog l
    WHERE l.logtype IN ('2', '0', '3', 'r', 'e') AND ({log_scope})
    ORDER BY l.requestid, l.operatedate COLLATE "C" DESC, l.operatetime COLLATE "C" DESC, l.logid DESC
) g ON g.requestid = r.requestid
WHERE r.workflowid = %(workflow_id)s AND ({scope})
