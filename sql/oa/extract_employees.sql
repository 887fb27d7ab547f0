-- OA employees (hrmresource) that {scope} selects, with their department code.
-- Personal data (mobile, certificatenum) is never read.
SELECT e.workcode,
       e.lastname,
       d.departmentmark,
       e.status,
       e.email,
       e.lastmoddate,
       e.lastmodtime
FROM {schema}.hrmresource e
LEFT JOIN {schema}.hrmdepartment d ON d.id = e.departmentid
WHERE {scope}
