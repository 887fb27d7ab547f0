-- Expense staff that {scope} selects, with their department code (cellphone is never read).
SELECT s.code,
       s.name,
       d.code AS department_code,
       s.email,
       s.active,
       s.update_time
FROM {schema}.staff s
LEFT JOIN {schema}.department d ON d.id = s.department_id
WHERE {scope}
