"""Each reconciliation rule on small tables a finance person can read (claimsync.rules).

The tables are pipe-delimited text: amounts in yuan with two decimals, times in Asia/Shanghai.
Columns left out take harmless defaults (an active employee E1, CNY, changed long before
as_of, header equal to its lines).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from claimsync.canonical import Sides
from claimsync.config import Settings
from claimsync.model import (
    DEPARTMENT_COLUMNS,
    EMPLOYEE_COLUMNS,
    EXCEPTION_COLUMNS,
    EXPENSE_CLAIM_COLUMNS,
    LINE_COLUMNS,
    OA_CLAIM_COLUMNS,
    PAYMENT_COLUMNS,
    decimal_to_cents,
)
from claimsync.reconcile import LINK_COLUMNS, ReconResult, link_claims, reconcile
from claimsync.rules import RECONCILE_CODES

TZ = ZoneInfo("Asia/Shanghai")
AS_OF = datetime(2026, 3, 31, 12, 0, tzinfo=TZ)
SETTINGS = Settings()


def table(text: str) -> list[dict[str, str | None]]:
    """Pipe-delimited rows under a header; an empty cell is None."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    header = [h.strip() for h in lines[0].split("|")]
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.split("|")]
        rows.append({h: (c or None) for h, c in zip(header, cells, strict=True)})
    return rows


def _cents(text: str | None) -> object:
    return pd.NA if text is None else decimal_to_cents(Decimal(text))


def _time(text: str | None) -> pd.Timestamp:
    return pd.Timestamp(text or "2026-03-01 09:00", tz=TZ)


def oa_claims(text: str) -> pd.DataFrame:
    records = []
    for row in table(text):
        amount = row.get("amount") or "100.00"
        records.append(
            {
                "request_id": int(str(row["request_id"])),
                "request_mark": f"FYBX-{row['request_id']}",
                "claim_code": row.get("bxdh"),
                "employee_code": row.get("employee", "E1"),
                "employee_status": int(row.get("status") or 1),
                "department_code": "D1",
                "amount_cents": _cents(amount),
                "currency": row.get("currency") or "CNY",
                "state": row["state"],
                "fkzt": None,
                "fkrq": None,
                "pzh": None,
                "approved_at": pd.NaT,
                "created_at": _time(None),
                "changed_at": _time(row.get("changed")),
                "lines_total_cents": _cents(row.get("lines") or amount),
                "line_count": 1,
            }
        )
    frame = pd.DataFrame.from_records(records, columns=list(OA_CLAIM_COLUMNS))
    return frame.astype(
        {"request_id": "Int64", "employee_status": "Int64", "amount_cents": "Int64", "lines_total_cents": "Int64"}
    )


def expense_claims(text: str) -> pd.DataFrame:
    records = []
    for row in table(text):
        amount = row.get("amount") or "100.00"
        records.append(
            {
                "flow_id": f"f-{row['code']}",
                "claim_code": row["code"],
                "oa_request_id": None if row.get("oa_request_id") is None else int(str(row["oa_request_id"])),
                "employee_code": row.get("employee", "E1"),
                "department_code": "D1",
                "amount_cents": _cents(amount),
                "pay_cents": _cents(amount),
                "currency": row.get("currency") or "CNY",
                "state": row["state"],
                "raw_state": row["state"],
                "approve_time": pd.NaT,
                "pay_time": pd.NaT,
                "voucher_no": None,
                "created_at": _time(None),
                "changed_at": _time(row.get("changed")),
                "lines_total_cents": _cents(row.get("lines") or amount),
                "line_count": 1,
            }
        )
    frame = pd.DataFrame.from_records(records, columns=list(EXPENSE_CLAIM_COLUMNS))
    return frame.astype(
        {"oa_request_id": "Int64", "amount_cents": "Int64", "pay_cents": "Int64", "lines_total_cents": "Int64"}
    )


def lines(text: str | None) -> pd.DataFrame:
    records = [
        {
            "claim_ref": row["claim"],
            "seq": 1,
            "fee_type": "差旅费",
            "amount_cents": _cents(row.get("amount") or "100.00"),
            "invoice_code": row.get("code"),
            "invoice_number": row.get("number"),
            "invoice_date": None,
        }
        for row in (table(text) if text else [])
    ]
    return pd.DataFrame.from_records(records, columns=list(LINE_COLUMNS)).astype({"amount_cents": "Int64"})


