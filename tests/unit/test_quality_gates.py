"""Gate wiring without a database: which frames a flow validates, and leaving out a run's quarantine."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from claimsync.quality import frames_of, record_key
from claimsync.quality_gates import apply_quarantine, record_keys, suites_of
from claimsync.runs import RunInfo
from tests.quality_tables import frame


def run(flow: str) -> RunInfo:
    return RunInfo(run_id="r", flow=flow, as_of=datetime(2026, 3, 31, tzinfo=UTC), triggered_by="t", config_version="x")


def test_each_flow_validates_what_it_extracts() -> None:
    assert set(suites_of(run("claims"))) == {
        "oa_claims",
        "oa_lines",
        "expense_claims",
        "expense_lines",
        "expense_payments",
    }
    assert set(suites_of(run("org"))) == {"oa_employees", "oa_departments", "expense_employees", "expense_departments"}
    assert len(suites_of(run("all"))) == len(suites_of(run("reconcile"))) == 9


def test_apply_quarantine_leaves_out_records_keyless_rows_and_children() -> None:
    sides = {
        "oa_claims": frame("oa_claims", "request_id\n1\n2\n<NA>"),
        "oa_lines": frame("oa_lines", "claim_ref | seq\n1 | 1\n1 | 2\n2 | 1"),
        "expense_claims": frame("expense_claims", "claim_code | flow_id\nB1 | F1\nB2 | F2\n<NA> | F3"),
        "expense_payments": frame("expense_payments", "payment_id | claim_code\nP1 | B1\nP2 | B2"),
        "oa_employees": frame("oa_employees", "employee_code\nE1\nE2"),
    }
    quarantined = {
        ("oa", "claims"): {"oa:1"},
        ("expense", "claims"): {"exp:B2", "flow:F3"},
        ("oa", "employees"): {"emp:E2"},
    }
    clean = frames_of(apply_quarantine(sides, quarantined))
    assert clean["oa_claims"]["request_id"].tolist() == [2]
    assert clean["oa_lines"]["claim_ref"].tolist() == ["2"]
    assert clean["expense_claims"]["claim_code"].tolist() == ["B1"]
    assert clean["expense_payments"]["payment_id"].tolist() == ["P1"]
    assert clean["oa_employees"]["employee_code"].tolist() == ["E1"]


def test_nothing_quarantined_changes_nothing() -> None:
    sides = {"oa_claims": frame("oa_claims", count=3)}
    assert apply_quarantine(sides, {}) is sides


KEY_TEXT = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=130)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    codes=st.lists(st.one_of(st.none(), KEY_TEXT), min_size=1, max_size=8),
    seqs=st.lists(st.integers(1, 9), min_size=8, max_size=8),
)
def test_vectorised_record_keys_equal_the_stored_ones(codes: list[str | None], seqs: list[int]) -> None:
    lines = frame("expense_lines", [{"claim_ref": c, "seq": s} for c, s in zip(codes, seqs, strict=False)])
    claims = frame("expense_claims", [{"claim_code": c, "flow_id": f"F{i}"} for i, c in enumerate(codes)])
    for suite, data in (("expense_lines", lines), ("expense_claims", claims)):
        vectorised = record_keys(suite, data).tolist()
        scalar = [record_key(suite, {str(k): v for k, v in row.items()}) for row in data.to_dict(orient="records")]
        for got, want, code in zip(vectorised, scalar, codes, strict=True):
            if code is None and suite == "expense_lines":
                assert pd.isna(got)  # a line without its claim has no key: apply_quarantine drops it anyway
            else:
                assert got == want
