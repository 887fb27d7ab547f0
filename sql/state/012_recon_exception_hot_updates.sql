-- claimsync state schema, migration 012: let a daily run's refresh of the ledger be HOT updates.
-- Every full run sets last_seen/last_run_id on each exception it finds again (≈ 110,000 rows at
-- 1M claims). last_run_id was indexed although no query looks rows up by it, so each refresh
-- wrote a new entry into all eleven indexes of the table. Without that index, and with room
-- left on each page, PostgreSQL updates such rows in place of the page (heap-only tuples).

DROP INDEX IF EXISTS claimsync.recon_exception_last_run_idx;
ALTER TABLE claimsync.recon_exception SET (fillfactor = 70);
