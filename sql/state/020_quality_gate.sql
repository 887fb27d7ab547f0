-- claimsync state schema, migration 020: what the data-quality gate (claimsync.quality) needs
-- beyond 001's quarantine and validation_result tables.

-- Which run released a quarantined row (it passed again, or a full run no longer found it
-- failing), how many runs have seen it, and the claim it belongs to (a bad line holds back
-- its claim: the report groups by this).
ALTER TABLE claimsync.quarantine
    ADD COLUMN released_run_id text NULL,
    ADD COLUMN seen_runs       integer NOT NULL DEFAULT 1,
    ADD COLUMN claim_key       text NULL;
CREATE INDEX quarantine_open_idx ON claimsync.quarantine (source, entity) WHERE released_at IS NULL;
CREATE INDEX quarantine_last_run_idx ON claimsync.quarantine (last_run_id);
CREATE INDEX quarantine_released_run_idx ON claimsync.quarantine (released_run_id) WHERE released_run_id IS NOT NULL;

-- One result per suite per run: a rerun of the same run replaces it instead of adding a second.
CREATE UNIQUE INDEX validation_result_run_suite_idx ON claimsync.validation_result (run_id, suite);
-- The previous full run's row counts (row-count collapse check) are read by suite, newest first.
CREATE INDEX validation_result_suite_created_idx ON claimsync.validation_result (suite, created_at DESC);
