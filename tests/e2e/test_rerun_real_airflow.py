"""Rerunning claimsync_claim_sync the way an operator does, in a real Airflow.

A real api-server, scheduler and dag-processor (LocalExecutor, PostgreSQL metadata DB) run
the claim sync against demo data. The OA form table is locked by another session (a DBA's
long maintenance transaction) in the middle of the apply; the OA connection has a
``lock_timeout``, so the OA writes fail after some batches were already written and
confirmed, and the run fails. The test then ends the lock ("restores the target") and
clears the failed task through the REST API, as the UI's Clear button does
(``POST /api/v2/dags/{dag_id}/clearTaskInstances`` with a JWT from ``POST /auth/token``).
The rerun must complete and both systems must equal a twin set of databases synced by the
same run without the failure — row for row, with the same audit (each change applied
once). Clearing the whole, already successful run again changes nothing.

The same for a backfill over three past 15-minute windows (``POST /api/v2/backfills``) whose
middle run fails mid-apply (and the last one too, finishing the middle run's writes first):
after the clears, every window's plan, both systems and the audit equal three windowed syncs
of a twin, and no claim exists twice.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from claimsync import quality_gates
from claimsync.config import Settings
from claimsync.db import create_engine
from claimsync.pgserver import PgServer
from claimsync.sync import run_sync
from claimsync.writeback import load_plan, plan_counts
from tests.e2e.airflow_processes import Airflow, airflow_conn_uri, running_airflow
from tests.integration.sync_support import (
    AS_OF,
    Clone,
    Snapshot,
    Template,
    clone,
    drop_template,
    make_template,
    rows,
    snapshot,
)

pytestmark = pytest.mark.slow

DAG_ID = "claimsync_claim_sync"
SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = ZoneInfo("UTC")
BATCH_SIZE = "4"  # small batches: the apply is many transactions, so it can fail in the middle
LOCK_TIMEOUT = "2s"
# Three past claim-sync intervals, backfilled; the demo's last changes are later (11:28-11:44).
WINDOWS = [
    (datetime(2026, 3, 31, 9, 0, tzinfo=SHANGHAI) + timedelta(minutes=15 * i),
     datetime(2026, 3, 31, 9, 15, tzinfo=SHANGHAI) + timedelta(minutes=15 * i))
    for i in range(3)
]  # fmt: skip
OA_FORM = "ecology.formtable_main_38"

# Production retries twice with a 2-minute backoff; here a failing task fails at once.
NO_RETRIES = '''"""Cluster policy of the rerun test: a failing task fails at once (no 2-minute retry backoff)."""


def task_policy(task):
    task.retries = 0
'''


# --- data ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(pg_server: PgServer) -> Iterator[Template]:
    """Demo data in which the OA payment-status writes of a full sync also happen, spread over WINDOWS.

    A full sync of a probe copy finds the OA requests whose payment status expense owns and
    OA lacks; their expense claims get an ``update_time`` inside one of the three windows (as
    if they had been paid then), so each windowed run has OA writes to make.
    """
    made = make_template(pg_server, scale=200, seed=20260331)
    probe = clone(made)
    try:
        outcome = run_sync(probe.settings, "claims", full=True, as_of=AS_OF)
        state = probe.engine("state")
        oa_writes = [w for w in load_plan(state, outcome.run_id) if w.target == "oa" and w.operation == "update"]
        state.dispose()
    finally:
        probe.drop()
    assert len(oa_writes) >= 18, "the demo data should need OA payment-status writes"
    expense = create_engine(pg_server.url(made.expense))
    try:
        with expense.begin() as conn:
            for i, write in enumerate(oa_writes):
                start, _ = WINDOWS[i % 3]
                conn.execute(
                    sa.text("UPDATE ekb.flow SET update_time = :t WHERE oa_request_id = :r"),
                    {"t": start + timedelta(minutes=6, seconds=i), "r": int(write.record_key)},
                )
    finally:
        expense.dispose()
    yield made
    drop_template(made)


@dataclass
class Systems:
    """The OA, expense and state databases the Airflow connections name (same names all module long)."""

    server: PgServer
    template: Template
    names: dict[str, str]

    @property
    def clone(self) -> Clone:
        urls = {system: self.server.url(name) for system, name in self.names.items()}
        return Clone(self.server, self.names, Settings(oa_url=urls["oa"], expense_url=urls["expense"],
                                                       state_url=urls["state"]))  # fmt: skip

    def reset(self) -> None:
        """Fresh copies of the template's data and an empty state DB, under the same names."""
        admin = create_engine(self.server.admin_url, "admin", isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for system, name in self.names.items():
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    source = {"oa": self.template.oa, "expense": self.template.expense}.get(system, "template0")
                    conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{source}" ENCODING \'UTF8\''))
        finally:
            admin.dispose()

    def drop(self) -> None:
        for name in self.names.values():
            self.server.drop_database(name)


@pytest.fixture(scope="module")
def systems(pg_server: PgServer, template: Template) -> Iterator[Systems]:
    stem = f"cs_rerun{os.getpid()}"
    made = Systems(pg_server, template, {s: f"{stem}_{s}" for s in ("oa", "expense", "state")})
    made.reset()
    yield made
    made.drop()


@pytest.fixture(scope="module")
def airflow(pg_server: PgServer, systems: Systems, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    metadata = f"cs_rerun{os.getpid()}_airflow"
    metadata_url = pg_server.create_database(metadata, recreate=True)
    urls = systems.clone.settings
    extra_env = {
        # The writer gives up on a locked row after LOCK_TIMEOUT instead of hanging the task.
        "AIRFLOW_CONN_CLAIMSYNC_OA": airflow_conn_uri(str(urls.oa_url), options=f"-c lock_timeout={LOCK_TIMEOUT}"),
        "AIRFLOW_CONN_CLAIMSYNC_EXPENSE": airflow_conn_uri(str(urls.expense_url)),
        "AIRFLOW_CONN_CLAIMSYNC_STATE": airflow_conn_uri(str(urls.state_url)),
        "CLAIMSYNC_BATCH_SIZE": BATCH_SIZE,
    }
    try:
        with running_airflow(
            tmp_path_factory.mktemp("airflow_rerun"), metadata_url, extra_env=extra_env, local_settings=NO_RETRIES
        ) as running:
            running.wait_for_dag(DAG_ID)
            yield running
    finally:
        pg_server.drop_database(metadata)


# --- helpers ---------------------------------------------------------------------------------


@contextmanager
def row_locked(url: str, request_id: int) -> Iterator[None]:
    """Another session holds a row lock on one OA form row until the block ends (then rolls back)."""
    engine = create_engine(url, "OA")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"SELECT 1 FROM {OA_FORM} WHERE requestid = :r FOR UPDATE"), {"r": request_id})
            try:
                yield
            finally:
                conn.rollback()
    finally:
        engine.dispose()


