"""plan_writes on small tables a finance person can read: who owns what, and nothing moves backwards."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from claimsync.canonical import Sides
from claimsync.config import Settings
from claimsync.model import (
    DEPARTMENT_COLUMNS,
    EMPLOYEE_COLUMNS,
    EXPENSE_CLAIM_COLUMNS,
    LINE_COLUMNS,
    OA_CLAIM_COLUMNS,
    PAYMENT_COLUMNS,
)
from claimsync.plan import PlanDetails, claim_code, new_claim_request_ids, plan_writes
from claimsync.writeback import PlannedWrite

SH = ZoneInfo("Asia/Shanghai")
AS_OF = datetime(2026, 3, 31, 12, 0, tzinfo=SH)
SETTINGS = Settings()
FORM = SETTINGS.mapping.oa_form_table

_INTS = {"request_id", "oa_request_id", "employee_status", "amount_cents", "pay_cents", "seq",
         "lines_total_cents", "line_count"}  # fmt: skip
_TIMES = {"approved_at", "created_at", "changed_at", "approve_time", "pay_time", "finished_at"}
_BOOLS = {"active"}


def table(text: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """Pipe-delimited rows → a canonical frame; '-' is null; missing model columns are null."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    data: dict[str, list[Any]] = {h: [] for h in header}
    for line in lines[1:]:
        for h, cell in zip(header, line.strip("|").split("|"), strict=True):
            data[h].append(None if cell.strip() == "-" else cell.strip())
    frame = pd.DataFrame(index=range(len(lines) - 1))
    for column in (*header, *(c for c in columns if c not in header)):
        values = data.get(column, [None] * len(frame))
        if column in _INTS or (column == "status" and columns is EMPLOYEE_COLUMNS):  # payments' status is text
            frame[column] = pd.array([None if v is None else int(v) for v in values], dtype="Int64")
        elif column in _TIMES:
            frame[column] = pd.Series(pd.to_datetime(pd.Series(values, dtype="object"))).dt.tz_localize(SH)
        elif column in _BOOLS:
            frame[column] = pd.array([None if v is None else v == "true" for v in values], dtype="boolean")
        elif column in ("fkrq", "invoice_date"):
            frame[column] = pd.Series([None if v is None else date.fromisoformat(v) for v in values], dtype="object")
        else:
            frame[column] = pd.Series(values, dtype="str")
    return frame


def empty(columns: tuple[str, ...]) -> pd.DataFrame:
    return table("|" + "|".join(columns) + "|", columns)


def sides(**frames: pd.DataFrame) -> Sides:
    model = {
        "oa_claims": OA_CLAIM_COLUMNS,
        "oa_lines": LINE_COLUMNS,
        "oa_employees": EMPLOYEE_COLUMNS,
        "oa_departments": DEPARTMENT_COLUMNS,
        "expense_claims": EXPENSE_CLAIM_COLUMNS,
        "expense_lines": LINE_COLUMNS,
        "expense_payments": PAYMENT_COLUMNS,
        "expense_employees": EMPLOYEE_COLUMNS,
        "expense_departments": DEPARTMENT_COLUMNS,
    }
    return Sides(**{name: frames.get(name, empty(columns)) for name, columns in model.items()})


def links(text: str) -> pd.DataFrame:
    frame = table(text, ("request_id", "claim_code", "link", "duplicate_link"))
    frame["request_id"] = pd.array([None if v is None else int(v) for v in frame["request_id"]], dtype="Int64")
    frame["duplicate_link"] = frame["duplicate_link"] == "true"
    frame["link"] = [None if v in (None, "nan", "None") else v for v in frame["link"]]
    return frame


def plan(s: Sides, link_text: str, **kwargs: Any) -> list[PlannedWrite]:
    return plan_writes(s, links(link_text), SETTINGS, as_of=AS_OF, parts=("claims",), **kwargs)


