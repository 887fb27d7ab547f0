"""The report files rendered from the ledger: CSV interface, XLSX sheets, self-contained HTML."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pandas as pd
import pytest
import sqlalchemy as sa

from claimsync.ledger import side_snapshots
from claimsync.report import CSV_COLUMNS, RunNotFound, load_report_data, render_run_report
from claimsync.report.xlsx_out import SUMMARY_SHEET
from claimsync.rules import ExceptionCode
from tests.conftest import Databases
from tests.integration.report_fixtures import exceptions_frame, prepared_state, record_run

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 1, 1, 0, 0, tzinfo=SH)

EXCEPTIONS = """
code                  | oa_request_id | claim_code  | employee_code | oa_amount | expense_amount | oa_state
amount_mismatch       | 1001          | B2026000001 | E000001       | 1200.00   | 1100.00        | approved
paid_without_approval | 1003          | B2026000003 | E000003       | 560.00    | 560.00         | submitted
missing_in_oa         |               | B2026000009 | E000009       |           | 300.00         |
missing_in_expense    | 1002          |             | E000002       | 88.50     |                | approved
"""
EXPENSE_STATES = ["approved", "paid", "paid", None]
DETAILS = [
    "OA 1200.00 vs expense 1100.00",
    "paid while OA still approving, 联系 13812345678",
    "no OA request; payee 6222021234567891234",
    "approved in OA, no claim",
]


def base_frame(table: str = EXCEPTIONS) -> pd.DataFrame:
    frame = exceptions_frame(table)
    frame["expense_state"] = EXPENSE_STATES[: len(frame)]
    frame["detail"] = DETAILS[: len(frame)]
    return frame


@pytest.fixture
def state(databases: Databases) -> Iterator[sa.Engine]:
    engine = prepared_state(databases.engine("state"))
    yield engine
    engine.dispose()


def sides_for(frame: pd.DataFrame) -> pd.DataFrame:
    oa = pd.DataFrame(
        {
            "request_id": [1001, 1002, 1003],
            "claim_code": ["B2026000001", None, "B2026000003"],
            "employee_code": ["E000001", "E000002", "E000003"],
            "amount_cents": [120000, 8850, 56000],
            "currency": ["CNY"] * 3,
            "state": ["approved", "approved", "submitted"],
        }
    )
    expense = pd.DataFrame(
        {
            "claim_code": ["B2026000001", "B2026000003", "B2026000009"],
            "oa_request_id": pd.array([1001, 1003, None], dtype="Int64"),
            "employee_code": ["E000001", "E000003", "E000009"],
            "amount_cents": [110000, 56000, 30000],
            "currency": ["CNY"] * 3,
            "state": ["approved", "paid", "paid"],
        }
    )
    return side_snapshots(frame, oa, expense)


@pytest.fixture
def report_dir(state: sa.Engine, tmp_path: Path) -> Path:
    # The mismatch was first seen 40 days before this run; the rest are new today.
    record_run(state, "r_old", T0 - timedelta(days=40), base_frame().iloc[:1], full=False)
    record_run(state, "r_now", T0, sides_for(base_frame()))
    render_run_report(state, "r_now", tmp_path / "out")
    return tmp_path / "out"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_has_the_stable_columns_in_order_and_plain_values(report_dir: Path) -> None:
    path = report_dir / "exceptions.csv"
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    assert raw.decode("utf-8").splitlines()[0] == (
        "code,severity,oa_request_id,claim_code,employee_code,oa_amount,expense_amount,amount_impact,"
        "currency,oa_state,expense_state,first_seen,detail"
    )
    assert tuple(CSV_COLUMNS) == tuple(raw.decode().splitlines()[0].split(","))
    rows = read_csv(path)
    assert [r["code"] for r in rows] == [
        "missing_in_oa",
        "paid_without_approval",
        "missing_in_expense",
        "amount_mismatch",
    ]  # critical first, then by code order
    mismatch = rows[-1]
    assert (mismatch["oa_amount"], mismatch["expense_amount"], mismatch["amount_impact"]) == (
        "1200.00",
        "1100.00",
        "100.00",
    )
    assert mismatch["first_seen"] == "2025-11-22T00:00:00+08:00"
    assert mismatch["severity"] == "high"
    missing = rows[0]
    assert (missing["oa_request_id"], missing["oa_amount"], missing["expense_amount"]) == ("", "", "300.00")
    assert rows[2]["oa_amount"] == "88.50"


def test_personal_data_is_masked_in_every_output(report_dir: Path) -> None:
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    csv_text = (report_dir / "exceptions.csv").read_text(encoding="utf-8")
    book = openpyxl.load_workbook(report_dir / "report.xlsx")
    xlsx_text = " ".join(str(c.value) for ws in book.worksheets for row in ws.iter_rows() for c in row if c.value)
    for text in (html, csv_text, xlsx_text):
        assert "13812345678" not in text
        assert "6222021234567891234" not in text
        assert "138****5678" in text
        assert "6222 **** **** 1234" in text


def test_xlsx_has_a_summary_and_one_sheet_per_code_with_money_as_numbers(report_dir: Path) -> None:
    book = openpyxl.load_workbook(report_dir / "report.xlsx")
    assert book.sheetnames == [SUMMARY_SHEET, *[c.value for c in ExceptionCode]]
    sheet = book["amount_mismatch"]
    header = [c.value for c in sheet[1]]
    assert header[:3] == ["业务键 / business key", "处理状态 / status", "OA流程号 / oa request id"]
    assert all(" / " in h for h in header)
    row = dict(zip(header, sheet[2], strict=True))
    assert row["OA金额 / oa amount"].value == 1200
    assert row["影响金额 / amount impact"].value == 100
    assert isinstance(row["报销金额 / expense amount"].value, (int, float))
    assert row["报销金额 / expense amount"].number_format == "#,##0.00"
    assert row["账龄（天） / age days"].value == 40
    assert row["OA状态 / oa state"].value == "已审批 / approved"
    assert sheet.max_row == 2
    assert book["duplicate_invoice"].max_row == 1  # header only

    summary = book[SUMMARY_SHEET]
    cells: dict[str, list[object]] = {}
    for r in summary.iter_rows():
        if r[0].value:
            cells.setdefault(str(r[0].value), [c.value for c in r[1:]])
    assert cells["运行编号 / run id"][0] == "r_now"
    assert cells["匹配率 / match rate"][0] == pytest.approx(0.9)
    assert cells["金额不一致 / amount_mismatch"][:5] == ["高 / high", 1, 0, "CNY", 100]
    assert cells["未审批先付款 / paid_without_approval"][:5] == ["严重 / critical", 1, 1, "CNY", 0]
    assert cells["合计 / total"][1] == 4
    assert cells["31–60"][0] == 1
    assert cells["0–7"][0] == 3


def test_html_is_self_contained_and_bilingual(report_dir: Path) -> None:
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    assert "<style>" in html
    assert "<svg" in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"<(?:script|link|img|iframe)\b", html, re.IGNORECASE)
    assert "@import" not in html
    assert "url(" not in html
    assert "对账报告" in html
    assert "Reconciliation report" in html
    for needle in ("r_now", "testcfg", "test", "金额不一致 / amount_mismatch", "90.00%", "31–60", ">60"):
        assert needle in html.replace("&gt;", ">")


def exception_block(html: str, code: str) -> str:
    start = html.index(f'<table class="exceptions" data-code="{code}">')
    return html[start : html.index("</table>\n  ", html.index('class="sides"', start))]


def test_html_puts_both_sides_side_by_side_and_marks_what_differs(report_dir: Path) -> None:
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    mismatch = exception_block(html, "amount_mismatch")
    assert re.search(
        r'<tr class="diff" data-field="amount">\s*<th>金额 / amount</th>\s*<td>1,200.00</td>\s*<td>1,100.00</td>',
        mismatch,
    )
    assert '<tr class="same" data-field="employee_code">' in mismatch
    assert '<tr class="same" data-field="state">' in mismatch
    paid = exception_block(html, "paid_without_approval")
    assert re.search(
        r'<tr class="diff" data-field="state">\s*<th>状态 / state</th>'
        r"\s*<td>审批中 / submitted</td>\s*<td>已支付 / paid</td>",
        paid,
    )
    missing = exception_block(html, "missing_in_oa")
    assert "无 / none" in missing  # no OA side
    assert 'class="diff"' not in missing


def test_html_lists_the_first_n_per_code_and_says_so(state: sa.Engine, tmp_path: Path) -> None:
    rows = "\n".join(f"missing_in_expense | {2000 + i} | | {i}.00" for i in range(1, 8))
    record_run(state, "big", T0, exceptions_frame(f"code | oa_request_id | claim_code | oa_amount\n{rows}"))
    files = render_run_report(state, "big", tmp_path, html_limit=5)
    html = files.html.read_text(encoding="utf-8")
    assert html.count('<tr class="exception">') == 5
    assert "仅列出前 5 条，共 7 条" in html
    assert "Showing the first 5 of 7" in html
    assert len(read_csv(files.csv)) == 7
    assert openpyxl.load_workbook(files.xlsx)["missing_in_expense"].max_row == 8


def test_the_trend_covers_the_last_30_runs(state: sa.Engine, tmp_path: Path) -> None:
    frame = base_frame()
    for day in range(32):
        record_run(state, f"day{day:02d}", T0 + timedelta(days=day), frame.iloc[: 1 + day % 4])
    data = load_report_data(state, "day31")
    assert [p.run_id for p in data.trend] == [f"day{d:02d}" for d in range(2, 32)]
    assert [p.exception_count for p in data.trend[-4:]] == [1, 2, 3, 4]
    assert data.trend[-1].by_severity == {"critical": 2, "high": 2}
    html = render_run_report(state, "day31", tmp_path).html.read_text(encoding="utf-8")
    assert html.count('<g class="bar">') == 30
    # An older run's trend stops at that run.
    assert load_report_data(state, "day05").trend[-1].run_id == "day05"


def test_an_old_run_renders_as_it_was(state: sa.Engine, tmp_path: Path) -> None:
    record_run(state, "first", T0, base_frame())
    changed = base_frame(EXCEPTIONS.replace("1100.00", "900.00"))
    record_run(state, "second", T0 + timedelta(days=1), changed)
    first = read_csv(render_run_report(state, "first", tmp_path / "a").csv)
    second = read_csv(render_run_report(state, "second", tmp_path / "b").csv)
    assert {r["expense_amount"] for r in first if r["code"] == "amount_mismatch"} == {"1100.00"}
    assert {r["expense_amount"] for r in second if r["code"] == "amount_mismatch"} == {"900.00"}


def test_a_run_with_no_exceptions_renders(state: sa.Engine, tmp_path: Path) -> None:
    record_run(state, "clean", T0, base_frame().iloc[0:0])
    files = render_run_report(state, "clean", tmp_path)
    assert files.csv.read_text(encoding="utf-8").count("\n") == 1
    assert "本次未发现异常" in files.html.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exceptions.csv", "report.html", "report.xlsx"]


def test_an_unknown_run_is_one_clear_error(state: sa.Engine, tmp_path: Path) -> None:
    with pytest.raises(RunNotFound, match="no run 'nope' in the state database"):
        render_run_report(state, "nope", tmp_path)


def test_amount_totals_are_exact(state: sa.Engine) -> None:
    rows = "\n".join(f"missing_in_oa | | B{i:010d} | 0.10" for i in range(30))
    record_run(state, "cents", T0, exceptions_frame(f"code | oa_request_id | claim_code | expense_amount\n{rows}"))
    data = load_report_data(state, "cents")
    assert data.totals == {"CNY": Decimal("3.00")}