def oa_writes(state: sa.Engine, run_id: str) -> list[int]:
    """Request ids of the run's OA updates, in apply order."""
    return [int(w.record_key) for w in load_plan(state, run_id) if w.target == "oa"]


def audit_counter(c: Clone) -> Counter[tuple[str, str, str, str, str]]:
    """Every planned write of every run, without run ids: (target, table, key, operation, status)."""
    state = c.engine("state")
    try:
        found = rows(state, "SELECT target, table_name, record_key, operation, status FROM claimsync.planned_write")
    finally:
        state.dispose()
    return Counter(tuple(r) for r in found)


def batches(c: Clone, run_id: str) -> dict[tuple[str, str], int]:
    state = c.engine("state")
    try:
        found = rows(
            state,
            "SELECT target, status, count(*) FROM claimsync.write_batch WHERE run_id = :r GROUP BY 1, 2",
            r=run_id,
        )
    finally:
        state.dispose()
    return {(r[0], r[1]): int(r[2]) for r in found}


def state_run_id(run_id: str) -> str:
    return f"{DAG_ID}__{run_id}"


def duplicate_claims(c: Clone) -> list[Any]:
    expense = c.engine("expense")
    try:
        return rows(
            expense,
            "SELECT oa_request_id, count(*) FROM ekb.flow WHERE oa_request_id IS NOT NULL"
            " GROUP BY 1 HAVING count(*) > 1",
        )
    finally:
        expense.dispose()


@dataclass
class Twin:
    """The no-failure result: the same syncs on a copy of the same data, in this process."""

    snapshot: Snapshot
    audit: Counter[tuple[str, str, str, str, str]]
    plans: list[dict[str, int]]
    oa_writes: list[list[int]]


