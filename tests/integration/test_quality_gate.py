"""The quality gate against a real state database: quarantine lives across runs, results are kept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from claimsync.config import Settings
from claimsync.errors import RunStopped
from claimsync.migrations import migrate
from claimsync.quality import QualityOutcome, validate_delta, validate_sources, validation_summary
from claimsync.quality_engine import GxValidator
from claimsync.runs import RunInfo, begin_run
from claimsync.writeback import PlannedWrite
from tests.conftest import Databases
from tests.quality_tables import frame

AS_OF = datetime(2026, 3, 31, 4, 0, tzinfo=UTC)
SETTINGS = Settings()


@pytest.fixture(scope="module")
def gx() -> GxValidator:
    return GxValidator()


@pytest.fixture
def state(databases: Databases) -> Iterator[sa.Engine]:
    engine = databases.engine("state")
    migrate(engine)
    yield engine
    engine.dispose()


def gate(state: sa.Engine, gx: GxValidator, run_id: str, sides: Any, **kwargs: Any) -> QualityOutcome:
    kwargs.setdefault("full_run", False)
    return validate_sources(sides, settings=SETTINGS, as_of=AS_OF, run_id=run_id, state_engine=state, gx=gx, **kwargs)


def quarantine(state: sa.Engine) -> pd.DataFrame:
    with state.connect() as conn:
        return pd.read_sql(
            sa.text(
                "SELECT source, entity, record_key, expectation, reason, offending, first_run_id, last_run_id,"
                " seen_runs, released_at, released_run_id, claim_key FROM claimsync.quarantine"
                " ORDER BY source, entity, record_key, expectation"
            ),
            conn,
        )


def claims_with(bad: dict[int, dict[str, Any]], n: int = 6) -> dict[str, pd.DataFrame]:
    data = frame("oa_claims", count=n)
    for position, values in bad.items():
        for column, value in values.items():
            data.loc[position, column] = value
    return {"oa_claims": data}


def test_quarantine_is_stored_with_run_reason_and_masked_values(state: sa.Engine, gx: GxValidator) -> None:
    sides = claims_with({1: {"currency": "XYZ"}, 2: {"request_mark": "请打 13812345678 身份证 110101199003074518"}})
    sides["oa_claims"].loc[2, "request_mark"] += "\x00"
    gate(state, gx, "run-1", sides)
    rows = quarantine(state)
    assert rows[["record_key", "expectation"]].values.tolist() == [
        ["oa:1002", "oa_claims.currency_known"],
        ["oa:1003", "oa_claims.request_mark_clean_text"],
    ]
    first = rows.iloc[0]
    assert (first.source, first.entity, first.first_run_id, first.last_run_id) == ("oa", "claims", "run-1", "run-1")
    assert first.reason == "the currency is not one of the known values"
    assert first.offending == {"request_id": 1002, "currency": "XYZ"}
    assert first.claim_key == "oa:1002"
    shown = rows.iloc[1].offending["request_mark"]
    assert "13812345678" not in shown
    assert "110101199003074518" not in shown
    assert shown.endswith("\\x00")


def test_rows_reappear_until_fixed_then_leave(state: sa.Engine, gx: GxValidator) -> None:
    bad = {1: {"currency": "XYZ"}, 3: {"state": "bogus"}}
    gate(state, gx, "run-1", claims_with(bad))
    gate(state, gx, "run-2", claims_with(bad))
    rows = quarantine(state).set_index("record_key")
    assert rows["first_run_id"].tolist() == ["run-1", "run-1"]
    assert rows["last_run_id"].tolist() == ["run-2", "run-2"]
    assert rows["seen_runs"].tolist() == [2, 2]
    assert rows["released_at"].isna().all()

    # Run 3: claim 1002 fixed; 1004 still bad. A rerun of run 3 changes nothing.
    gate(state, gx, "run-3", claims_with({3: {"state": "bogus"}}))
    gate(state, gx, "run-3", claims_with({3: {"state": "bogus"}}))
    rows = quarantine(state).set_index("record_key")
    assert rows.at["oa:1002", "released_run_id"] == "run-3"
    assert pd.notna(rows.at["oa:1002", "released_at"])
    assert pd.isna(rows.at["oa:1004", "released_at"])
    assert rows.at["oa:1004", "seen_runs"] == 3
    assert len(rows) == 2

    # Broken again later: the same row reopens (no second row).
    gate(state, gx, "run-4", claims_with({1: {"currency": "XYZ"}, 3: {"state": "bogus"}}))
    rows = quarantine(state).set_index("record_key")
    assert len(rows) == 2
    assert rows["released_at"].isna().all()
    assert rows.at["oa:1002", "last_run_id"] == "run-4"


def test_a_window_run_releases_only_what_it_saw(state: sa.Engine, gx: GxValidator) -> None:
    gate(state, gx, "run-1", claims_with({1: {"currency": "XYZ"}, 3: {"currency": "XYZ"}}))
    window = frame("oa_claims", count=2)  # holds 1001 and 1002 (fixed); 1004 is outside the window
    gate(state, gx, "run-2", {"oa_claims": window})
    rows = quarantine(state).set_index("record_key")
    assert rows.at["oa:1002", "released_run_id"] == "run-2"
    assert pd.isna(rows.at["oa:1004", "released_at"])
    # A full run that no longer finds 1004 failing releases it (fixed, or gone).
    gate(state, gx, "run-3", {"oa_claims": window}, full_run=True, previous_counts={})
    assert quarantine(state).set_index("record_key").at["oa:1004", "released_run_id"] == "run-3"


def test_a_check_fixed_while_another_breaks_swaps_the_rows(state: sa.Engine, gx: GxValidator) -> None:
    gate(state, gx, "run-1", claims_with({1: {"currency": "XYZ"}}))
    gate(state, gx, "run-2", claims_with({1: {"state": "bogus"}}))
    rows = quarantine(state).set_index("expectation")
    assert rows.at["oa_claims.currency_known", "released_run_id"] == "run-2"
    assert pd.isna(rows.at["oa_claims.state_known", "released_at"])


def test_frames_not_validated_keep_their_quarantine(state: sa.Engine, gx: GxValidator) -> None:
    employees = frame("oa_employees", "employee_code | name\nE1 | <NA>")
    gate(state, gx, "run-1", {"oa_employees": employees})
    gate(state, gx, "run-2", {"oa_claims": frame("oa_claims", count=2)}, full_run=True, previous_counts={})
    assert quarantine(state)["released_at"].isna().all()


def test_every_result_is_stored_per_run_and_summarised(state: sa.Engine, gx: GxValidator) -> None:
    sides = {
        "oa_claims": frame("oa_claims", count=4),
        "oa_lines": frame("oa_lines", "fee_type\n差旅费\n买游艇\n餐费\n餐费"),
    }
    gate(state, gx, "run-1", sides)
    gate(state, gx, "run-1", sides)  # a rerun replaces, it does not add
    with state.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT suite, success, statistics FROM claimsync.validation_result WHERE run_id = 'run-1'")
        ).all()
    by_suite = {r.suite: r for r in stored}
    assert set(by_suite) == {"oa_claims", "oa_lines"}
    lines = by_suite["oa_lines"]
    assert lines.success is False
    assert lines.statistics["rows"] == 4
    assert lines.statistics["failed_checks"] == {"fee_type_known": 1}
    assert lines.statistics["gate"] == "passed"
    assert lines.statistics["evaluated_expectations"] > 10
    assert by_suite["oa_claims"].statistics["removed_rows"] == 1

    summary = validation_summary(state, "run-1")
    assert summary.gate == "passed"
    assert not summary.success
    assert [s.suite for s in summary.suites] == ["oa_claims", "oa_lines"]
    assert summary.quarantined_open == 2
    assert summary.new_in_run == 2
    assert summary.by_expectation == {"oa_claims.has_quarantined_line": 1, "oa_lines.fee_type_known": 1}
    assert validation_summary(state, "no-such-run").gate == "not validated"


def test_a_stopped_run_keeps_its_quarantine_and_results(state: sa.Engine, gx: GxValidator) -> None:
    data = frame("oa_claims", count=100)
    data.loc[:29, "currency"] = "???"
    with pytest.raises(RunStopped, match=r"30 of 100 rows \(30\.0%\)"):
        gate(state, gx, "run-1", {"oa_claims": data})
    assert len(quarantine(state)) == 30
    summary = validation_summary(state, "run-1")
    assert summary.gate == "stopped"
    assert summary.suites[0].statistics["removed_rows"] == 30


def test_collapse_is_measured_against_the_last_full_run_that_passed(state: sa.Engine, gx: GxValidator) -> None:
    gate(state, gx, "full-1", {"oa_claims": frame("oa_claims", count=40)}, full_run=True)
    with pytest.raises(RunStopped, match="oa_claims: 10 rows extracted, at least 20 expected"):
        gate(state, gx, "full-2", {"oa_claims": frame("oa_claims", count=10)}, full_run=True)
    # The stopped run's count is not the new normal: the next full run is still compared with 40.
    with pytest.raises(RunStopped, match="at least 20 expected"):
        gate(state, gx, "full-3", {"oa_claims": frame("oa_claims", count=12)}, full_run=True)
    # A forced run is accepted as the new normal.
    gate(state, gx, "full-4", {"oa_claims": frame("oa_claims", count=12)}, full_run=True, force=True)
    assert gate(state, gx, "full-5", {"oa_claims": frame("oa_claims", count=12)}, full_run=True).gate == "passed"


def test_full_run_comes_from_the_run_row(state: sa.Engine, gx: GxValidator) -> None:
    gate(state, gx, "full-1", {"oa_claims": frame("oa_claims", count=40)}, full_run=True)
    info = RunInfo(run_id="recon-2", flow="reconcile", as_of=AS_OF, triggered_by="test", config_version="x")
    begin_run(state, info)
    with pytest.raises(RunStopped, match="at least 20 expected"):
        validate_sources(
            {"oa_claims": frame("oa_claims", count=5)}, settings=SETTINGS, as_of=AS_OF, run_id="recon-2",
            state_engine=state, gx=gx,
        )  # fmt: skip


def test_delta_result_is_stored(state: sa.Engine, gx: GxValidator) -> None:
    writes = [
        PlannedWrite("expense", "flow", "update", f"B{i}", {"state": "approving"}, {"state": "paying"})
        for i in range(30)
    ]
    with pytest.raises(RunStopped):
        validate_delta(
            writes, settings=SETTINGS, target_row_counts={("expense", "flow"): 100}, run_id="run-1",
            state_engine=state, gx=gx,
        )  # fmt: skip
    with state.connect() as conn:
        row = conn.execute(sa.text("SELECT success, statistics FROM claimsync.validation_result")).one()
    assert row.success is False
    assert row.statistics["gate"] == "stopped"
    assert row.statistics["tables"] == {"expense.flow": {"writes": 30, "limit": 20, "rows": 100}}
