-- Cellphones of the given staff, the before-image of a cellphone write (claimsync.sync).
-- Personal data: read only for the codes a sync compares, never logged or shown unmasked.
-- Placeholders: {schema} (quoted). Bound: %(codes)s.
SELECT s.code, s.cellphone
FROM {schema}.staff s
WHERE s.code = ANY(%(codes)s)
