"""The reconciliation pipeline around the ledger: partial runs, the quality-gate seam, failures."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from claimsync.config import Settings
from claimsync.errors import ClaimsyncError, ConfigError, RunStopped
from claimsync.pgserver import PgServer
from claimsync.pipeline import reconcile_bucket, record_partials, run_reconciliation, start_reconciliation
from claimsync.refschema import create_reference_schema
from claimsync.runs import RunInfo
from tests.conftest import Databases, make_databases

AS_OF = datetime(2026, 3, 31, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture(scope="module")
def demo(pg_server: PgServer) -> Iterator[tuple[Databases, Any]]:
    from claimsync.demo import generate

    dbs, names = make_databases(pg_server)
    oa, expense = dbs.engine("oa"), dbs.engine("expense")
    try:
        create_reference_schema(oa, "oa", recreate=True)
        create_reference_schema(expense, "expense", recreate=True)
        key = generate(oa, expense, scale=200, seed=11, as_of=AS_OF, settings=Settings())
    finally:
        oa.dispose()
        expense.dispose()
    yield dbs, key
    for name in names:
        pg_server.drop_database(name)


@pytest.fixture
def settings(demo: tuple[Databases, Any], databases: Databases) -> Settings:
    dbs, _ = demo
    return Settings(oa_url=dbs.oa_url, expense_url=dbs.expense_url, state_url=databases.state_url)


def query(settings: Settings, sql: str) -> list[Any]:
    assert settings.state_url is not None
    engine = sa.create_engine(settings.state_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)).all())
    finally:
        engine.dispose()


def test_a_partial_run_reconciles_its_window_and_resolves_nothing(
    demo: tuple[Databases, Any], settings: Settings
) -> None:
    _, key = demo
    total = sum(key.counts().values())
    full = run_reconciliation(settings, as_of=AS_OF, triggered_by="test")
    assert full.exception_count == total
    # Nothing changed in this later window: the partial run sees no records and must not resolve anything.
    later = AS_OF + timedelta(days=2)
    partial = run_reconciliation(
        settings,
        as_of=later,
        triggered_by="test",
        full=False,
        window_start=AS_OF + timedelta(days=1),
        window_end=later,
    )
    assert partial.exception_count == 0
    assert partial.ledger.auto_resolved == 0
    assert query(settings, "SELECT count(*) FROM claimsync.recon_exception WHERE status = 'open'")[0][0] == total
    with pytest.raises(ConfigError, match="needs a window"):
        run_reconciliation(settings, as_of=later, triggered_by="test", full=False)


def test_the_gate_sees_every_bucket_and_its_output_is_what_gets_reconciled(settings: Settings) -> None:
    calls: list[tuple[str, int]] = []

    def gate(sides: Any, run: RunInfo) -> Any:
        calls.append((run.run_id, len(sides.expense_claims)))
        return replace(sides, expense_claims=sides.expense_claims.iloc[0:0])  # as if all were quarantined

    outcome = run_reconciliation(settings, as_of=AS_OF, triggered_by="test", buckets=2, gate=gate)
    assert [run_id for run_id, _ in calls] == [outcome.run_id, outcome.run_id]
    assert sum(n for _, n in calls) > 0
    assert outcome.counts["missing_in_oa"] == 0  # no expense claim reached reconcile
    assert outcome.counts["missing_in_expense"] > 0


def test_a_stopping_gate_fails_the_run_with_its_reason(settings: Settings) -> None:
    def gate(sides: Any, run: RunInfo) -> Any:
        raise RunStopped("quarantine of oa_claims is 7.5%, above the 5% threshold")

    with pytest.raises(RunStopped):
        run_reconciliation(settings, as_of=AS_OF, triggered_by="test", gate=gate)
    (status, error), *_ = query(settings, "SELECT status, error FROM claimsync.sync_run")
    assert status == "failed"
    assert error == "quarantine of oa_claims is 7.5%, above the 5% threshold"
    assert query(settings, "SELECT count(*) FROM claimsync.recon_exception")[0][0] == 0


def test_the_dag_steps_refuse_a_missing_bucket(settings: Settings) -> None:
    run = start_reconciliation(settings, as_of=AS_OF, run_id="steps", triggered_by="test", buckets=3)
    reconcile_bucket(settings, run["run_id"], bucket=0, buckets=3)
    reconcile_bucket(settings, run["run_id"], bucket=2, buckets=3)
    with pytest.raises(ClaimsyncError, match=r"lacks the results of bucket\(s\) \[1\]"):
        record_partials(settings, "steps", expected_buckets=3)
    assert query(settings, "SELECT status FROM claimsync.sync_run")[0][0] == "failed"
    reconcile_bucket(settings, "steps", bucket=1, buckets=3)  # the rerun of the missing task
    summary = record_partials(settings, "steps", expected_buckets=3)
    assert summary.found > 0
    with pytest.raises(ConfigError, match="bucket must be from 0 to 2"):
        reconcile_bucket(settings, "steps", bucket=3, buckets=3)
