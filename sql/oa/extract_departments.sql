-- OA departments (hrmdepartment) that {scope} selects, with their parent's code.
SELECT d.departmentmark,
       d.departmentname,
       p.departmentmark AS parent_departmentmark,
       d.canceled,
       d.modified
FROM {schema}.hrmdepartment d
LEFT JOIN {schema}.hrmdepartment p ON p.id = d.supdepid
WHERE {scope}
