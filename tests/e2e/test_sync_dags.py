"""claimsync_org_sync and claimsync_claim_sync end to end through ``dag.test()`` on demo data in
real PostgreSQL: they converge, and rerunning a whole run or a single cleared task changes nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from claimsync.pgserver import PgServer
from tests.e2e.conftest import DAGS_FOLDER, airflow_conn_uri
from tests.integration.sync_support import (
    Clone,
    Template,
    audit,
    clone,
    drop_template,
    expected_after_sync,
    make_template,
    reconciled,
    rows,
    scalar,
    snapshot,
)

pytestmark = pytest.mark.slow

UTC = ZoneInfo("UTC")
# The demo's as-of (2026-03-31 12:00 Asia/Shanghai) is the end of these runs' data intervals:
# a manual dag.test() run's interval is the schedule's interval ending at its logical date.
CLAIMS_RUN = datetime(2026, 3, 31, 4, 0, tzinfo=UTC)  # interval 03:45–04:00 UTC
ORG_RUN = datetime(2026, 3, 31, 4, 0, tzinfo=UTC)  # interval 03:00–04:00 UTC


@pytest.fixture(scope="module")
def dags(airflow_home: Path) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    found = {}
    previous = os.environ.get("CLAIMSYNC_TASK_RETRIES")
    os.environ["CLAIMSYNC_TASK_RETRIES"] = "0"  # a failure here should fail the test now, not after backoff
    try:
        for name in ("claimsync_org_sync", "claimsync_claim_sync"):
            bag = DagBag(dag_folder=str(DAGS_FOLDER / f"{name}.py"))
            assert bag.import_errors == {}
            found.update(bag.dags)
    finally:
        if previous is None:
            os.environ.pop("CLAIMSYNC_TASK_RETRIES")
        else:
            os.environ["CLAIMSYNC_TASK_RETRIES"] = previous
    return found


@pytest.fixture(scope="module")
def template(pg_server: PgServer) -> Iterator[Template]:
    made = make_template(pg_server, scale=400, seed=99)
    yield made
    drop_template(made)


@pytest.fixture
def systems(template: Template, monkeypatch: pytest.MonkeyPatch) -> Iterator[Clone]:
    made = clone(template)
    monkeypatch.setenv("AIRFLOW_CONN_CLAIMSYNC_OA", airflow_conn_uri(str(made.settings.oa_url)))
    monkeypatch.setenv("AIRFLOW_CONN_CLAIMSYNC_EXPENSE", airflow_conn_uri(str(made.settings.expense_url)))
    monkeypatch.setenv("AIRFLOW_CONN_CLAIMSYNC_STATE", airflow_conn_uri(str(made.settings.state_url)))
    for name in ("CLAIMSYNC_OA_URL", "CLAIMSYNC_EXPENSE_URL", "CLAIMSYNC_STATE_URL", "CLAIMSYNC_BATCH_SIZE"):
        monkeypatch.delenv(name, raising=False)
    yield made
    made.drop()


def succeeded(dag_run: Any) -> bool:
    return str(dag_run.state) in ("success", "DagRunState.SUCCESS")


def xcom(dag_id: str, run_id: str, task_id: str) -> dict[str, Any] | None:
    """A task's returned summary in this run, with the time it was pushed (``stamp``); None if none."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=run_id, key="return_value", task_ids=task_id, dag_ids=dag_id)
        ).first()
        return None if row is None else {**XComModel.deserialize_value(row), "stamp": row.timestamp}


def applied_rows(systems: Clone) -> list[Any]:
    return [r for r in audit(systems) if r.status == "applied"]