def twin(template: Template, runs: list[dict[str, Any]]) -> Twin:
    copy = clone(template)
    try:
        plans, writes = [], []
        state = copy.engine("state")
        for kwargs in runs:
            outcome = run_sync(
                copy.settings,
                "claims",
                triggered_by="twin",
                source_gate=quality_gates.source_gate(copy.settings),  # the gates `claimsync sync` runs
                delta_gate=quality_gates.delta_gate(copy.settings),
                **kwargs,
            )
            plans.append(plan_counts(state, outcome.run_id))
            writes.append(oa_writes(state, outcome.run_id))
        state.dispose()
        return Twin(snapshot(copy, runs=False), audit_counter(copy), plans, writes)
    finally:
        copy.drop()


# --- tests -----------------------------------------------------------------------------------


def test_every_dag_tells_the_operator_what_a_rerun_of_each_task_does(airflow: Airflow) -> None:
    """The doc_md shown in the UI names every task and what clearing it does."""
    for dag_id in ("claimsync_claim_sync", "claimsync_org_sync", "claimsync_reconcile"):
        airflow.wait_for_dag(dag_id)
        doc = airflow.dag_details(dag_id)["doc_md"]
        tasks = airflow.call("GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"]
        assert "what a rerun of each task does**" in doc.lower(), dag_id
        rerun = doc[doc.lower().index("what a rerun of each task does**") :]
        for task in tasks:
            assert re.search(rf"^- [^\n]*`{task['task_id'].split('.')[-1]}`", rerun, re.MULTILINE), (
                dag_id,
                task["task_id"],
            )
        assert "**Backfilling**" in doc, dag_id


