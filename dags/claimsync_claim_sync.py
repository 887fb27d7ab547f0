"""
### claimsync_claim_sync — expense requests, approvals and payments between OA and expense, every 15 minutes

Every 15 minutes (Asia/Shanghai) this DAG reads the claims changed in the run's data
interval on both sides (OA `lastoperatedate`+`lastoperatetime`, expense `update_time`, plus
their counterparts by key) and writes what each side owns to the other
(SOURCE_SYSTEMS.md "Who owns what"):

- a new OA expense request (submitted or approved, no claim yet) → a new expense claim with
  its lines and `oa_request_id`; OA `bxdh` then gets the claim's code;
- OA's approval decision → expense `state` / `approve_time` (approved → `paying`,
  rejected or withdrawn → `rejected`);
- expense payment status, date and voucher → OA `fkzt` / `fkrq` / `pzh`.

Nothing moves backwards in its lifecycle and nothing a person changed after it was read is
overwritten: that becomes a `write_conflict` exception in the ledger. Amount differences,
duplicates and bypassed approvals are left to finance (the daily `claimsync_reconcile`).

**Flow** — `extract.open_run` → `extract.extract_changes` → `quality.validate_sources` →
`plan.plan_writes` →
`validate.check_delta` → `apply.apply_expense` → `apply.apply_oa` → `confirm.confirm_run`.
The plan (every write with its before- and after-image) is stored in the state database
under the run id `claimsync_claim_sync__<airflow run id>`; it is the audit of the run.

**Params** (for manual runs)

| param | default | meaning |
|---|---|---|
| `full` | `false` | read everything instead of the data interval |
| `dry_run` | `false` | plan and store the plan (see `claimsync.planned_write`), write nothing |
| `force` | `false` | apply a plan the circuit breaker stopped (> `CLAIMSYNC_DELTA_LIMIT` of a table) |

**Connections** — `claimsync_oa`, `claimsync_expense`, `claimsync_state` (ids configurable
with `CLAIMSYNC_OA_CONN_ID` etc.), resolved inside the tasks only.

**What a rerun of each task does** — every task is safe to clear and rerun, alone or with
its downstream tasks; the systems end up as if it had run once:
- `open_run` reopens the same run: same window, same params. After failed runs the window
  reaches back to the last confirmed position (the watermark), so no interval is skipped.
- `extract_changes` re-reads the window and replaces the staged frames — until the run has
  a plan; after that it does nothing.
- `validate_sources` (data-quality gate) re-validates the staged frames: the same rows stay in
  quarantine (nothing duplicated) and the run's validation results are replaced. When the gate
  stops the run (too many bad rows, a collapsed extraction) it fails without retries: fix the
  data, or trigger a new run with `force=true` to quarantine the bad rows and sync the rest.
- `plan_writes` plans once per run: a rerun keeps the stored plan. To plan again from the
  systems' current state, trigger a new run (later changes are picked up by the next run anyway).
- `check_delta` re-checks the stored plan; a stopped run stays stopped — trigger a new run
  with `force=true` once you have looked at the plan (`dry_run=true` shows it).
- `apply_expense` / `apply_oa` apply only batches not yet confirmed. A batch written but not
  confirmed (the worker died in between) is recognised: rows already at their after-image
  count as applied, rows still at their before-image are written, others become conflicts.
  Nothing is written twice; each change has exactly one audit row and one `flow_log` row.
- `confirm_run` checks every batch is confirmed, advances the watermark, finishes the run.

**Backfilling** — `airflow backfill create --dag-id claimsync_claim_sync --from-date 2026-03-31T09:00+08:00
--to-date 2026-03-31T09:30+08:00 --max-active-runs 1` (or the UI's Backfill, `POST /api/v2/backfills`)
runs one run per 15-minute interval, oldest first, each reading its own window. It is rarely
needed: after an outage the next run's window already reaches back to the watermark.
Intervals that have a run are skipped (`--reprocess-behavior none`); rerunning a completed
run (`completed`, or Clear in the UI) writes nothing.

A copy of this flow started from the CLI (`claimsync sync claims`) meanwhile waits for the
task holding the flow's lock, or exits. `claimsync revert <run id>` puts a run's
before-images back where the values are still the ones it wrote.
"""

from __future__ import annotations

from _claimsync_sync import build_sync_dag

dag = build_sync_dag(
    dag_id="claimsync_claim_sync",
    flow="claims",
    schedule="*/15 * * * *",
    doc_md=__doc__ or "",
    tags=["claims"],
)
