-- Mobile numbers of the given employees, for syncing expense staff.cellphone (claimsync.sync).
-- Personal data: read only for the codes a sync compares, never logged or shown unmasked.
-- Placeholders: {schema} (quoted). Bound: %(codes)s.
SELECT e.workcode, e.mobile
FROM {schema}.hrmresource e
WHERE e.workcode = ANY(%(codes)s)
