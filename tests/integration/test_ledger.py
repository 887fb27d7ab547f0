"""The exception ledger against real PostgreSQL: identity across runs, status moves, reruns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import sqlalchemy as sa

from claimsync.ledger import record_reconciliation, side_snapshots
from claimsync.runs import begin_run
from tests.conftest import Databases
from tests.integration.report_fixtures import FakeResult, exceptions_frame, prepared_state, record_run, run_info

SH = ZoneInfo("Asia/Shanghai")
T1 = datetime(2026, 3, 1, 0, 0, tzinfo=SH)
T2 = T1 + timedelta(days=1)
T3 = T1 + timedelta(days=2)

RUN1 = """
code               | oa_request_id | claim_code  | oa_amount | expense_amount | oa_state | expense_state
amount_mismatch    | 1001          | B2026000001 | 1200.00   | 1100.00        | approved | approved
missing_in_expense | 1002          |             | 88.50     |                | approved |
missing_in_oa      |               | B2026000009 |           | 300.00         |          | paid
"""
RUN2 = """
code               | oa_request_id | claim_code  | oa_amount | expense_amount | oa_state | expense_state
amount_mismatch    | 1001          | B2026000001 | 1200.00   | 1000.00        | approved | approved
"""


@pytest.fixture
def state(databases: Databases) -> Iterator[sa.Engine]:
    engine = prepared_state(databases.engine("state"))
    yield engine
    engine.dispose()


def ledger(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM claimsync.recon_exception ORDER BY id")).mappings().all()
    return {f"{r['code']}|{r['business_key']}": dict(r) for r in rows}


def events(engine: sa.Engine) -> list[tuple[str, str, str | None, str | None, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT e.code || '|' || e.business_key, v.action, v.from_status, v.to_status, v.run_id"
                " FROM claimsync.recon_exception_event v JOIN claimsync.recon_exception e ON e.id = v.exception_id"
                " ORDER BY v.id"
            )
        ).all()
    return [tuple(r) for r in rows]


def set_status(engine: sa.Engine, key: str, status: str) -> None:
    code, business_key = key.split("|")
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE claimsync.recon_exception SET status = :s WHERE code = :c AND business_key = :k"),
            {"s": status, "c": code, "k": business_key},
        )


def test_first_and_last_seen_and_auto_resolve_on_a_full_run(state: sa.Engine) -> None:
    first = record_run(state, "r1", T1, exceptions_frame(RUN1))
    assert (first.found, first.new, first.reopened, first.auto_resolved, first.outstanding) == (3, 3, 0, 0, 3)
    assert first.new_by_code == {"amount_mismatch": 1, "missing_in_expense": 1, "missing_in_oa": 1}
    assert first.new_amounts_cents == {"amount_mismatch": 10000, "missing_in_expense": 8850, "missing_in_oa": 30000}
    second = record_run(state, "r2", T2, exceptions_frame(RUN2))
    assert (second.found, second.new, second.reopened, second.auto_resolved, second.outstanding) == (1, 0, 0, 2, 1)
    assert second.new_by_code == {}

    rows = ledger(state)
    mismatch = rows["amount_mismatch|oa:1001"]
    assert (mismatch["first_seen"], mismatch["last_seen"]) == (T1, T2)
    assert (mismatch["first_run_id"], mismatch["last_run_id"], mismatch["status"]) == ("r1", "r2", "open")
    assert mismatch["expense_amount"] == Decimal("1000.00")
    assert mismatch["amount_impact"] == Decimal("200.00")
    gone = rows["missing_in_expense|oa:1002"]
    assert (gone["status"], gone["resolved_at"], gone["last_run_id"]) == ("resolved", T2, "r1")
    assert rows["missing_in_oa|exp:B2026000009"]["status"] == "resolved"
    assert events(state) == [
        ("missing_in_expense|oa:1002", "auto_resolved", "open", "resolved", "r2"),
        ("missing_in_oa|exp:B2026000009", "auto_resolved", "open", "resolved", "r2"),
    ]


def test_a_resolved_exception_that_reappears_is_reopened_with_its_first_seen(state: sa.Engine) -> None:
    record_run(state, "r1", T1, exceptions_frame(RUN1))
    record_run(state, "r2", T2, exceptions_frame(RUN2))
    third = record_run(state, "r3", T3, exceptions_frame(RUN1))
    assert (third.found, third.new, third.reopened, third.auto_resolved) == (3, 0, 2, 0)
    back = ledger(state)["missing_in_expense|oa:1002"]
    assert (back["status"], back["resolved_at"], back["first_seen"], back["last_seen"]) == ("open", None, T1, T3)
    assert events(state)[-2:] == [
        ("missing_in_expense|oa:1002", "reopened", "resolved", "open", "r3"),
        ("missing_in_oa|exp:B2026000009", "reopened", "resolved", "open", "r3"),
    ]


def test_a_partial_run_resolves_nothing(state: sa.Engine) -> None:
    record_run(state, "r1", T1, exceptions_frame(RUN1))
    partial = record_run(state, "r2", T2, exceptions_frame(RUN2), full=False)
    assert partial.auto_resolved == 0
    assert {row["status"] for row in ledger(state).values()} == {"open"}
    assert events(state) == []


def test_acknowledged_and_written_off_are_a_persons_decision(state: sa.Engine) -> None:
    record_run(state, "r1", T1, exceptions_frame(RUN1))
    set_status(state, "amount_mismatch|oa:1001", "acknowledged")
    set_status(state, "missing_in_oa|exp:B2026000009", "written_off")
    record_run(state, "r2", T2, exceptions_frame(RUN1))  # all found again
    rows = ledger(state)
    assert rows["amount_mismatch|oa:1001"]["status"] == "acknowledged"
    assert rows["amount_mismatch|oa:1001"]["last_seen"] == T2
    assert rows["missing_in_oa|exp:B2026000009"]["status"] == "written_off"

    record_run(state, "r3", T3, exceptions_frame("code | oa_request_id\nstatus_mismatch | 5"))  # none found
    rows = ledger(state)
    assert rows["amount_mismatch|oa:1001"]["status"] == "resolved"
    assert rows["missing_in_oa|exp:B2026000009"]["status"] == "written_off"
    assert ("amount_mismatch|oa:1001", "auto_resolved", "acknowledged", "resolved", "r3") in events(state)


def test_write_conflicts_are_not_resolved_by_a_reconciliation(state: sa.Engine) -> None:
    frame = exceptions_frame(
        "code | business_key | claim_code | detail\n"
        "write_conflict | write:expense:flow:B1 | B1 | target changed since it was read"
    )
    record_run(state, "r1", T1, frame)
    record_run(state, "r2", T2, exceptions_frame(RUN2))
    assert ledger(state)["write_conflict|write:expense:flow:B1"]["status"] == "open"


def snapshot(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    tables = {
        "recon_exception": "SELECT * FROM claimsync.recon_exception ORDER BY id",
        "recon_run_exception": "SELECT * FROM claimsync.recon_run_exception ORDER BY run_id, exception_id",
        "recon_exception_event": "SELECT id, exception_id, action, from_status, to_status, run_id"
        " FROM claimsync.recon_exception_event ORDER BY id",
        "recon_run_stats": "SELECT run_id, as_of, exception_count, amount_impact, match_rate"
        " FROM claimsync.recon_run_stats ORDER BY run_id",
    }
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(sa.text(sql)).all()] for name, sql in tables.items()}


def test_recording_the_same_run_again_duplicates_nothing(state: sa.Engine) -> None:
    record_run(state, "r1", T1, exceptions_frame(RUN1))
    summary = record_run(state, "r2", T2, exceptions_frame(RUN2))
    before = snapshot(state)
    assert len(before["recon_exception_event"]) == 2
    again = record_run(state, "r2", T2, exceptions_frame(RUN2))
    assert again == summary
    assert snapshot(state) == before


def test_a_rerun_that_finds_less_drops_the_stale_links(state: sa.Engine) -> None:
    record_run(state, "r1", T1, exceptions_frame(RUN1), full=False)
    record_run(state, "r1", T1, exceptions_frame(RUN2), full=False)
    with state.connect() as conn:
        linked = conn.execute(sa.text("SELECT count(*) FROM claimsync.recon_run_exception WHERE run_id = 'r1'"))
        assert linked.scalar() == 1


def test_each_run_keeps_what_it_saw(state: sa.Engine) -> None:
    record_run(state, "r1", T1, exceptions_frame(RUN1))
    record_run(state, "r2", T2, exceptions_frame(RUN2))
    with state.connect() as conn:
        seen = conn.execute(
            sa.text(
                "SELECT r.run_id, r.expense_amount, r.amount_impact FROM claimsync.recon_run_exception r"
                " JOIN claimsync.recon_exception e ON e.id = r.exception_id"
                " WHERE e.business_key = 'oa:1001' ORDER BY r.run_id"
            )
        ).all()
    assert [tuple(r) for r in seen] == [
        ("r1", Decimal("1100.00"), Decimal("100.00")),
        ("r2", Decimal("1000.00"), Decimal("200.00")),
    ]


def test_amounts_are_exact_decimals_and_stats_are_kept(state: sa.Engine) -> None:
    frame = exceptions_frame(
        "code | oa_request_id | oa_amount | expense_amount\namount_mismatch | 7 | 12345678901234.56 | 0.01"
    )
    record_run(state, "r1", T1, frame)
    row = ledger(state)["amount_mismatch|oa:7"]
    assert (row["oa_amount"], row["expense_amount"]) == (Decimal("12345678901234.56"), Decimal("0.01"))
    assert row["amount_impact"] == Decimal("12345678901234.55")
    with state.connect() as conn:
        stats = conn.execute(sa.text("SELECT * FROM claimsync.recon_run_stats")).mappings().one()
    assert (stats["oa_claims"], stats["matched"], stats["clean_matched"], stats["exception_count"]) == (100, 95, 90, 1)
    assert stats["match_rate"] == Decimal("0.900000")
    assert stats["amount_impact"] == Decimal("12345678901234.55")


def test_an_exception_reported_twice_is_recorded_once(state: sa.Engine) -> None:
    frame = exceptions_frame(
        "code | oa_request_id | oa_amount | expense_amount\n"
        "amount_mismatch | 7 | 10.00 | 9.00\n"
        "amount_mismatch | 7 | 10.00 | 5.00"
    )
    summary = record_run(state, "r1", T1, frame)
    assert summary.found == 1
    assert ledger(state)["amount_mismatch|oa:7"]["amount_impact"] == Decimal("5.00")


def test_an_empty_reconciliation_is_recorded(state: sa.Engine) -> None:
    record_run(state, "r1", T1, exceptions_frame(RUN1))
    empty = exceptions_frame(RUN1).iloc[0:0]
    summary = record_run(state, "r2", T2, empty)
    assert (summary.found, summary.auto_resolved, summary.outstanding) == (0, 3, 0)


def test_a_frame_with_an_unknown_code_is_refused_before_any_write(state: sa.Engine) -> None:
    frame = exceptions_frame(RUN2)
    frame.loc[0, "code"] = "no_such_code"
    info = run_info("r1", T1)
    begin_run(state, info)
    with pytest.raises(ValueError, match="unknown codes"):
        record_reconciliation(state, info, FakeResult(frame), full=True)
    assert ledger(state) == {}


def test_side_snapshots_are_stored_with_both_sides() -> None:
    exceptions = exceptions_frame(RUN1)
    oa = pd.DataFrame(
        {
            "request_id": [1001, 1002],
            "claim_code": ["B2026000001", None],
            "employee_code": ["E000001", "E000002"],
            "amount_cents": [120000, 8850],
            "currency": ["CNY", "CNY"],
            "state": ["approved", "approved"],
            "changed_at": [T1, T1],
        }
    )
    expense = pd.DataFrame(
        {
            "claim_code": ["B2026000001", "B2026000009"],
            "oa_request_id": pd.array([1001, None], dtype="Int64"),
            "employee_code": ["E000009", "E000003"],
            "amount_cents": [110000, 30000],
            "pay_cents": [110000, 30000],
            "currency": ["CNY", "CNY"],
            "state": ["approved", "paid"],
        }
    )
    with_sides = side_snapshots(exceptions, oa, expense)
    oa_sides = [None if s is None else json.loads(s) for s in with_sides["oa_side"].tolist()]
    expense_sides = [None if s is None else json.loads(s) for s in with_sides["expense_side"].tolist()]
    assert oa_sides[0] == {
        "request_id": 1001,
        "claim_code": "B2026000001",
        "employee_code": "E000001",
        "amount": "1200.00",
        "currency": "CNY",
        "state": "approved",
        "changed_at": T1.isoformat(),
    }
    assert expense_sides[0]["employee_code"] == "E000009"
    assert expense_sides[0]["request_id"] == 1001
    assert expense_sides[1] is None  # 1002 has no claim
    assert oa_sides[2] is None  # B2026000009 bypassed OA
    assert expense_sides[2]["amount"] == "300.00"


def test_side_snapshots_reach_the_ledger(state: sa.Engine) -> None:
    exceptions = exceptions_frame(RUN2)
    oa = pd.DataFrame({"request_id": [1001], "amount_cents": [120000], "state": ["approved"]})
    expense = pd.DataFrame({"claim_code": ["B2026000001"], "amount_cents": [100000], "state": ["approved"]})
    record_run(state, "r1", T1, side_snapshots(exceptions, oa, expense))
    row = ledger(state)["amount_mismatch|oa:1001"]
    assert row["oa_side"] == {"request_id": 1001, "amount": "1200.00", "state": "approved"}
    assert row["expense_side"] == {"claim_code": "B2026000001", "amount": "1000.00", "state": "approved"}