def test_the_sync_dags_converge_and_rerunning_a_run_or_a_task_changes_nothing(
    dags: dict[str, Any], systems: Clone, template: Template
) -> None:
    org, claims = dags["claimsync_org_sync"], dags["claimsync_claim_sync"]
    groups = {t.task_id.split(".")[0] for t in claims.tasks}
    assert groups == {"extract", "quality", "plan", "validate", "apply", "confirm"}
    assert {t.task_id for t in org.tasks} >= {"apply.apply_expense"}
    assert "apply.apply_oa" not in {t.task_id for t in org.tasks}

    first_org = org.test(logical_date=ORG_RUN, run_conf={"full": True})
    assert succeeded(first_org)
    # run_after fixes the Airflow run id, so the later dag.test() calls rerun this same run.
    first = claims.test(logical_date=CLAIMS_RUN, run_after=CLAIMS_RUN, run_conf={"full": True})
    assert succeeded(first)
    assert reconciled(systems) == expected_after_sync(template.key)

    state = systems.engine("state")
    run_id = f"claimsync_claim_sync__{first.run_id}"
    assert scalar(state, "SELECT status FROM claimsync.sync_run WHERE run_id = :r", r=run_id) == "succeeded"
    assert scalar(state, "SELECT count(*) FROM claimsync.run_stage") == 0  # staged frames are dropped
    assert scalar(state, "SELECT count(*) FROM claimsync.watermark WHERE flow = 'claims'") == 2
    done = snapshot(systems, clock=True)
    audit_before = applied_rows(systems)
    assert audit_before

    # dag.test() the same run again: every task reruns, nothing changes.
    again = claims.test(logical_date=CLAIMS_RUN, run_after=CLAIMS_RUN, run_conf={"full": True})
    assert succeeded(again)
    assert again.run_id == first.run_id
    applied_before = xcom(claims.dag_id, first.run_id, "apply.apply_expense")
    assert applied_before is not None
    assert applied_before["batches"] == 0  # the whole run again: every batch was already confirmed
    assert snapshot(systems, clock=True) == done
    assert applied_rows(systems) == audit_before

    # Clear the apply tasks and run just them again (the rest marked done): their batches are confirmed.
    rerun = claims.test(
        logical_date=CLAIMS_RUN,
        run_after=CLAIMS_RUN,
        run_conf={"full": True},
        mark_success_pattern=r"(extract|quality|plan|validate|confirm)\..*",  # fullmatch: all but apply
    )
    assert succeeded(rerun)
    assert rerun.run_id == first.run_id
    applied_again = xcom(claims.dag_id, first.run_id, "apply.apply_expense")
    assert applied_again is not None
    assert applied_again["stamp"] > applied_before["stamp"]  # it ran again ...
    assert (applied_again["batches"], applied_again["applied"]) == (0, 0)  # ... and found nothing to do
    # The other tasks were cleared and marked done without running: no new summary from them.
    assert xcom(claims.dag_id, first.run_id, "plan.plan_writes") is None
    assert snapshot(systems, clock=True) == done
    assert applied_rows(systems) == audit_before

    # The next scheduled interval finds nothing left to write; a dry run stores a plan, writes nothing.
    later = claims.test(logical_date=CLAIMS_RUN + timedelta(minutes=15), run_conf={"full": False})
    assert succeeded(later)
    later_id = f"claimsync_claim_sync__{later.run_id}"
    assert scalar(state, "SELECT count(*) FROM claimsync.planned_write WHERE run_id = :r", r=later_id) == 0
    dry = org.test(logical_date=ORG_RUN + timedelta(hours=1), run_conf={"dry_run": True, "full": True})
    assert scalar(
        state, "SELECT dry_run FROM claimsync.sync_run WHERE run_id = :r", r=f"claimsync_org_sync__{dry.run_id}"
    )
    assert succeeded(dry)
    assert snapshot(systems, clock=True) == done
    windows = rows(
        state,
        "SELECT run_id, full_run, window_start, window_end, dry_run FROM claimsync.sync_run ORDER BY started_at",
    )
    incremental = next(w for w in windows if w.run_id == later_id)
    assert not incremental.full_run
    assert incremental.window_end == CLAIMS_RUN + timedelta(minutes=15)  # the run's data interval end
    assert incremental.window_start == CLAIMS_RUN  # its start, which is where the watermark stands
    state.dispose()
