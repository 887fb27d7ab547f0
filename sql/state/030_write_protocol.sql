-- claimsync state schema, migration 030: what the write protocol (claimsync.writeback) needs
-- beyond 001. planned_write rows are the audit: one per change, with who/when/run/before/after.

-- 'deferred': the write could not be applied yet for a reason that needs no person (a row it
-- refers to, e.g. the submitter of a new claim, does not exist on the target yet); a later
-- run plans it again.
ALTER TABLE claimsync.planned_write DROP CONSTRAINT planned_write_status_check;
ALTER TABLE claimsync.planned_write ADD CONSTRAINT planned_write_status_check
    CHECK (status IN ('planned', 'applied', 'conflict', 'deferred', 'reverted', 'revert_conflict'));

ALTER TABLE claimsync.planned_write
    -- Why the plan wants this change, in one human sentence (also the flow_log comment).
    ADD COLUMN note          text NOT NULL DEFAULT '',
    -- Why a write was not applied (conflict, deferred, revert_conflict).
    ADD COLUMN detail        text NULL,
    -- What the target held instead when the write (or its revert) found it changed; personal data masked.
    ADD COLUMN found_image   jsonb NULL,
    -- The target's change cursor as the applied write left it (expense update_time; null for OA),
    -- so a revert of an inserted row can tell that nobody touched the row since.
    ADD COLUMN target_cursor timestamptz NULL,
    -- Another write of the same run this one needs first, as target:table:record_key (e.g. OA
    -- bxdh waits for the expense claim it names); deferred if that write was not applied.
    ADD COLUMN depends_on    text NULL;

CREATE INDEX planned_write_record_idx ON claimsync.planned_write (target, table_name, record_key);
-- Deferred writes are carried into the next run of their flow (claimsync.sync).
CREATE INDEX planned_write_deferred_idx ON claimsync.planned_write (target, table_name, record_key)
    WHERE status = 'deferred';

-- The canonical frames a DAG run extracted, staged between its extract and plan tasks
-- (Parquet, one row per frame). Deleted when the run finishes; a failed run keeps them
-- for inspection.
CREATE TABLE claimsync.run_stage (
    run_id      text NOT NULL REFERENCES claimsync.sync_run (run_id),
    name        text NOT NULL,
    row_count   bigint NOT NULL,
    data        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, name)
);
