-- Expense departments that {scope} selects, with their parent's code.
SELECT d.code,
       d.name,
       p.code AS parent_code,
       d.active,
       d.update_time
FROM {schema}.department d
LEFT JOIN {schema}.department p ON p.id = d.parent_id
WHERE {scope}