def sides(oa: str, expense: str, oa_lines: str | None = None, expense_lines: str | None = None) -> Sides:
    def empty(columns: tuple[str, ...]) -> pd.DataFrame:
        return pd.DataFrame(columns=list(columns))

    return Sides(
        oa_claims=oa_claims(oa),
        oa_lines=lines(oa_lines),
        oa_employees=empty(EMPLOYEE_COLUMNS),
        oa_departments=empty(DEPARTMENT_COLUMNS),
        expense_claims=expense_claims(expense),
        expense_lines=lines(expense_lines),
        expense_payments=empty(PAYMENT_COLUMNS),
        expense_employees=empty(EMPLOYEE_COLUMNS),
        expense_departments=empty(DEPARTMENT_COLUMNS),
    )


def run(oa: str, expense: str, settings: Settings = SETTINGS, **kwargs: str) -> ReconResult:
    return reconcile(sides(oa, expense, **kwargs), as_of=AS_OF, settings=settings)


def found(result: ReconResult) -> set[tuple[str, str]]:
    return set(zip(result.exceptions["code"], result.exceptions["business_key"], strict=True))


NO_EXPENSE = "code | oa_request_id | state"
NO_OA = "request_id | bxdh | state"


def test_a_clean_pair_raises_nothing_and_counts_as_matched() -> None:
    result = run(
        """
        request_id | bxdh | state | amount
        101        | B101 | paid  | 1200.00
        """,
        """
        code | oa_request_id | state | amount
        B101 | 101           | paid  | 1200.00
        """,
    )
    assert found(result) == set()
    assert (result.oa_claims, result.expense_claims, result.matched, result.clean_matched) == (1, 1, 1, 1)
    assert result.match_rate == 1.0
    assert result.counts() == {code.value: 0 for code in RECONCILE_CODES}
    assert list(result.exceptions.columns) == list(EXCEPTION_COLUMNS)


@pytest.mark.parametrize(
    ("oa_amount", "expense_amount", "tolerance", "mismatch"),
    [
        ("1200.00", "1200.00", "0.00", False),
        ("1200.00", "1199.99", "0.00", True),
        ("1200.00", "1199.99", "0.01", False),
        ("1200.00", "1199.98", "0.01", True),
    ],
)
def test_amount_tolerance_is_exact_to_the_cent(
    oa_amount: str, expense_amount: str, tolerance: str, mismatch: bool
) -> None:
    settings = replace(SETTINGS, tolerances={"CNY": Decimal(tolerance)})
    result = run(
        f"""
        request_id | bxdh | state    | amount
        101        | B101 | approved | {oa_amount}
        """,
        f"""
        code | oa_request_id | state    | amount
        B101 | 101           | paying   | {expense_amount}
        """,
        settings,
    )
    assert (("amount_mismatch", "oa:101") in found(result)) is mismatch
    if mismatch:
        row = result.exceptions.loc[result.exceptions["code"] == "amount_mismatch"].iloc[0]
        assert row["detail"] == f"bxje {oa_amount} ≠ sum_amount {expense_amount}"
        expected_impact = decimal_to_cents(Decimal(oa_amount)) - decimal_to_cents(Decimal(expense_amount))
        assert row["amount_impact_cents"] == expected_impact


def test_different_currencies_are_an_amount_mismatch() -> None:
    result = run(
        """
        request_id | bxdh | state    | currency
        101        | B101 | approved | USD
        """,
        """
        code | oa_request_id | state  | currency
        B101 | 101           | paying | CNY
        """,
    )
    assert found(result) == {("amount_mismatch", "oa:101")}


def test_a_voided_or_draft_claim_is_never_missing_in_oa() -> None:
    result = run(
        NO_OA,
        """
        code | oa_request_id | state
        B1   |               | voided
        B2   |               | draft
        B3   |               | approved
        B4   | 999           | paid
        """,
    )
    assert found(result) == {("missing_in_oa", "exp:B3"), ("missing_in_oa", "exp:B4")}
    detail = result.exceptions.set_index("business_key").loc["exp:B4", "detail"]
    assert detail == "expense claim paid links no OA request; its oa_request_id 999 names no request of the workflow"


def test_a_draft_or_exit_is_never_missing_in_expense() -> None:
    result = run(
        """
        request_id | bxdh | state
        1          |      | draft
        2          |      | rejected
        3          |      | withdrawn
        4          |      | voided
        5          |      | submitted
        6          |      | paid
        """,
        NO_EXPENSE,
    )
    assert found(result) == {("missing_in_expense", "oa:5"), ("missing_in_expense", "oa:6")}