def test_an_oa_approval_moves_a_claim_in_approval_to_paying_with_the_approval_time() -> None:
    oa = table(
        """
        | request_id | state     | claim_code | approved_at         | changed_at          |
        | 1          | approved  | B1         | 2026-03-30 10:00:00 | 2026-03-30 10:00:00 |
        | 2          | paying    | B2         | 2026-03-30 10:00:00 | 2026-03-30 10:00:00 |
        | 3          | rejected  | B3         | -                   | 2026-03-30 11:00:00 |
        | 4          | withdrawn | B4         | -                   | 2026-03-30 11:00:00 |
        | 5          | submitted | B5         | -                   | 2026-03-30 11:00:00 |
        """,
        OA_CLAIM_COLUMNS,
    )
    expense = table(
        """
        | claim_code | oa_request_id | state     | raw_state | approve_time |
        | B1         | 1             | submitted | approving | -            |
        | B2         | 2             | submitted | approving | -            |
        | B3         | 3             | submitted | pending   | -            |
        | B4         | 4             | approved  | paying    | -            |
        | B5         | 5             | submitted | approving | -            |
        """,
        EXPENSE_CLAIM_COLUMNS,
    )
    writes = plan(
        sides(oa_claims=oa, expense_claims=expense),
        """
        | request_id | claim_code | link    | duplicate_link |
        | 1          | B1         | primary | false          |
        | 2          | B2         | primary | false          |
        | 3          | B3         | primary | false          |
        | 4          | B4         | primary | false          |
        | 5          | B5         | primary | false          |
        """,
    )
    flows = {w.record_key: (w.before, w.after) for w in writes if w.table == "flow"}
    assert flows == {
        "B1": (
            {"state": "approving", "approve_time": None},
            {"state": "paying", "approve_time": datetime(2026, 3, 30, 10, 0, tzinfo=SH)},
        ),
        "B3": ({"state": "pending"}, {"state": "rejected"}),
    }
    # OA paying & expense in approval: not a move sync explains (rules.py); withdrawn vs paying is
    # paid_without_approval; both are for a person.


def test_expense_payment_status_date_and_voucher_go_to_oa_but_never_backwards() -> None:
    oa = table(
        """
        | request_id | state    | claim_code | fkzt   | fkrq       | pzh   |
        | 1          | approved | B1         | -      | -          | -     |
        | 2          | approved | B2         | -      | -          | -     |
        | 3          | paid     | B3         | 已支付 | 2026-03-20 | PZ-3  |
        | 4          | approved | B4         | -      | -          | -     |
        | 5          | approved | B5         | 支付失败 | -        | -     |
        | 6          | paid     | B6         | 已支付 | 2026-03-20 | -     |
        """,
        OA_CLAIM_COLUMNS,
    )
    expense = table(
        """
        | claim_code | oa_request_id | state    | raw_state | pay_time            | voucher_no |
        | B1         | 1             | paid     | paid      | 2026-03-29 23:30:00 | PZ-1       |
        | B2         | 2             | paying   | paying    | -                   | -          |
        | B3         | 3             | paying   | paying    | -                   | -          |
        | B4         | 4             | approved | paying    | -                   | -          |
        | B5         | 5             | paying   | paying    | -                   | -          |
        | B6         | 6             | paid     | archived  | 2026-03-20 09:00:00 | PZ-6       |
        """,
        EXPENSE_CLAIM_COLUMNS,
    )
    payments = table(
        """
        | payment_id | claim_code | status     |
        | P2         | B2         | PROCESSING |
        | P3         | B3         | PROCESSING |
        | P4         | B4         | FAILURE    |
        | P5         | B5         | PROCESSING |
        """,
        PAYMENT_COLUMNS,
    )
    link_text = "| request_id | claim_code | link | duplicate_link |\n" + "\n".join(
        f"| {i} | B{i} | primary | false |" for i in range(1, 7)
    )
    writes = plan(sides(oa_claims=oa, expense_claims=expense, expense_payments=payments), link_text)
    oa_writes = {w.record_key: (w.before, w.after) for w in writes if w.target == "oa"}
    assert oa_writes == {
        # paid at 23:30 Shanghai on the 29th: 付款日期 is the 29th, not a UTC date
        "1": ({"fkzt": None, "fkrq": None, "pzh": None}, {"fkzt": "已支付", "fkrq": "2026-03-29", "pzh": "PZ-1"}),
        "2": ({"fkzt": None}, {"fkzt": "支付中"}),
        # 3: OA says paid, expense still paying: OA is ahead, nothing moves back
        "4": ({"fkzt": None}, {"fkzt": "支付失败"}),  # a failed payment, no state move
        "5": ({"fkzt": "支付失败"}, {"fkzt": "支付中"}),  # retried after a failure
        "6": ({"pzh": None}, {"pzh": "PZ-6"}),  # archived later with a voucher
    }


