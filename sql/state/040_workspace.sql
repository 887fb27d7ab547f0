-- claimsync state schema, migration 040: what finance's workspace (claimsync.workspace) needs
-- to answer in well under 500 ms at 100k exceptions.

-- Per-run figures by code, department and age bucket, computed once a run has finished
-- (what a finished run saw never changes) and read by the runs list, the run page and the
-- 30-run trend instead of re-aggregating recon_run_exception on every page view.
-- A cache, not history: rows are recomputed when the run is recorded again (a rerun).
CREATE TABLE claimsync.workspace_run_rollup (
    run_id           text NOT NULL REFERENCES claimsync.sync_run (run_id),
    code             text NOT NULL,
    severity         text NOT NULL,
    department_code  text NOT NULL,               -- '' when the exception has none
    age_bucket       smallint NOT NULL CHECK (age_bucket BETWEEN 0 AND 3),  -- 0–7, 8–30, 31–60, > 60 days
    currency         text NOT NULL,
    exceptions       bigint NOT NULL,
    amount_impact    numeric(18,2) NOT NULL,           -- summed per currency, never across
    PRIMARY KEY (run_id, code, department_code, age_bucket, currency)
);

-- Which runs have a rollup, and for which recording of the run (sync_run.finished_at).
CREATE TABLE claimsync.workspace_run_rollup_state (
    run_id       text PRIMARY KEY REFERENCES claimsync.sync_run (run_id),
    finished_at  timestamptz NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now()
);

-- An 'assign' event records the owner it gave the exception (null for other events).
ALTER TABLE claimsync.recon_exception_event ADD COLUMN owner text NULL;

-- The exception list's filters and orders (keyset paging on (amount_impact, id) and (first_seen, id)).
CREATE INDEX recon_exception_amount_idx ON claimsync.recon_exception (amount_impact DESC, id DESC);
CREATE INDEX recon_exception_first_seen_idx ON claimsync.recon_exception (first_seen, id);
CREATE INDEX recon_exception_department_idx ON claimsync.recon_exception (department_code, id);
CREATE INDEX recon_exception_severity_idx ON claimsync.recon_exception (severity, id);
CREATE INDEX recon_exception_owner_idx ON claimsync.recon_exception (owner) WHERE owner IS NOT NULL;
CREATE INDEX recon_exception_claim_code_idx ON claimsync.recon_exception (claim_code);
CREATE INDEX recon_exception_request_idx ON claimsync.recon_exception (oa_request_id);
-- Reconciliation runs, newest first (the runs list pages on as_of, run_id).
CREATE INDEX sync_run_reconcile_idx ON claimsync.sync_run (as_of DESC, run_id DESC) WHERE flow = 'reconcile';
