"""The shape both sync DAGs share (claimsync_org_sync, claimsync_claim_sync): tasks and wiring.

Light on purpose: parsed by the scheduler and the DAG processor, so nothing here imports
the engine, pandas or SQLAlchemy or touches a connection outside a task body.

    extract:  open_run → extract_changes
    quality:  validate_sources   (data-quality gate: quarantine bad rows, or stop before any write)
    plan:     plan_writes        (leaves out what validate_sources quarantined)
    validate: check_delta        (circuit breaker and the delta gate: no key twice, no backwards move)
    apply:    apply_expense → apply_oa   (claims only: OA's bxdh waits for the claims it names)
    confirm:  confirm_run

Each task calls one step of claimsync.sync with the run's id; the extracted frames and the
plan live in the state DB under that id, so a task reads what the previous one stored and
XCom carries only small summaries. The id also follows from the task's context, so a task
cleared without its upstream XComs still finds its run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from airflow.sdk import Param, dag, task, task_group

from _claimsync_common import DEFAULT_ARGS, claimsync_settings, run_as_of, run_window, triggered_by

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 1, 1, tzinfo=SHANGHAI)


def state_run_id(context: Any) -> str:
    """The state DB's run id: the DAG id and Airflow's run id (the sync DAGs run at the same instants)."""
    return f"{context['dag'].dag_id}__{context['run_id']}"


def conflicts_found(context: Any) -> int | None:
    """Write conflicts this run recorded so far, from the apply tasks' XCom (for the failure alert)."""
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        return None
    try:
        found = 0
        for task_id in ("apply.apply_expense", "apply.apply_oa"):
            summary = ti.xcom_pull(task_ids=task_id)
            if isinstance(summary, dict):
                found += int(summary.get("conflicts", 0))
        return found
    except Exception:  # XCom unavailable (the failure came before any task ran)
        return None


def on_sync_failure(context: Any) -> None:
    """Failure callback: alert naming the DAG, run, task, error and the write conflicts so far; never raises."""
    import logging

    try:
        from _claimsync_alerts import alert_run_failed

        alert_run_failed(context, conflicts_found(context))
    except Exception:  # a callback must not fail the failure handling
        logging.getLogger("claimsync").exception("claimsync: the failure callback itself failed")