def test_a_new_submitted_request_becomes_a_claim_with_its_lines_and_bxdh_waits_for_it() -> None:
    oa = table(
        """
        | request_id | request_mark     | state     | claim_code | employee_code | department_code | amount_cents | currency | created_at          | approved_at         | changed_at          |
        | 200123     | FYBX-2026-000123 | submitted | -          | E1            | FIN-01          | 12345        | CNY      | 2026-03-30 09:00:00 | -                   | 2026-03-30 09:00:00 |
        | 200124     | FYBX-2026-000124 | approved  | -          | E1            | FIN-01          | 500          | CNY      | 2025-12-30 09:00:00 | 2026-01-02 10:00:00 | 2026-01-02 10:00:00 |
        | 200125     | FYBX-2026-000125 | approved  | B26000125  | E1            | FIN-01          | 500          | CNY      | 2026-03-30 09:00:00 | 2026-03-30 10:00:00 | 2026-03-30 10:00:00 |
        | 200126     | FYBX-2026-000126 | draft     | -          | E1            | FIN-01          | 500          | CNY      | 2026-03-30 09:00:00 | -                   | 2026-03-30 09:00:00 |
        | 200127     | FYBX-2026-000127 | submitted | -          | E1            | FIN-01          | 500          | CNY      | 2026-03-30 09:00:00 | -                   | 2026-03-30 09:00:00 |
        """,  # noqa: E501
        OA_CLAIM_COLUMNS,
    )
    lines = table(
        """
        | claim_ref | seq | fee_type | amount_cents | invoice_code | invoice_number       | invoice_date |
        | 200123    | 1   | 交通费   | 2345         | -            | 12345678901234567890 | 2026-03-28   |
        | 200123    | 2   | 餐费     | 10000        | 1100231130   | 00012345             | 2026-03-29   |
        """,
        LINE_COLUMNS,
    )
    link_text = """
        | request_id | claim_code | link | duplicate_link |
        | 200123     | -          | -    | false          |
        | 200124     | -          | -    | false          |
        | 200125     | -          | -    | false          |
        | 200126     | -          | -    | false          |
        | 200127     | B9         | -    | true           |
        """
    s = sides(oa_claims=oa, oa_lines=lines)
    assert new_claim_request_ids(s, links(link_text)) == [200123, 200124]
    details = PlanDetails(request_titles={200123: "交通费报销-张伟-2026-03-30"}, line_remarks={(200123, 2): "加班餐"})
    writes = plan(s, link_text, details=details)
    assert [(w.target, w.table, w.operation, w.record_key) for w in writes] == [
        ("expense", "flow", "insert", "B26000200123"),
        ("oa", FORM, "update", "200123"),
        ("expense", "flow", "insert", "B25000200124"),  # the code's year is the request's
        ("oa", FORM, "update", "200124"),
    ]
    first = writes[0].after
    assert first["title"] == "交通费报销-张伟-2026-03-30"
    assert (first["state"], first["approve_time"], first["oa_request_id"]) == ("approving", None, 200123)
    assert (first["sum_amount"], first["pay_money"]) == (Decimal("123.45"), Decimal("123.45"))
    assert first["lines"] == [
        {"seq": 1, "fee_type": "交通费", "amount": "23.45", "invoice_code": None,
         "invoice_number": "12345678901234567890", "invoice_date": "2026-03-28", "remark": None},
        {"seq": 2, "fee_type": "餐费", "amount": "100.00", "invoice_code": "1100231130",
         "invoice_number": "00012345", "invoice_date": "2026-03-29", "remark": "加班餐"},
    ]  # fmt: skip
    assert writes[2].after["title"] == "FYBX-2026-000124"  # no title read: the request mark
    assert (writes[2].after["state"], writes[2].after["approve_time"]) == (
        "paying",
        datetime(2026, 1, 2, 10, 0, tzinfo=SH),
    )
    assert (writes[1].before, writes[1].after, writes[1].depends_on) == (
        {"bxdh": None},
        {"bxdh": "B26000200123"},
        "expense:flow:B26000200123",
    )


