-- claimsync state schema, migration 032: confirming a batch costs as little as possible.
--
-- A batch's rows are read and confirmed by (run, target, table, batch), once per batch:
-- without an index on that, each batch scanned every row its run planned for the table.
CREATE INDEX planned_write_batch_idx ON claimsync.planned_write (run_id, target, table_name, batch_no);

-- Confirming sets status, applied_at, applied_by: with no index on status (nor one whose
-- predicate reads it) and room left on each page, PostgreSQL updates the row in place (HOT)
-- instead of adding an entry to every index — a third of the confirm's cost at 50,000 rows.
-- Nothing reads planned_write by status alone: runs read it by run (the unique key), and
-- claimsync.sync finds deferred writes among the runs since the flow's last full run.
DROP INDEX claimsync.planned_write_run_status_idx;
DROP INDEX claimsync.planned_write_deferred_idx;
ALTER TABLE claimsync.planned_write SET (fillfactor = 50);
