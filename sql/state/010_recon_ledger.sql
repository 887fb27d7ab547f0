-- claimsync state schema, migration 010: what the exception ledger and the report need
-- beyond 001 (claimsync.ledger writes these, claimsync.report reads them).

-- Both sides of an exception as last seen (canonical fields, no personal data), for the
-- report's side-by-side view with the differing fields marked.
ALTER TABLE claimsync.recon_exception
    ADD COLUMN oa_side      jsonb NULL,
    ADD COLUMN expense_side jsonb NULL;

-- What each run saw of each exception, frozen at that run: re-rendering an old run's report
-- shows that run's amounts and states, not today's.
ALTER TABLE claimsync.recon_run_exception
    ADD COLUMN severity        text NULL,
    ADD COLUMN oa_amount       numeric(18,2) NULL,
    ADD COLUMN expense_amount  numeric(18,2) NULL,
    ADD COLUMN amount_impact   numeric(18,2) NOT NULL DEFAULT 0,
    ADD COLUMN currency        text NULL,
    ADD COLUMN oa_state        text NULL,
    ADD COLUMN expense_state   text NULL,
    ADD COLUMN detail          text NOT NULL DEFAULT '',
    ADD COLUMN oa_side         jsonb NULL,
    ADD COLUMN expense_side    jsonb NULL;
CREATE INDEX recon_run_exception_exception_idx ON claimsync.recon_run_exception (exception_id);

-- Which run caused a system event (reopened, auto_resolved); null for a person's action.
ALTER TABLE claimsync.recon_exception_event
    ADD COLUMN run_id text NULL;
CREATE INDEX recon_exception_event_run_idx ON claimsync.recon_exception_event (run_id) WHERE run_id IS NOT NULL;

-- One row per reconciliation run: the population and match figures behind the match rate
-- and the 30-run trend.
CREATE TABLE claimsync.recon_run_stats (
    run_id           text PRIMARY KEY REFERENCES claimsync.sync_run (run_id),
    as_of            timestamptz NOT NULL,
    full_run         boolean NOT NULL,
    buckets          integer NOT NULL DEFAULT 1 CHECK (buckets >= 1),
    oa_claims        bigint NOT NULL DEFAULT 0,
    expense_claims   bigint NOT NULL DEFAULT 0,
    matched          bigint NOT NULL DEFAULT 0,
    clean_matched    bigint NOT NULL DEFAULT 0,
    match_rate       numeric(9,6) NULL,          -- clean_matched / population; null when nothing to match
    exception_count  bigint NOT NULL DEFAULT 0,
    amount_impact    numeric(18,2) NOT NULL DEFAULT 0,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recon_run_stats_as_of_idx ON claimsync.recon_run_stats (as_of DESC);
