-- Least-privilege grants on the expense database (合思 reference schema).
-- Variables: :"schema" :"reader" :"writer" (see sql/roles/oa.sql).
-- The writer inserts the rows claimsync creates (departments, staff, claims and their
-- lines, its own flow_log entries) and updates only the fields OA owns. It never
-- deletes, and never touches amounts or payments.

REVOKE ALL ON ALL TABLES IN SCHEMA :"schema" FROM :"reader", :"writer";
GRANT USAGE ON SCHEMA :"schema" TO :"reader", :"writer";

GRANT SELECT ON
    :"schema".department, :"schema".staff, :"schema".flow, :"schema".flow_detail,
    :"schema".payment, :"schema".flow_log
TO :"reader";

GRANT SELECT ON :"schema".department, :"schema".staff, :"schema".flow, :"schema".flow_detail TO :"writer";
GRANT INSERT ON :"schema".department, :"schema".staff, :"schema".flow, :"schema".flow_detail TO :"writer";
GRANT UPDATE (code, name, parent_id, active, update_time) ON :"schema".department TO :"writer";
GRANT UPDATE (name, department_id, email, cellphone, active, update_time) ON :"schema".staff TO :"writer";
GRANT UPDATE (state, approve_time, update_time) ON :"schema".flow TO :"writer";
GRANT INSERT (flow_id, action, operator_id, time, comment) ON :"schema".flow_log TO :"writer";
GRANT USAGE ON SEQUENCE :"schema".flow_log_id_seq TO :"writer";
