"""
### claimsync_org_sync — departments and employees from OA to expense, hourly

Every hour (Asia/Shanghai) this DAG reads the departments and employees changed in the
run's data interval in OA (`hrmdepartment.modified`, `hrmresource.lastmoddate` +
`lastmodtime`) and in expense (`update_time`), and makes expense follow OA, the system of
record (SOURCE_SYSTEMS.md "Who owns what"):

- an OA department or active employee (status ≤ 3) missing in expense is created;
- expense `department` name / parent / active and `staff` name / department / email /
  cellphone / active (= OA status ≤ 3) take OA's values where they differ.

Expense-only departments and staff are left alone. A value a person changed in expense
after it was read is not overwritten: it becomes a `write_conflict` exception. Cellphones
are personal data: they are compared and written, never logged or shown unmasked.

**Flow** — `extract.open_run` → `extract.extract_changes` → `quality.validate_sources` →
`plan.plan_writes` →
`validate.check_delta` → `apply.apply_expense` → `confirm.confirm_run`. The plan (every
write with its before- and after-image) is stored in the state database under the run id
`claimsync_org_sync__<airflow run id>`; it is the audit of the run.

**Params** (for manual runs)

| param | default | meaning |
|---|---|---|
| `full` | `false` | compare every department and employee instead of the data interval |
| `dry_run` | `false` | plan and store the plan (see `claimsync.planned_write`), write nothing |
| `force` | `false` | apply a plan the circuit breaker stopped (> `CLAIMSYNC_DELTA_LIMIT` of a table) |

**Connections** — `claimsync_oa`, `claimsync_expense`, `claimsync_state` (ids configurable
with `CLAIMSYNC_OA_CONN_ID` etc.), resolved inside the tasks only.

**What a rerun of each task does** — every task is safe to clear and rerun:
- `open_run` reopens the same run: same window, same params; after failed runs the window
  reaches back to the watermark, so no interval is skipped.
- `extract_changes` re-reads the window and replaces the staged frames, until the run has a plan.
- `validate_sources` (data-quality gate) re-validates the staged frames (quarantine not duplicated);
  a stopped run fails without retries: fix the data, or trigger a new run with `force=true`.
- `plan_writes` plans once per run; a rerun keeps the stored plan (trigger a new run to plan again).
- `check_delta` re-checks the stored plan; a stopped run stays stopped (new run with `force=true`).
- `apply_expense` applies only unconfirmed batches and recognises a batch that was written
  but not confirmed: nothing is written twice, each change has exactly one audit row.
- `confirm_run` checks every batch is confirmed, advances the watermark, finishes the run.

**Backfilling** — `airflow backfill create --dag-id claimsync_org_sync --from-date … --to-date …
--max-active-runs 1` (or the UI's Backfill) runs one run per hour, oldest first, each reading
its own window; rarely needed, as the next run's window reaches back to the watermark anyway.

Claims of a new employee wait (deferred, no exception) until this DAG has created them in
expense; the next `claimsync_claim_sync` run then creates the claims.
"""

from __future__ import annotations

from _claimsync_sync import build_sync_dag

dag = build_sync_dag(
    dag_id="claimsync_org_sync",
    flow="org",
    schedule="0 * * * *",
    doc_md=__doc__ or "",
    tags=["org"],
)
