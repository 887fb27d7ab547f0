"""claimsync_reconcile end to end through ``dag.test()`` on demo data in real PostgreSQL.

Connections come from AIRFLOW_CONN_* variables, as in a local deployment. The ledger must hold
exactly the answer key's exceptions, the report files must be there, a bucketed run must give
the same result as an unbucketed one, and rerunning the same run must change nothing.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from claimsync.pgserver import PgServer
from tests.e2e.conftest import DAGS_FOLDER, DEMO_AS_OF, DemoSources, airflow_conn_uri

pytestmark = pytest.mark.slow

UTC = ZoneInfo("UTC")


@pytest.fixture(scope="module")
def reconcile_dag(airflow_home: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER / "claimsync_reconcile.py"))
    assert bag.import_errors == {}
    return bag.dags["claimsync_reconcile"]


@pytest.fixture
def new_state_db(pg_server: PgServer) -> Iterator[Callable[[], str]]:
    """Make fresh, empty state databases; all dropped afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(f"cs_e2e_state_{os.getpid()}_{len(names)}")
        return pg_server.create_database(names[-1], recreate=True)

    yield make
    for name in names:
        pg_server.drop_database(name)


def run_dag(
    dag: Any,
    demo: DemoSources,
    state_url: str,
    report_root: Path,
    *,
    logical_date: datetime,
    conf: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    monkeypatch.setenv("AIRFLOW_CONN_CLAIMSYNC_OA", airflow_conn_uri(demo.databases.oa_url))
    monkeypatch.setenv("AIRFLOW_CONN_CLAIMSYNC_EXPENSE", airflow_conn_uri(demo.databases.expense_url))
    monkeypatch.setenv("AIRFLOW_CONN_CLAIMSYNC_STATE", airflow_conn_uri(state_url))
    monkeypatch.setenv("CLAIMSYNC_REPORT_DIR", str(report_root))
    for name in ("CLAIMSYNC_OA_URL", "CLAIMSYNC_EXPENSE_URL", "CLAIMSYNC_STATE_URL"):
        monkeypatch.delenv(name, raising=False)
    # run_after fixes the run id, so calling this twice reruns the same run.
    return dag.test(logical_date=logical_date, run_after=logical_date, run_conf=conf)


def ledger_keys(state_url: str) -> set[tuple[str, str]]:
    engine = sa.create_engine(state_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT code, business_key FROM claimsync.recon_exception WHERE status = 'open'")
            ).all()
    finally:
        engine.dispose()
    return {(r.code, r.business_key) for r in rows}


def table_counts(state_url: str) -> dict[str, Any]:
    engine = sa.create_engine(state_url)
    queries = {
        "exceptions": "SELECT count(*) FROM claimsync.recon_exception",
        "links": "SELECT count(*) FROM claimsync.recon_run_exception",
        "events": "SELECT count(*) FROM claimsync.recon_exception_event",
        "runs": "SELECT string_agg(run_id || '=' || status, ',') FROM claimsync.sync_run",
        "first_seen": "SELECT array_agg(DISTINCT first_seen) FROM claimsync.recon_exception",
    }
    try:
        with engine.connect() as conn:
            return {name: conn.execute(sa.text(sql)).scalar() for name, sql in queries.items()}
    finally:
        engine.dispose()


def test_reconcile_dag_end_to_end_and_bucketed_equals_unbucketed(
    reconcile_dag: Any,
    demo_sources: DemoSources,
    new_state_db: Callable[[], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key: Any = demo_sources.key
    state_db = new_state_db()
    conf = {"as_of": DEMO_AS_OF.isoformat(), "full": True, "buckets": 1}
    logical = datetime(2026, 3, 30, 16, 0, tzinfo=UTC)
    dag_run = run_dag(
        reconcile_dag,
        demo_sources,
        state_db,
        tmp_path / "one",
        logical_date=logical,
        conf=conf,
        monkeypatch=monkeypatch,
    )
    assert str(dag_run.state) in ("success", "DagRunState.SUCCESS"), dag_run.state
    run_id = dag_run.run_id

    # The ledger holds exactly what the demo planted.
    assert ledger_keys(state_db) == key.all_keys()
    counts = table_counts(state_db)
    assert counts["runs"] == f"{run_id}=succeeded"
    assert counts["first_seen"] == [DEMO_AS_OF]

    # The report files, rendered from the ledger.
    out = tmp_path / "one" / re.sub(r"[^A-Za-z0-9_.+-]", "_", run_id)
    assert sorted(p.name for p in out.iterdir()) == ["exceptions.csv", "report.html", "report.xlsx"]
    with (out / "exceptions.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sum(key.counts().values())
    assert {r["code"] for r in rows} == {code for code, n in key.counts().items() if n}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert run_id in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.IGNORECASE)
    assert "airflow:claimsync_reconcile:manual" in html  # who ran it
    assert "<td>succeeded" in html

    # Rerunning the same run changes nothing.
    before = table_counts(state_db)
    again = run_dag(
        reconcile_dag,
        demo_sources,
        state_db,
        tmp_path / "one",
        logical_date=logical,
        conf=conf,
        monkeypatch=monkeypatch,
    )
    assert again.run_id == run_id
    assert table_counts(state_db) == before

    # Two buckets, each its own mapped task, into a fresh state DB: the same exceptions, the same CSV.
    state2 = new_state_db()
    bucketed = run_dag(
        reconcile_dag,
        demo_sources,
        state2,
        tmp_path / "two",
        logical_date=logical + timedelta(days=1),
        conf={**conf, "buckets": 2},
        monkeypatch=monkeypatch,
    )
    assert str(bucketed.state) in ("success", "DagRunState.SUCCESS"), bucketed.state
    mapped = [ti for ti in bucketed.get_task_instances() if ti.task_id == "reconcile.reconcile_bucket"]
    assert sorted(ti.map_index for ti in mapped) == [0, 1]
    assert ledger_keys(state2) == key.all_keys()
    out2 = tmp_path / "two" / re.sub(r"[^A-Za-z0-9_.+-]", "_", bucketed.run_id)
    assert (out2 / "exceptions.csv").read_bytes() == (out / "exceptions.csv").read_bytes()
    engine = sa.create_engine(state2)
    try:
        with engine.connect() as conn:
            stats = conn.execute(sa.text("SELECT buckets, exception_count FROM claimsync.recon_run_stats")).one()
            parts = conn.execute(sa.text("SELECT count(DISTINCT bucket) FROM claimsync.recon_bucket_result"))
            assert parts.scalar() == 2
    finally:
        engine.dispose()
    assert tuple(stats) == (2, sum(key.counts().values()))
