-- claimsync state schema, migration 011: partial results of a bucketed reconciliation.
-- Each bucket task (a mapped Airflow task, possibly on another worker) stores its result here;
-- the final task merges the buckets of its run. A rerun of a bucket replaces its rows.

CREATE TABLE claimsync.recon_bucket_result (
    run_id      text NOT NULL REFERENCES claimsync.sync_run (run_id),
    buckets     integer NOT NULL CHECK (buckets >= 1),
    bucket      integer NOT NULL CHECK (bucket >= 0 AND bucket < buckets),
    part        text NOT NULL,               -- which frame of the partial result, e.g. 'exceptions'
    figures     jsonb NOT NULL DEFAULT '{}'::jsonb,  -- counts: oa_claims, expense_claims, matched, …
    payload     bytea NOT NULL,              -- the frame as Parquet (exact types, compressed)
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, buckets, bucket, part)
);