@pytest.mark.parametrize(
    ("oa_changed", "expected"),
    [
        ("2026-03-31 11:40", "in_flight"),  # 20 minutes before as_of: inside the 30-minute grace
        ("2026-03-31 11:29", "missing_in_expense"),  # 31 minutes before: outside
    ],
)
def test_grace_window_turns_missing_in_expense_into_in_flight(oa_changed: str, expected: str) -> None:
    result = run(
        f"""
        request_id | state     | changed
        7          | submitted | {oa_changed}
        """,
        NO_EXPENSE,
    )
    assert found(result) == {(expected, "oa:7")}


@pytest.mark.parametrize(
    ("expense_changed", "expected"),
    [("2026-03-31 11:50", "in_flight"), ("2026-03-30 11:50", "status_mismatch")],
)
def test_grace_window_on_a_pair_uses_either_side(expense_changed: str, expected: str) -> None:
    result = run(
        """
        request_id | bxdh | state     | changed
        8          | B8   | submitted | 2026-03-01 09:00
        """,
        f"""
        code | oa_request_id | state | changed
        B8   | 8             | draft | {expense_changed}
        """,
    )
    assert found(result) == {(expected, "oa:8")}


@pytest.mark.parametrize(
    ("oa_state", "expense_state", "expected"),
    [
        ("approved", "submitted", set()),  # the sync approves the claim
        ("rejected", "submitted", set()),  # the sync rejects the claim
        ("withdrawn", "submitted", set()),  # a withdrawn request rejects the claim
        ("withdrawn", "rejected", set()),  # withdrawn ≡ rejected
        ("approved", "paying", set()),  # expense ahead: OA fkzt follows
        ("paying", "paid", set()),
        ("approved", "paid", set()),  # paid after OA approval: not paid_without_approval
        ("paid", "paying", {"status_mismatch"}),  # OA ahead of expense: nothing explains it
        ("submitted", "approved", {"status_mismatch"}),
        ("submitted", "paid", {"paid_without_approval"}),
        ("withdrawn", "paid", {"paid_without_approval"}),  # OA withdrawn after payment
        ("voided", "paying", {"paid_without_approval"}),
        ("draft", "submitted", {"status_mismatch"}),
    ],
)
def test_state_comparison_of_a_pair(oa_state: str, expense_state: str, expected: set[str]) -> None:
    result = run(
        f"""
        request_id | bxdh | state
        9          | B9   | {oa_state}
        """,
        f"""
        code | oa_request_id | state
        B9   | 9             | {expense_state}
        """,
    )
    assert found(result) == {(code, "oa:9") for code in expected}


def test_fallback_link_by_bxdh_pairs_a_claim_without_oa_request_id() -> None:
    data = sides(
        """
        request_id | bxdh | state
        10         | B10  | approved
        """,
        """
        code | oa_request_id | state
        B10  |               | paying
        """,
    )
    result = reconcile(data, as_of=AS_OF, settings=SETTINGS)
    assert found(result) == set()
    assert result.matched == 1
    links = link_claims(data)
    assert list(links.columns) == list(LINK_COLUMNS)
    assert links.to_dict("records") == [
        {"request_id": 10, "claim_code": "B10", "link": "fallback", "duplicate_link": False}
    ]


def test_duplicate_link_keeps_its_records_out_of_pairwise_and_missing_rules() -> None:
    data = sides(
        """
        request_id | bxdh | state     | amount
        1          | B1   | submitted | 100.00
        3          |      | approved  | 300.00
        4          | B3   | paid      | 400.00
        """,
        """
        code | oa_request_id | state  | amount
        B1   |               | paid   | 999.00
        B2   | 1             | paying | 100.00
        B3   | 3             | paid   | 300.00
        """,
    )
    result = reconcile(data, as_of=AS_OF, settings=SETTINGS)
    # request 1 is reached by B1 (bxdh) and B2 (oa_request_id); claim B3 reaches 3 and 4
    assert found(result) == {("duplicate_link", "oa:1"), ("duplicate_link", "exp:B3")}
    details = result.exceptions.set_index("business_key")["detail"]
    assert details["oa:1"] == "OA request reached by 2 claims: B1, B2"
    assert details["exp:B3"] == "claim reaches 2 OA requests: 3, 4"
    assert result.matched == 0
    links = link_claims(data).sort_values(["request_id", "claim_code"]).reset_index(drop=True)
    assert links["duplicate_link"].all()
    assert links["link"].tolist() == ["fallback", "primary", "primary", None]