def build_sync_dag(*, dag_id: str, flow: str, schedule: str, doc_md: str, tags: list[str]) -> Any:
    """The sync DAG of ``flow`` ('org' or 'claims'), scheduled by cron ``schedule`` in Asia/Shanghai."""
    from airflow.sdk import CronDataIntervalTimetable

    targets = ["expense", "oa"] if flow == "claims" else ["expense"]

    @dag(
        dag_id=dag_id,
        schedule=CronDataIntervalTimetable(schedule, timezone="Asia/Shanghai"),
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, "on_failure_callback": on_sync_failure},
        tags=["claimsync", "sync", *tags],
        doc_md=doc_md,
        params={
            "full": Param(False, type="boolean", description="read everything instead of the run's interval"),
            "dry_run": Param(False, type="boolean", description="plan and store the plan; write nothing"),
            "force": Param(False, type="boolean", description="apply a plan the circuit breaker would stop"),
        },
    )
    def sync_dag() -> None:
        @task_group(group_id="extract")
        def extract() -> Any:
            @task(multiple_outputs=True)
            def open_run(**context: Any) -> dict[str, Any]:
                """Record the run; its window is the data interval (back to the watermark after failures)."""
                from claimsync.sync import open_sync

                params = context["params"]
                since, until = run_window(context)
                if since is not None and until is not None and since >= until:
                    since = None  # a manual run without an interval: start at the watermark
                run = open_sync(
                    claimsync_settings(),
                    flow,
                    run_id=state_run_id(context),
                    triggered_by=triggered_by(context),
                    as_of=run_as_of(context),
                    since=since,
                    until=until,
                    full=bool(params["full"]),
                    dry_run=bool(params["dry_run"]),
                    force=bool(params["force"]),
                    catch_up=True,
                )
                return {
                    "run_id": run["run_id"],
                    "window_start": None if run["window_start"] is None else run["window_start"].isoformat(),
                    "window_end": None if run["window_end"] is None else run["window_end"].isoformat(),
                    "full": run["full_run"],
                    "dry_run": run["dry_run"],
                }

            @task(multiple_outputs=True)
            def extract_changes(sync_run_id: str | None, **context: Any) -> dict[str, Any]:
                """Read both systems' records changed in the window and stage them under the run id."""
                sync_run_id = sync_run_id or state_run_id(context)  # a cleared task may lack the XCom
                from claimsync.sync import extract_stage

                return extract_stage(claimsync_settings(), sync_run_id)

            return extract_changes(open_run()["run_id"])

        @task_group(group_id="quality")
        def quality(run_id: Any) -> Any:
            @task(multiple_outputs=True)
            def validate_sources(sync_run_id: str | None, **context: Any) -> dict[str, Any]:
                """Data-quality gate on the staged records: quarantine bad rows, or stop the run before any write."""
                sync_run_id = sync_run_id or state_run_id(context)  # a cleared task may lack the XCom
                from airflow.sdk.exceptions import AirflowFailException

                from claimsync.errors import RunStopped
                from claimsync.quality_gates import validate_sync_stage

                try:
                    return validate_sync_stage(claimsync_settings(), sync_run_id)
                except RunStopped as stopped:
                    raise AirflowFailException(str(stopped)) from None  # retrying cannot fix the data

            return validate_sources(run_id)

        @task_group(group_id="plan")
        def plan(run_id: Any) -> Any:
            @task(multiple_outputs=True)
            def plan_writes(sync_run_id: str | None, **context: Any) -> dict[str, Any]:
                """Plan every write with its before- and after-image and store the plan in the state DB."""
                sync_run_id = sync_run_id or state_run_id(context)  # a cleared task may lack the XCom
                from claimsync.quality_gates import quarantine_gate
                from claimsync.sync import plan_stage

                settings = claimsync_settings()
                return plan_stage(settings, sync_run_id, source_gate=quarantine_gate(settings))

            return plan_writes(run_id)

        @task_group(group_id="validate")
        def validate(run_id: Any) -> Any:
            @task(multiple_outputs=True)
            def check_delta(sync_run_id: str | None, **context: Any) -> dict[str, Any]:
                """Circuit breaker: stop a plan that touches too much of a target table (unless force)."""
                sync_run_id = sync_run_id or state_run_id(context)  # a cleared task may lack the XCom
                from claimsync.quality_gates import delta_gate
                from claimsync.sync import check_stage

                settings = claimsync_settings()
                return check_stage(settings, sync_run_id, delta_gate=delta_gate(settings))

            return check_delta(run_id)

        @task_group(group_id="apply")
        def apply(run_id: Any) -> Any:
            @task(multiple_outputs=True)
            def apply_expense(sync_run_id: str | None, **context: Any) -> dict[str, Any]:
                """Compare-and-set the expense writes batch by batch; recover unconfirmed batches."""
                sync_run_id = sync_run_id or state_run_id(context)  # a cleared task may lack the XCom
                from claimsync.sync import apply_stage

                return apply_stage(claimsync_settings(), sync_run_id, "expense")

            @task(multiple_outputs=True)
            def apply_oa(sync_run_id: str | None, **context: Any) -> dict[str, Any]:
                """Compare-and-set the OA writes batch by batch; recover unconfirmed batches."""
                sync_run_id = sync_run_id or state_run_id(context)  # a cleared task may lack the XCom
                from claimsync.sync import apply_stage

                return apply_stage(claimsync_settings(), sync_run_id, "oa")

            applied = apply_expense(run_id)
            if "oa" in targets:
                applied = apply_oa(applied["run_id"])
            return applied

        @task_group(group_id="confirm")
        def confirm(run_id: Any) -> Any:
            @task(multiple_outputs=True)
            def confirm_run(sync_run_id: str | None, **context: Any) -> dict[str, Any]:
                """Check every batch is confirmed, advance the watermark, finish the run."""
                sync_run_id = sync_run_id or state_run_id(context)  # a cleared task may lack the XCom
                from claimsync.sync import confirm_stage

                return confirm_stage(claimsync_settings(), sync_run_id)

            return confirm_run(run_id)

        # Each step hands the next the run id: the data flow is the dependency.
        staged = extract()
        gated = quality(staged["run_id"])
        planned = plan(gated["run_id"])
        checked = validate(planned["run_id"])
        applied = apply(checked["run_id"])
        confirm(applied["run_id"])

    return sync_dag()
