"""
### claimsync_reconcile — daily reconciliation of OA and expense, and the finance report

Every day at 00:00 Asia/Shanghai this DAG reconciles the OA system (泛微 e-cology style)
with the expense system (合思 style) as of the end of the run's data interval, records
what disagrees in claimsync's exception ledger (state database) and publishes the
finance report (`report.html`, `report.xlsx`, `exceptions.csv`) for the run.

**Flow** — `prepare.open_run` → `validate.validate_sources` (the data-quality gate) →
`reconcile.list_buckets` → `reconcile.reconcile_bucket`
(one mapped task per hash bucket of the business key) → `publish.record_ledger` (merge
the buckets, cross-bucket rules, exception ledger) → `publish.close_run` (the run
succeeded; alert on new critical exceptions) → `publish.render_report`.

**Params** (for manual runs)

- `as_of` — ISO 8601 time or date to reconcile as of (without an offset: Asia/Shanghai).
  Default: the run's data interval end, else its logical date, else when a manual run
  was created. Never the wall clock, so a rerun reconciles as of the same instant.
- `full` (default `true`) — reconcile everything and resolve exceptions that are gone;
  `false` reconciles only records changed in the data interval and resolves nothing.
- `buckets` (default `1`, or `CLAIMSYNC_BUCKETS` in the DAG processor's environment) — split
  the reconciliation into N hash buckets of the business key, one mapped task each, so the
  work spreads over workers (e.g. CeleryExecutor).
- `force` (default `false`) — continue past the data-quality gate's circuit breaker: bad
  rows are still quarantined and left out, the rest is reconciled.

**Connections** — `claimsync_oa`, `claimsync_expense`, `claimsync_state` (override the
ids with `CLAIMSYNC_OA_CONN_ID` etc.). They are resolved inside the tasks, never while
the file is parsed. Report files go to `$CLAIMSYNC_REPORT_DIR/<run id>/` (default
`$AIRFLOW_HOME/claimsync-reports`); the same report renders from the state database in
the claimsync UI.

**Rerunning: what a rerun of each task does** — every task is safe to clear and rerun,
alone or with its downstream:
- `open_run` re-opens the run's row (same run id, nothing duplicated) and drops partial
  results left by an earlier attempt with a different bucket count;
- `validate_sources` re-reads both systems and validates them again: rows still bad stay
  in quarantine (no duplicates), fixed rows are released, the run's validation results are
  replaced. A stopped run (data-quality gate) fails this task without retries: fix the data,
  or trigger the run again with `force=true`;
- `list_buckets` returns the same bucket list again (the count comes from `open_run`);
- `reconcile_bucket` re-reads both systems, leaves out what `validate_sources` quarantined
  for the run, and replaces its bucket's partial result;
- `record_ledger` re-merges the partials and rewrites this run's ledger entries: counts,
  first/last seen and events are not duplicated; exceptions a person acknowledged or
  wrote off keep their status;
- `close_run` marks the run succeeded again, and repeats the new-critical-exceptions alert;
- `render_report` re-renders the files from the ledger (a failure here marks the run failed).
Nothing here writes to OA or the expense system. On failure the callback logs the run id
and the number of exceptions found so far.

**Backfilling** — `airflow backfill create --dag-id claimsync_reconcile --from-date … --to-date …
--max-active-runs 1` runs one reconciliation per day, each as of that day's end. OA and
expense keep no history, so a backfilled run reconciles the systems as they are now: it
fills gaps in the run list and the trend, it does not reproduce a past day.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task, task_group

from _claimsync_common import (
    DEFAULT_ARGS,
    claimsync_settings,
    on_task_failure,
    report_dir,
    run_as_of,
    run_window,
    triggered_by,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def default_buckets() -> int:
    """The ``buckets`` param's default, so scheduled runs scale out too: CLAIMSYNC_BUCKETS (1-64)
    in the environment of the DAG processor, else 1. Read when the file is parsed (no Variable)."""
    text = os.environ.get("CLAIMSYNC_BUCKETS", "").strip()
    return min(max(int(text), 1), 64) if text.isdigit() else 1


@dag(
    dag_id="claimsync_reconcile",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="Asia/Shanghai"),
    start_date=datetime(2026, 1, 1, tzinfo=SHANGHAI),
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "on_failure_callback": on_task_failure},
    tags=["claimsync", "reconcile", "finance"],
    doc_md=__doc__,
    params={
        "as_of": Param(
            None,
            type=["null", "string"],
            description="ISO 8601 time or date; empty = the run's data interval end",
        ),
        "full": Param(True, type="boolean", description="full reconciliation (resolves what is gone)"),
        "buckets": Param(
            default_buckets(), type="integer", minimum=1, maximum=64, description="hash buckets, one task each"
        ),
        "force": Param(False, type="boolean", description="continue past the data-quality gate's circuit breaker"),
    },
)
def claimsync_reconcile() -> None:
    @task_group(group_id="prepare")
    def prepare() -> Any:
        @task(multiple_outputs=True)
        def open_run(**context: Any) -> dict[str, Any]:
            """Record the run in the state DB and decide its as-of and buckets."""
            from claimsync.pipeline import start_reconciliation

            params = context["params"]
            window_start, window_end = run_window(context)
            return start_reconciliation(
                claimsync_settings(),
                as_of=run_as_of(context, params.get("as_of")),
                run_id=context["run_id"],
                triggered_by=triggered_by(context),
                full=bool(params["full"]),
                buckets=int(params["buckets"]),
                window_start=window_start,
                window_end=window_end,
            )

        return open_run()

    @task_group(group_id="reconcile")
    def reconcile(run: Any) -> Any:
        @task(map_index_template="{{ bucket_label }}")
        def reconcile_bucket(recon_run_id: str, buckets: int, bucket: int) -> dict[str, Any]:
            """Extract both sides of one bucket, reconcile them, keep the partial result."""
            from airflow.sdk import get_current_context

            from claimsync.pipeline import reconcile_bucket as reconcile_one

            get_current_context()["bucket_label"] = f"bucket {bucket + 1}/{buckets}"  # type: ignore[typeddict-unknown-key]

            from claimsync.quality_gates import quarantine_gate

            settings = claimsync_settings()
            gate = quarantine_gate(settings)  # leaves out what validate_sources quarantined for this run
            return reconcile_one(settings, recon_run_id, bucket=bucket, buckets=buckets, gate=gate).to_dict()

        @task
        def list_buckets(buckets: int) -> list[int]:
            """One mapped reconcile task per bucket."""
            return list(range(buckets))

        return reconcile_bucket.partial(recon_run_id=run["run_id"], buckets=run["buckets"]).expand(
            bucket=list_buckets(run["buckets"])
        )

    @task_group(group_id="publish")
    def publish(run: Any, partials: Any) -> None:
        @task
        def record_ledger(recon_run_id: str, partials: list[dict[str, Any]]) -> dict[str, Any]:
            """Merge the buckets, run the cross-bucket rules, write the exception ledger."""
            from claimsync.pipeline import record_partials

            return record_partials(claimsync_settings(), recon_run_id, expected_buckets=len(list(partials))).to_dict()

        @task
        def close_run(recon_run_id: str, recorded: dict[str, Any], **context: Any) -> dict[str, Any]:
            """Mark the run succeeded; alert when it found new critical exceptions."""
            from _claimsync_alerts import alert_new_critical
            from claimsync.pipeline import close_run as close

            close(claimsync_settings(), recon_run_id, recorded)
            alerted = alert_new_critical(
                context["dag"].dag_id, recon_run_id, recorded["new_by_code"], recorded["new_amounts_cents"]
            )
            return {"run_id": recon_run_id, "exceptions": recorded["found"], "alerted": alerted}

        @task
        def render_report(recon_run_id: str, closed: dict[str, Any]) -> dict[str, str]:
            """Render report.html, report.xlsx and exceptions.csv from the ledger."""
            from claimsync.pipeline import render_report as render

            return render(claimsync_settings(), recon_run_id, report_dir(recon_run_id)).to_dict()

        recorded = record_ledger(run["run_id"], partials)
        render_report(run["run_id"], close_run(run["run_id"], recorded))

    @task_group(group_id="validate")
    def validate(run: Any) -> Any:
        @task(multiple_outputs=True)
        def validate_sources(recon_run_id: str, buckets: int, **context: Any) -> dict[str, Any]:
            """Data-quality gate: validate both systems' records, quarantine bad rows, or stop the run."""
            from airflow.sdk.exceptions import AirflowFailException

            from claimsync.errors import RunStopped
            from claimsync.quality_gates import validate_reconcile_run

            force = bool(context["params"].get("force"))
            try:
                checked = validate_reconcile_run(claimsync_settings(), recon_run_id, force=force)
            except RunStopped as stopped:
                raise AirflowFailException(str(stopped)) from None  # retrying cannot fix the data
            return {**checked, "buckets": buckets}

        return validate_sources(run["run_id"], run["buckets"])

    run = prepare()
    publish(run, reconcile(validate(run)))


claimsync_reconcile()