def test_duplicate_keys_are_taken_once() -> None:
    result = run(
        """
        request_id | bxdh | state | amount
        11         | B11  | paid  | 50.00
        11         | B11  | paid  | 70.00
        """,
        """
        code | oa_request_id | state | amount
        B11  | 11            | paid  | 50.00
        B11  | 11            | paid  | 80.00
        """,
    )
    assert found(result) == set()
    assert (result.oa_claims, result.expense_claims, result.matched) == (1, 1, 1)


def test_lines_total_mismatch_on_each_side_and_never_on_voided_claims() -> None:
    result = run(
        """
        request_id | bxdh | state    | amount | lines
        12         | B12  | approved | 100.00 | 90.00
        13         |      | voided   | 100.00 | 0.00
        """,
        """
        code | oa_request_id | state  | amount | lines
        B12  | 12            | paying | 100.00 | 100.01
        """,
    )
    assert found(result) == {("lines_total_mismatch", "oa:12"), ("lines_total_mismatch", "exp:B12")}
    impacts = result.exceptions.set_index("business_key")["amount_impact_cents"]
    assert (impacts["oa:12"], impacts["exp:B12"]) == (1000, 1)


def test_employee_mismatch_reasons() -> None:
    result = run(
        """
        request_id | bxdh | state    | employee | status
        14         | B14  | approved | E1       | 1
        15         | B15  | approved | E2       | 5
        16         | B16  | paid     | E3       | 5
        17         | B17  | approved |          | 1
        """,
        """
        code | oa_request_id | state  | employee
        B14  | 14            | paying | E9
        B15  | 15            | paying | E2
        B16  | 16            | paid   | E3
        B17  | 17            | paying | E4
        """,
    )
    assert found(result) == {
        ("employee_mismatch", "oa:14"),
        ("employee_mismatch", "oa:15"),
        ("employee_mismatch", "oa:17"),
    }
    details = result.exceptions.set_index("business_key")["detail"]
    assert details["oa:14"] == "claimant E1 (OA) ≠ E9 (expense)"
    assert details["oa:15"] == "OA claimant E2 inactive (status 5)"  # a paid claim (16) is not open
    assert details["oa:17"] == "OA claimant unknown"


def test_a_quandian_invoice_on_two_systems_is_one_duplicate_invoice() -> None:
    number = "26442000000000000123"  # a 20-digit 全电 number stands alone, whatever the code says
    result = run(
        """
        request_id | bxdh | state
        20         | B20  | approved
        21         | B21  | approved
        """,
        """
        code | oa_request_id | state
        B20  | 20            | paying
        B21  | 21            | paying
        B22  |               | voided
        """,
        oa_lines=f"""
        claim | code         | number   | amount
        20    | 044001900111 | {number} | 100.00
        20    | 044001900111 | 12345678 | 10.00
        """,
        expense_lines=f"""
        claim | code         | number   | amount
        B20   |              | {number} | 100.00
        B21   |              | {number} | 80.00
        B22   |              | {number} | 80.00
        B20   | 044001900111 | 12345678 | 10.00
        """,
    )
    # request 20 and claim B20 are one claim; B21 repeats the invoice; voided B22 is not live
    assert found(result) == {("duplicate_invoice", f"inv:{number}")}
    row = result.exceptions.iloc[0]
    assert row["amount_impact_cents"] == 8000
    assert row["detail"] == "invoice on 2 live claims: oa:20, oa:21"
    assert result.clean_matched == 0  # both pairs carry the duplicated invoice
    assert result.matched == 2


def test_counts_and_amounts_name_every_code() -> None:
    result = run(
        """
        request_id | state     | amount
        30         | submitted | 12.34
        """,
        NO_EXPENSE,
    )
    assert result.counts()["missing_in_expense"] == 1
    assert result.amounts_cents()["missing_in_expense"] == 1234
    assert set(result.counts()) == {code.value for code in RECONCILE_CODES}
    assert result.to_dict()["counts"] == result.counts()
    assert result.match_rate == 0.0


def test_nothing_to_compare_has_no_match_rate() -> None:
    result = run(NO_OA, NO_EXPENSE)
    assert result.match_rate is None
    assert result.exceptions.empty


def test_as_of_must_be_tz_aware() -> None:
    with pytest.raises(ValueError, match="tz-aware"):
        reconcile(sides(NO_OA, NO_EXPENSE), as_of=AS_OF.replace(tzinfo=None), settings=SETTINGS)


def test_grace_is_configurable() -> None:
    settings = replace(SETTINGS, grace=timedelta(minutes=5))
    result = run(
        """
        request_id | state     | changed
        7          | submitted | 2026-03-31 11:50
        """,
        NO_EXPENSE,
        settings,
    )
    assert found(result) == {("missing_in_expense", "oa:7")}