def test_the_claim_code_is_stable_and_apart_from_the_expense_systems_own_numbers() -> None:
    created = datetime(2026, 3, 1, tzinfo=SH)
    assert claim_code("B", 123, created, 2030) == "B26000000123"
    assert claim_code("B", 123, created, 2030) == claim_code("B", 123, created, 2031)
    assert claim_code("OA", 123, None, 2027) == "OA27000000123"


def test_org_creates_what_is_missing_updates_what_differs_and_leaves_expense_only_rows_alone() -> None:
    oa_departments = table(
        """
        | department_code | name   | parent_code | active |
        | HQ-00           | 总部   | -           | true   |
        | FIN-02          | 财务二部 | FIN-01    | true   |
        | FIN-01          | 财务部 | HQ-00       | true   |
        | OLD-01          | 旧部门 | HQ-00       | false  |
        """,
        DEPARTMENT_COLUMNS,
    )
    expense_departments = table(
        """
        | department_code | name   | parent_code | active |
        | HQ-00           | 总部   | -           | true   |
        | EXP-ONLY        | 外包   | -           | true   |
        """,
        DEPARTMENT_COLUMNS,
    )
    oa_employees = table(
        """
        | employee_code | name | department_code | active | status | email          |
        | E1            | 张伟 | FIN-01          | true   | 1      | zw@example.com |
        | E2            | 李娜 | HQ-00           | false  | 5      | -              |
        | E3            | 王芳 | HQ-00           | true   | 0      | wf@example.com |
        | E4            | 刘洋 | HQ-00           | false  | 4      | -              |
        """,
        EMPLOYEE_COLUMNS,
    )
    expense_employees = table(
        """
        | employee_code | name | department_code | active | email          |
        | E1            | 张伟 | HQ-00           | true   | zw@example.com |
        | E2            | 李娜 | HQ-00           | true   | -              |
        | E9            | 外包 | EXP-ONLY        | true   | -              |
        """,
        EMPLOYEE_COLUMNS,
    )
    s = sides(
        oa_departments=oa_departments,
        expense_departments=expense_departments,
        oa_employees=oa_employees,
        expense_employees=expense_employees,
    )
    phones = PlanDetails(oa_phones={"E1": "13812345678", "E3": " 13900000000 "}, expense_phones={"E1": None})
    writes = plan_writes(s, None, SETTINGS, as_of=AS_OF, parts=("org",), details=phones)
    shape = [(w.table, w.operation, w.record_key) for w in writes]
    assert shape == [
        ("department", "insert", "FIN-01"),  # the parent before its child
        ("department", "insert", "FIN-02"),
        ("staff", "insert", "E3"),  # E4 left the company: not created
        ("staff", "update", "E1"),
        ("staff", "update", "E2"),
    ]
    by_key = {w.record_key: w for w in writes}
    assert by_key["FIN-02"].after["parent_code"] == "FIN-01"
    assert by_key["FIN-02"].after["id"].startswith("CSD")
    assert by_key["E3"].after["cellphone"] == "13900000000"
    assert (by_key["E1"].before, by_key["E1"].after) == (
        {"department_code": "HQ-00", "cellphone": None},
        {"department_code": "FIN-01", "cellphone": "13812345678"},
    )
    assert (by_key["E2"].before, by_key["E2"].after) == ({"active": True}, {"active": False})


def test_without_phones_read_cellphone_is_not_compared() -> None:
    employees = table(
        """
        | employee_code | name | department_code | active | status |
        | E1            | 张伟 | HQ-00           | true   | 1      |
        """,
        EMPLOYEE_COLUMNS,
    )
    s = sides(oa_employees=employees, expense_employees=employees.drop(columns=["status"]).assign(status=None))
    assert plan_writes(s, None, SETTINGS, as_of=AS_OF, parts=("org",)) == []


def test_a_claims_plan_needs_the_links() -> None:
    with pytest.raises(ValueError, match="links"):
        plan_writes(sides(), None, SETTINGS, as_of=AS_OF, parts=("claims",))