def test_a_failed_apply_cleared_from_the_api_ends_as_if_nothing_failed(
    airflow: Airflow, systems: Systems, template: Template
) -> None:
    systems.reset()
    interval = (AS_OF - timedelta(minutes=15), AS_OF)
    expected = twin(template, [{"full": True, "as_of": AS_OF}])
    planned_oa = expected.oa_writes[0]
    assert len(planned_oa) >= 16
    locked = planned_oa[len(planned_oa) // 2]  # in a middle batch: earlier batches get written
    batches_before = planned_oa.index(locked) // int(BATCH_SIZE)

    c = systems.clone
    with row_locked(str(c.settings.oa_url), locked):
        run_id = airflow.trigger(DAG_ID, interval=interval, conf={"full": True})
        assert airflow.wait_for_run(DAG_ID, run_id, {"failed"}) == "failed"
    tis = {ti["task_id"]: ti for ti in airflow.task_instances(DAG_ID, run_id)}
    assert tis["apply.apply_expense"]["state"] == "success"
    assert (tis["apply.apply_oa"]["state"], tis["apply.apply_oa"]["try_number"]) == ("failed", 1)
    assert tis["confirm.confirm_run"]["state"] == "upstream_failed"
    # It failed mid-apply: the batches before the locked row are written and confirmed, the rest not.
    counts = batches(c, state_run_id(run_id))
    assert counts[("oa", "confirmed")] == batches_before >= 1
    assert counts[("oa", "planned")] >= 1
    assert ("expense", "planned") not in counts
    state = c.engine("state")
    status, error = rows(state, "SELECT status, error FROM claimsync.sync_run WHERE run_id = :r",
                         r=state_run_id(run_id))[0]  # fmt: skip
    state.dispose()
    assert status == "failed"
    assert "lock timeout" in error

    # The lock is gone (the target is back); the operator clears the failed task and what follows.
    would_clear = airflow.clear(DAG_ID, run_id, ["apply.apply_oa"], dry_run=True)
    assert {ti["task_id"] for ti in would_clear} == {"apply.apply_oa", "confirm.confirm_run"}
    airflow.clear(DAG_ID, run_id, ["apply.apply_oa"])
    assert airflow.wait_for_run(DAG_ID, run_id, {"success"}) == "success"

    assert snapshot(c, runs=False) == expected.snapshot
    assert audit_counter(c) == expected.audit  # every change applied exactly once
    oa_batches = counts[("oa", "confirmed")] + counts[("oa", "planned")]
    assert batches(c, state_run_id(run_id)) == {
        ("expense", "confirmed"): counts[("expense", "confirmed")],
        ("oa", "confirmed"): oa_batches,
    }

    # Clearing the whole, successful run (every task) reruns it and changes nothing.
    cleared = airflow.clear(DAG_ID, run_id, None)
    assert len(cleared) == len(airflow.call("GET", f"/api/v2/dags/{DAG_ID}/tasks")["tasks"])
    assert airflow.wait_for_run(DAG_ID, run_id, {"success"}) == "success"
    assert snapshot(c, runs=False) == expected.snapshot
    assert audit_counter(c) == expected.audit


def test_a_backfill_of_three_windows_with_a_failed_run_cleared_equals_three_clean_syncs(
    airflow: Airflow, systems: Systems, template: Template
) -> None:
    """The middle run fails mid-apply; the next run first finishes its writes, which fails too while
    the row is locked; the operator clears both; the result is three clean windows, nothing twice."""
    systems.reset()
    expected = twin(template, [{"since": s, "until": e, "as_of": e} for s, e in WINDOWS])
    assert all(expected.plans), "every window has something to write"
    middle = expected.oa_writes[1]
    assert len(middle) > int(BATCH_SIZE), "the middle window's OA writes span two batches"
    locked = middle[int(BATCH_SIZE)]  # first row of its second batch
    assert all(locked not in expected.oa_writes[i] for i in (0, 2))

    first, final = WINDOWS[0][0].astimezone(UTC), WINDOWS[-1][0].astimezone(UTC)
    dry = airflow.backfill(DAG_ID, first, final, dry_run=True)
    assert [datetime.fromisoformat(b["logical_date"]) for b in dry["backfills"]] == [s for s, _ in WINDOWS]

    c = systems.clone
    with row_locked(str(c.settings.oa_url), locked):
        backfill = airflow.backfill(DAG_ID, first, final)
        assert backfill["dag_id"] == DAG_ID
        runs = [r for r in airflow.runs(DAG_ID) if r["run_type"] == "backfill"]
        assert sorted(datetime.fromisoformat(r["logical_date"]) for r in runs) == [s for s, _ in WINDOWS]
        run_ids = [r["dag_run_id"] for r in sorted(runs, key=lambda r: r["logical_date"])]
        assert airflow.wait_for_run(DAG_ID, run_ids[0], {"success"}) == "success"
        assert airflow.wait_for_run(DAG_ID, run_ids[1], {"failed"}) == "failed"
        # The next run finishes the failed run's unconfirmed batch before it reads: blocked too.
        assert airflow.wait_for_run(DAG_ID, run_ids[2], {"failed"}) == "failed"
    failed = {ti["task_id"] for ti in airflow.task_instances(DAG_ID, run_ids[2]) if ti["state"] == "failed"}
    assert failed == {"extract.extract_changes"}
    counts = batches(c, state_run_id(run_ids[1]))
    assert (counts[("oa", "confirmed")], counts[("oa", "planned")]) == (1, 1)

    # The lock is gone; the operator clears both failed tasks (and what follows them).
    airflow.clear(DAG_ID, run_ids[1], ["apply.apply_oa"])
    airflow.clear(DAG_ID, run_ids[2], ["extract.extract_changes"])
    for run_id in run_ids[1:]:
        assert airflow.wait_for_run(DAG_ID, run_id, {"success"}) == "success"

    state = c.engine("state")
    try:
        assert [plan_counts(state, state_run_id(r)) for r in run_ids] == expected.plans
        windows = rows(state, "SELECT window_start, window_end FROM claimsync.sync_run ORDER BY window_end")
        mark = rows(state, "SELECT DISTINCT position FROM claimsync.watermark WHERE flow = 'claims'")
    finally:
        state.dispose()
    # The last run's window reached back to the watermark its failed predecessor left.
    assert [tuple(w) for w in windows] == [WINDOWS[0], WINDOWS[1], (WINDOWS[1][0], WINDOWS[2][1])]
    assert [m[0] for m in mark] == [WINDOWS[-1][1]]
    assert snapshot(c, runs=False) == expected.snapshot
    assert audit_counter(c) == expected.audit  # each change applied once, by the run that planned it
    assert duplicate_claims(c) == []
