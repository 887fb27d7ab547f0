"""The source and delta gates without a database: what is quarantined, what is held back, when a run stops."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from claimsync.config import Settings
from claimsync.errors import RunStopped
from claimsync.quality import (
    QualityOutcome,
    frames_of,
    lifecycle_rank,
    offending_values,
    record_key,
    validate_delta,
    validate_sources,
    with_frames,
)
from claimsync.quality_engine import GxValidator
from claimsync.writeback import PlannedWrite
from tests.quality_tables import frame

AS_OF = datetime(2026, 3, 31, 4, 0, tzinfo=UTC)
SETTINGS = Settings()


@pytest.fixture(scope="module")
def gx() -> GxValidator:
    return GxValidator()


def linked_sides(n: int = 4) -> dict[str, pd.DataFrame]:
    """n claims on both sides, linked (requestid ↔ oa_request_id), one line each, one payment each."""
    return {
        "oa_claims": frame("oa_claims", count=n),
        "oa_lines": frame("oa_lines", count=n),
        "expense_claims": frame("expense_claims", count=n),
        "expense_lines": frame("expense_lines", count=n),
        "expense_payments": frame("expense_payments", count=n),
    }


def gate(sides: Any, gx: GxValidator, **kwargs: Any) -> QualityOutcome:
    kwargs.setdefault("settings", SETTINGS)
    return validate_sources(sides, as_of=AS_OF, run_id="r1", gx=gx, **kwargs)


def keys(outcome: QualityOutcome, entity: str, source: str | None = None) -> set[str]:
    q = outcome.quarantine
    mask = q["entity"] == entity
    if source:
        mask &= q["source"] == source
    return set(q.loc[mask, "record_key"])


def test_clean_sides_pass_untouched(gx: GxValidator) -> None:
    sides = linked_sides()
    outcome = gate(sides, gx)
    assert outcome.gate == "passed"
    assert outcome.quarantine.empty
    for name, data in frames_of(outcome.sides).items():
        pd.testing.assert_frame_equal(data, sides[name])
    assert {s.suite for s in outcome.suites} == set(sides)
    assert all(s.success for s in outcome.suites)


def test_a_bad_line_quarantines_its_claim_and_holds_back_the_counterpart(gx: GxValidator) -> None:
    sides = linked_sides()
    sides["oa_lines"].loc[1, "fee_type"] = "买游艇"  # line of OA request 1002
    outcome = gate(sides, gx)
    assert keys(outcome, "lines", "oa") == {"oa:1002#1"}
    assert keys(outcome, "claims", "oa") == {"oa:1002"}
    assert keys(outcome, "claims", "expense") == {"exp:B26000002"}
    by_key = outcome.quarantine.set_index("record_key")
    assert by_key.at["oa:1002#1", "expectation"] == "oa_lines.fee_type_known"
    assert by_key.at["oa:1002", "expectation"] == "oa_claims.has_quarantined_line"
    assert by_key.at["exp:B26000002", "expectation"] == "expense_claims.counterpart_quarantined"
    clean = frames_of(outcome.sides)
    assert 1002 not in set(clean["oa_claims"]["request_id"])
    assert "1002" not in set(clean["oa_lines"]["claim_ref"])
    assert "B26000002" not in set(clean["expense_claims"]["claim_code"])
    assert "B26000002" not in set(clean["expense_lines"]["claim_ref"])  # leave with their claim
    assert "B26000002" not in set(clean["expense_payments"]["claim_code"])
    assert len(clean["oa_claims"]) == len(clean["expense_claims"]) == 3
    # The lines and payment that only left with their claim are not quarantine rows themselves.
    assert keys(outcome, "payments") == set()


def test_a_bad_payment_quarantines_its_claim(gx: GxValidator) -> None:
    sides = linked_sides()
    sides["expense_payments"].loc[0, "status"] = "DONE"
    outcome = gate(sides, gx)
    assert keys(outcome, "payments") == {"pay:P00000001"}
    assert keys(outcome, "claims", "expense") == {"exp:B26000001"}
    assert keys(outcome, "claims", "oa") == {"oa:1001"}  # the OA counterpart is held back
    reason = outcome.quarantine.set_index("record_key").at["exp:B26000001", "reason"]
    assert "payments" in reason


def test_bxdh_links_hold_back_too(gx: GxValidator) -> None:
    sides = linked_sides(3)
    sides["expense_claims"].loc[2, "oa_request_id"] = pd.NA  # linked only by code ↔ bxdh
    sides["expense_claims"].loc[2, "currency"] = "XYZ"
    outcome = gate(sides, gx)
    assert keys(outcome, "claims", "oa") == {"oa:1003"}


def test_duplicated_keys_quarantine_every_copy_once(gx: GxValidator) -> None:
    sides = {"oa_claims": frame("oa_claims", "request_id\n1\n2\n2\n3")}
    outcome = gate(sides, gx)
    assert outcome.quarantine["record_key"].tolist() == ["oa:2"]
    assert frames_of(outcome.sides)["oa_claims"]["request_id"].tolist() == [1, 3]


def test_null_keys_get_a_stable_fingerprint(gx: GxValidator) -> None:
    data = frame("oa_employees", "employee_code | name\n<NA> | 张伟\nE2 | 李娜")
    first = gate({"oa_employees": data}, gx).quarantine["record_key"].tolist()
    again = gate({"oa_employees": data.copy()}, gx).quarantine["record_key"].tolist()
    assert first == again
    assert first[0].startswith("row:")


def test_employee_counterparts_are_held_back(gx: GxValidator) -> None:
    sides = {
        "oa_employees": frame("oa_employees", "employee_code | name\nE1 | 张伟\nE2 | <NA>"),
        "expense_employees": frame("expense_employees", "employee_code | name\nE1 | 张伟\nE2 | 李娜"),
    }
    outcome = gate(sides, gx)
    assert keys(outcome, "employees", "oa") == {"emp:E2"}
    assert keys(outcome, "employees", "expense") == {"emp:E2"}
    assert frames_of(outcome.sides)["expense_employees"]["employee_code"].tolist() == ["E1"]


def test_offending_values_are_masked_and_printable() -> None:
    row = {"request_id": 7, "request_mark": "call 13812345678 id 110101199003074518", "pzh": "a\x00b"}
    values = offending_values(row, ["request_id", "request_mark", "pzh"])
    assert values["request_id"] == 7
    assert "13812345678" not in values["request_mark"]
    assert "110101199003074518" not in values["request_mark"]
    assert values["pzh"] == "a\\x00b"
    long = offending_values({"name": "长" * 5000}, ["name"])["name"]
    assert len(long) < 300
    assert long.endswith("(5000 characters)")


def test_record_keys() -> None:
    assert record_key("oa_claims", {"request_id": 12}) == "oa:12"
    assert record_key("expense_claims", {"claim_code": "B1", "flow_id": "F1"}) == "exp:B1"
    assert record_key("expense_claims", {"claim_code": None, "flow_id": "F1"}) == "flow:F1"
    assert record_key("oa_lines", {"claim_ref": "12", "seq": 3}) == "oa:12#3"
    assert record_key("expense_lines", {"claim_ref": "B1", "seq": None}) == "exp:B1#?"
    assert record_key("expense_payments", {"payment_id": "P1"}) == "pay:P1"
    assert record_key("oa_departments", {"department_code": "FIN"}) == "dep:FIN"


def test_breaker_stops_mass_corruption_and_names_the_check(gx: GxValidator) -> None:
    data = frame("oa_claims", count=100)
    data.loc[:19, "currency"] = "???"
    with pytest.raises(RunStopped) as stopped:
        gate({"oa_claims": data}, gx)
    message = str(stopped.value)
    assert "oa_claims: 20 of 100 rows (20.0%)" in message
    assert "5.0% threshold" in message
    assert "currency_known 20" in message
    assert "force" in message
    assert "\n" not in message


def test_force_quarantines_and_continues(gx: GxValidator) -> None:
    data = frame("oa_claims", count=100)
    data.loc[:19, "currency"] = "???"
    outcome = gate({"oa_claims": data}, gx, force=True)
    assert outcome.gate == "forced"
    assert outcome.stopped
    assert len(frames_of(outcome.sides)["oa_claims"]) == 80


def test_a_few_bad_rows_in_a_small_window_do_not_stop(gx: GxValidator) -> None:
    data = frame("oa_claims", count=20)
    data.loc[:2, "currency"] = "???"  # 15% of a 20-row window, but only 3 rows
    outcome = gate({"oa_claims": data}, gx)
    assert outcome.gate == "passed"
    assert len(outcome.quarantine) == 3


def test_threshold_comes_from_the_settings(gx: GxValidator) -> None:
    data = frame("oa_claims", count=400)
    data.loc[:11, "currency"] = "???"  # 3%
    assert gate({"oa_claims": data}, gx).gate == "passed"
    strict = Settings.from_env({"CLAIMSYNC_QUARANTINE_THRESHOLD": "0.02"})
    with pytest.raises(RunStopped, match=r"above the 2\.0% threshold"):
        gate({"oa_claims": data}, gx, settings=strict)


def test_collapse_against_the_previous_full_run(gx: GxValidator) -> None:
    sides = {"oa_claims": frame("oa_claims", count=10)}
    with pytest.raises(RunStopped, match=r"oa_claims: 10 rows extracted, at least 50 expected"):
        gate(sides, gx, full_run=True, previous_counts={"oa_claims": 100})
    assert gate(sides, gx, full_run=True, previous_counts={"oa_claims": 19}).gate == "passed"
    # A window run extracts what changed: its size says nothing.
    assert gate(sides, gx, full_run=False, previous_counts={"oa_claims": 100}).gate == "passed"


def test_empty_oa_extraction_while_expense_has_claims_stops_a_full_run(gx: GxValidator) -> None:
    sides = {"oa_claims": frame("oa_claims", count=0), "expense_claims": frame("expense_claims", count=3)}
    with pytest.raises(RunStopped, match="oa_claims: 0 rows extracted, at least 1 expected"):
        gate(sides, gx, full_run=True, previous_counts={})
    # The other way round is a first load into an empty expense system: not a data problem.
    sides = {"oa_claims": frame("oa_claims", count=3), "expense_claims": frame("expense_claims", count=0)}
    assert gate(sides, gx, full_run=True, previous_counts={}).gate == "passed"


def test_gx_large_frames_take_the_screened_path_with_the_same_result(gx: GxValidator) -> None:
    sides = linked_sides(50)
    sides["oa_lines"].loc[3, "amount_cents"] = -1
    sides["expense_claims"].loc[7, "raw_state"] = "bogus"
    full = gate(sides, gx)
    screened = gate(sides, gx, gx_full_rows=0)
    assert {s.engine for s in full.suites} == {"gx"}
    assert {s.engine for s in screened.suites} == {"screen+gx"}
    pd.testing.assert_frame_equal(full.quarantine, screened.quarantine)
    assert all(s.screen_false_positives == 0 for s in screened.suites)


def test_with_frames_keeps_the_sides_type() -> None:
    from claimsync.canonical import Sides

    empty = {name: frame(name, count=1) for name in Sides.__dataclass_fields__ if name != "scope"}
    sides = Sides(**empty)
    rebuilt = with_frames(sides, {"oa_claims": empty["oa_claims"].iloc[:0]})
    assert isinstance(rebuilt, Sides)
    assert len(rebuilt.oa_claims) == 0
    assert len(rebuilt.expense_claims) == 1


# --- the delta gate -------------------------------------------------------------------------


def write(key: str, before: Any = None, after: Any = None, table: str = "flow", op: str = "update") -> PlannedWrite:
    return PlannedWrite(
        target="expense" if table in ("flow", "staff", "department") else "oa",
        table=table,
        operation=op,  # type: ignore[arg-type]
        record_key=key,
        before=before,
        after=after or {"state": "paying"},
    )


COUNTS = {("expense", "flow"): 1000, ("oa", "formtable_main_38"): 1000, ("expense", "staff"): 100}


def test_a_sane_plan_passes(gx: GxValidator) -> None:
    writes = [
        write("B1", {"state": "approving"}, {"state": "paying"}),
        write("B2", None, {"state": "approving"}, op="insert"),
        write("1001", {"fkzt": None}, {"fkzt": "支付中"}, table="formtable_main_38"),
        write("1002", {"fkzt": "支付中"}, {"fkzt": "已支付"}, table="formtable_main_38"),
        write("E1", {"name": "张伟"}, {"name": "张伟伟"}, table="staff"),
    ]
    outcome = validate_delta(writes, settings=SETTINGS, target_row_counts=COUNTS, gx=gx)
    assert outcome.gate == "passed"


def test_the_same_record_twice_stops(gx: GxValidator) -> None:
    writes = [write("B1", {"state": "approving"}, {"state": "paying"}), write("B1", None, {"state": "paying"})]
    with pytest.raises(RunStopped, match=r"writes the same record twice: 2 writes \(expense.flow:B1"):
        validate_delta(writes, settings=SETTINGS, target_row_counts=COUNTS, gx=gx)


def test_a_backwards_move_stops(gx: GxValidator) -> None:
    writes = [
        write("B1", {"state": "paid"}, {"state": "paying"}),
        write("1001", {"fkzt": "已支付"}, {"fkzt": None}, table="formtable_main_38"),
        write("B3", {"state": "nullify"}, {"state": "approving"}),
    ]
    with pytest.raises(RunStopped, match="backwards in its lifecycle: 3 writes"):
        validate_delta(writes, settings=SETTINGS, target_row_counts=COUNTS, gx=gx)


def test_an_exploding_delta_stops_and_force_lets_it_through(gx: GxValidator) -> None:
    writes = [write(f"B{i}", {"state": "approving"}, {"state": "paying"}) for i in range(201)]
    with pytest.raises(RunStopped) as stopped:
        validate_delta(writes, settings=SETTINGS, target_row_counts=COUNTS, gx=gx)
    assert "expense.flow: 201 planned writes, 20.1% of 1,000 rows, above the limit of 200" in str(stopped.value)
    forced = validate_delta(writes, settings=SETTINGS, target_row_counts=COUNTS, gx=gx, force=True)
    assert forced.gate == "forced"
    assert validate_delta(writes[:200], settings=SETTINGS, target_row_counts=COUNTS, gx=gx).gate == "passed"


def test_small_tables_have_a_floor(gx: GxValidator) -> None:
    writes = [write(f"E{i}", {"name": "a"}, {"name": "b"}, table="staff") for i in range(10)]
    counts = {("expense", "staff"): 12}
    assert validate_delta(writes, settings=SETTINGS, target_row_counts=counts, gx=gx).gate == "passed"
    with pytest.raises(RunStopped, match=r"expense\.staff: 11 planned writes"):
        validate_delta(
            [*writes, write("E99", {"name": "a"}, {"name": "b"}, table="staff")],
            settings=SETTINGS,
            target_row_counts=counts,
            gx=gx,
        )


def test_an_empty_plan_passes(gx: GxValidator) -> None:
    assert validate_delta([], settings=SETTINGS, target_row_counts=COUNTS, gx=gx).gate == "passed"


def test_lifecycle_rank_of_exits_is_unknown() -> None:
    assert lifecycle_rank({"state": "rejected"}) != lifecycle_rank({"state": "rejected"})
