-- claimsync state schema, migration 001.
-- Applied by `claimsync db init` in one transaction, recorded in claimsync.schema_migration.

CREATE TABLE claimsync.sync_run (
    run_id          text PRIMARY KEY,
    flow            text NOT NULL,               -- org | claims | reconcile
    status          text NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'planned', 'applied', 'succeeded', 'failed', 'stopped')),
    window_start    timestamptz NULL,
    window_end      timestamptz NULL,
    as_of           timestamptz NOT NULL,
    full_run        boolean NOT NULL DEFAULT false,
    dry_run         boolean NOT NULL DEFAULT false,
    forced          boolean NOT NULL DEFAULT false,
    triggered_by    text NOT NULL,
    config_version  text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz NULL,
    summary         jsonb NOT NULL DEFAULT '{}'::jsonb,
    error           text NULL
);
CREATE INDEX sync_run_flow_started_idx ON claimsync.sync_run (flow, started_at DESC);

-- One row per planned write; its status carries it through apply, confirm and revert.
CREATE TABLE claimsync.planned_write (
    id            bigserial PRIMARY KEY,
    run_id        text NOT NULL REFERENCES claimsync.sync_run (run_id),
    target        text NOT NULL CHECK (target IN ('oa', 'expense')),
    table_name    text NOT NULL,
    operation     text NOT NULL CHECK (operation IN ('insert', 'update')),
    record_key    text NOT NULL,
    batch_no      integer NOT NULL DEFAULT 0,
    before_image  jsonb NULL,
    after_image   jsonb NOT NULL,
    status        text NOT NULL DEFAULT 'planned'
                  CHECK (status IN ('planned', 'applied', 'conflict', 'reverted', 'revert_conflict')),
    applied_at    timestamptz NULL,
    applied_by    text NULL,
    reverted_at   timestamptz NULL,
    reverted_by   text NULL,
    UNIQUE (run_id, target, table_name, record_key)
);
CREATE INDEX planned_write_run_status_idx ON claimsync.planned_write (run_id, status);

CREATE TABLE claimsync.write_batch (
    run_id        text NOT NULL REFERENCES claimsync.sync_run (run_id),
    target        text NOT NULL,
    table_name    text NOT NULL,
    batch_no      integer NOT NULL,
    status        text NOT NULL DEFAULT 'planned' CHECK (status IN ('planned', 'confirmed')),
    applied_count integer NOT NULL DEFAULT 0,
    conflict_count integer NOT NULL DEFAULT 0,
    confirmed_at  timestamptz NULL,
    PRIMARY KEY (run_id, target, table_name, batch_no)
);

-- Advances only after a run's writes are confirmed. An optimisation: losing it costs time, never data.
CREATE TABLE claimsync.watermark (
    flow        text NOT NULL,
    source      text NOT NULL,
    position    timestamptz NOT NULL,
    run_id      text NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flow, source)
);

-- One row per (code, business key) across runs.
CREATE TABLE claimsync.recon_exception (
    id               bigserial PRIMARY KEY,
    code             text NOT NULL,
    business_key     text NOT NULL,
    severity         text NOT NULL,
    status           text NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'acknowledged', 'resolved', 'written_off')),
    owner            text NULL,
    note             text NULL,
    oa_request_id    bigint NULL,
    claim_code       text NULL,
    employee_code    text NULL,
    department_code  text NULL,
    oa_amount        numeric(18,2) NULL,
    expense_amount   numeric(18,2) NULL,
    amount_impact    numeric(18,2) NOT NULL DEFAULT 0,
    currency         text NOT NULL DEFAULT 'CNY',
    oa_state         text NULL,
    expense_state    text NULL,
    detail           text NOT NULL DEFAULT '',
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    first_run_id     text NOT NULL,
    last_run_id      text NOT NULL,
    resolved_at      timestamptz NULL,
    UNIQUE (code, business_key)
);
CREATE INDEX recon_exception_status_idx ON claimsync.recon_exception (status, code);
CREATE INDEX recon_exception_last_run_idx ON claimsync.recon_exception (last_run_id);

-- Which exceptions each reconciliation run saw: the per-run report and the 30-run trend.
CREATE TABLE claimsync.recon_run_exception (
    run_id        text NOT NULL REFERENCES claimsync.sync_run (run_id),
    exception_id  bigint NOT NULL REFERENCES claimsync.recon_exception (id),
    PRIMARY KEY (run_id, exception_id)
);

-- Every person's action on an exception; nothing here is ever deleted.
CREATE TABLE claimsync.recon_exception_event (
    id            bigserial PRIMARY KEY,
    exception_id  bigint NOT NULL REFERENCES claimsync.recon_exception (id),
    action        text NOT NULL,
    from_status   text NULL,
    to_status     text NULL,
    actor         text NOT NULL,
    note          text NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recon_exception_event_exception_idx ON claimsync.recon_exception_event (exception_id, at);

-- Rows that failed a row-level check: left out of reconcile and write-back until fixed.
CREATE TABLE claimsync.quarantine (
    id            bigserial PRIMARY KEY,
    source        text NOT NULL,          -- oa | expense
    entity        text NOT NULL,          -- claims, lines, payments, employees, departments
    record_key    text NOT NULL,
    expectation   text NOT NULL,
    reason        text NOT NULL,
    offending     jsonb NOT NULL DEFAULT '{}'::jsonb,  -- personal data masked
    first_run_id  text NOT NULL,
    last_run_id   text NOT NULL,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    released_at   timestamptz NULL,
    UNIQUE (source, entity, record_key, expectation)
);

CREATE TABLE claimsync.validation_result (
    id          bigserial PRIMARY KEY,
    run_id      text NOT NULL,
    suite       text NOT NULL,
    success     boolean NOT NULL,
    statistics  jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX validation_result_run_idx ON claimsync.validation_result (run_id);

CREATE TABLE claimsync.signoff (
    run_id     text NOT NULL REFERENCES claimsync.sync_run (run_id),
    role       text NOT NULL CHECK (role IN ('preparer', 'reviewer')),
    signed_by  text NOT NULL,
    signed_at  timestamptz NOT NULL DEFAULT now(),
    note       text NULL,
    PRIMARY KEY (run_id, role)
);
