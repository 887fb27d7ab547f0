"""``report.xlsx``: a summary sheet and one sheet per exception code, bilingual headers.

Money cells are numbers with a money format, so finance can sum and filter them. (An
XLSX number is a binary double by definition; the value written is the exact decimal's
nearest double and displays as the exact amount with two decimals.)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import xlsxwriter

from claimsync.report.data import ReportData
from claimsync.report.labels import bilingual, code_label, field_label, severity_label, state_label, status_label
from claimsync.rules import ExceptionCode

SUMMARY_SHEET: Final = "汇总 Summary"
CODE_SHEET_COLUMNS: Final = (
    "business_key",
    "status",
    "oa_request_id",
    "claim_code",
    "employee_code",
    "department_code",
    "oa_amount",
    "expense_amount",
    "amount_impact",
    "currency",
    "oa_state",
    "expense_state",
    "first_seen",
    "age_days",
    "detail",
    "owner",
    "note",
)
_MONEY_COLUMNS: Final = frozenset({"oa_amount", "expense_amount", "amount_impact"})
_WIDTHS: Final = {"business_key": 22, "detail": 60, "first_seen": 18, "note": 30, "status": 20}


def _naive_local(data: ReportData, moment: datetime | None) -> datetime | None:
    local = data.local(moment)
    return None if local is None else local.replace(tzinfo=None)


def write_report_xlsx(data: ReportData, path: Path) -> Path:
    workbook = xlsxwriter.Workbook(
        str(path),
        # Cell text is data, never a formula or a link (a detail starting with '=' stays text).
        {
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            # Rows go straight to disk (every sheet is written top to bottom): flat memory at 100k+ rows.
            "constant_memory": True,
        },
    )
    formats = {
        "title": workbook.add_format({"bold": True, "font_size": 14}),
        "header": workbook.add_format({"bold": True, "bg_color": "#DDE4EE", "border": 1, "text_wrap": True}),
        "label": workbook.add_format({"bold": True}),
        "money": workbook.add_format({"num_format": "#,##0.00"}),
        "percent": workbook.add_format({"num_format": "0.00%"}),
        "time": workbook.add_format({"num_format": "yyyy-mm-dd hh:mm"}),
        "int": workbook.add_format({"num_format": "0"}),
    }
    try:
        _summary_sheet(workbook, data, formats)
        for code in ExceptionCode:
            _code_sheet(workbook, data, code.value, formats)
    finally:
        workbook.close()
    return path


def _summary_sheet(workbook: Any, data: ReportData, formats: Mapping[str, Any]) -> None:
    sheet = workbook.add_worksheet(SUMMARY_SHEET)
    sheet.set_column(0, 0, 28)
    sheet.set_column(1, 6, 18)
    header = data.header
    sheet.write_string(0, 0, bilingual("对账报告", "Reconciliation report"), formats["title"])
    window = ""
    if header.window_start is not None and header.window_end is not None:
        start, end = data.local(header.window_start), data.local(header.window_end)
        if start is not None and end is not None:
            window = f"{start.isoformat(timespec='seconds')} – {end.isoformat(timespec='seconds')}"
    as_of = data.local(header.as_of)
    facts: list[tuple[str, str]] = [
        (bilingual("运行编号", "run id"), header.run_id),
        (bilingual("对账时点", "as of"), as_of.isoformat(timespec="seconds") if as_of else ""),
        (bilingual("窗口", "window"), window),
        (bilingual("配置版本", "config version"), header.config_version),
        (bilingual("触发者", "triggered by"), header.triggered_by),
        (bilingual("运行状态", "run status"), header.status),
        (bilingual("全量对账", "full run"), bilingual("是", "yes") if header.full_run else bilingual("否", "no")),
    ]
    row = 2
    for label, value in facts:
        sheet.write_string(row, 0, label, formats["label"])
        sheet.write_string(row, 1, value)
        row += 1

    row += 1
    if data.stats is not None:
        stats = data.stats
        for label, number in (
            (bilingual("OA单据数", "OA claims"), stats.oa_claims),
            (bilingual("报销单据数", "expense claims"), stats.expense_claims),
            (bilingual("已匹配", "matched"), stats.matched),
            (bilingual("完全一致", "clean matched"), stats.clean_matched),
        ):
            sheet.write_string(row, 0, label, formats["label"])
            sheet.write_number(row, 1, number, formats["int"])
            row += 1
        sheet.write_string(row, 0, bilingual("匹配率", "match rate"), formats["label"])
        if stats.match_rate is not None:
            sheet.write_number(row, 1, float(stats.match_rate), formats["percent"])
        row += 2

    heads = [
        field_label("code"),
        field_label("severity"),
        bilingual("数量", "count"),
        bilingual("新增", "new"),
        field_label("currency"),
        field_label("amount_impact"),
    ]
    sheet.write_row(row, 0, heads, formats["header"])
    row += 1
    by_code = {s.code: s for s in data.by_code}
    for code in ExceptionCode:
        summary = by_code.get(code.value)
        amounts: Mapping[str, Decimal] = summary.amounts if summary else {"CNY": Decimal("0.00")}
        for currency, amount in amounts.items():
            sheet.write_string(row, 0, code_label(code.value))
            sheet.write_string(row, 1, severity_label(code.severity.value))
            sheet.write_number(row, 2, summary.count if summary else 0, formats["int"])
            sheet.write_number(row, 3, summary.new if summary else 0, formats["int"])
            sheet.write_string(row, 4, currency)
            sheet.write_number(row, 5, float(amount), formats["money"])
            row += 1
    for currency, amount in data.totals.items():
        sheet.write_string(row, 0, bilingual("合计", "total"), formats["label"])
        sheet.write_number(row, 2, len(data.exceptions), formats["int"])
        sheet.write_string(row, 4, currency)
        sheet.write_number(row, 5, float(amount), formats["money"])
        row += 1

    row += 1
    sheet.write_row(
        row,
        0,
        [
            bilingual("账龄（天）", "age (days)"),
            bilingual("数量", "count"),
            field_label("currency"),
            field_label("amount_impact"),
        ],
        formats["header"],
    )
    row += 1
    for bucket in data.aging:
        for currency, amount in (bucket.amounts or {"CNY": Decimal("0.00")}).items():
            sheet.write_string(row, 0, bucket.label)
            sheet.write_number(row, 1, bucket.count, formats["int"])
            sheet.write_string(row, 2, currency)
            sheet.write_number(row, 3, float(amount), formats["money"])
            row += 1

    row += 1
    sheet.write_string(row, 0, bilingual("近30次运行趋势", "trend over the last 30 runs"), formats["label"])
    row += 1
    sheet.write_row(
        row,
        0,
        [
            bilingual("运行编号", "run id"),
            bilingual("对账时点", "as of"),
            bilingual("异常数", "exceptions"),
            field_label("amount_impact"),
            bilingual("匹配率", "match rate"),
        ],
        formats["header"],
    )
    first_trend_row = row + 1
    for point in data.trend:
        row += 1
        sheet.write_string(row, 0, point.run_id)
        sheet.write_datetime(row, 1, _naive_local(data, point.as_of), formats["time"])
        sheet.write_number(row, 2, point.exception_count, formats["int"])
        sheet.write_number(row, 3, float(point.amount_impact), formats["money"])
        if point.match_rate is not None:
            sheet.write_number(row, 4, float(point.match_rate), formats["percent"])
    if data.trend:
        chart = workbook.add_chart({"type": "column"})
        chart.add_series(
            {
                "name": bilingual("异常数", "exceptions"),
                "categories": [SUMMARY_SHEET, first_trend_row, 1, row, 1],
                "values": [SUMMARY_SHEET, first_trend_row, 2, row, 2],
            }
        )
        chart.set_title({"name": bilingual("异常趋势", "exception trend")})
        chart.set_legend({"none": True})
        sheet.insert_chart(2, 8, chart)


def _code_sheet(workbook: Any, data: ReportData, code: str, formats: Mapping[str, Any]) -> None:
    sheet = workbook.add_worksheet(code)
    sheet.write_row(0, 0, [field_label(c) for c in CODE_SHEET_COLUMNS], formats["header"])
    for col, name in enumerate(CODE_SHEET_COLUMNS):
        sheet.set_column(col, col, _WIDTHS.get(name, 14))
    sheet.freeze_panes(1, 1)
    rows = data.exceptions_of(code)
    for r, exc in enumerate(rows, start=1):
        values: dict[str, Any] = {
            "business_key": exc.business_key,
            "status": status_label(exc.status),
            "oa_request_id": exc.oa_request_id,
            "claim_code": exc.claim_code,
            "employee_code": exc.employee_code,
            "department_code": exc.department_code,
            "oa_amount": exc.oa_amount,
            "expense_amount": exc.expense_amount,
            "amount_impact": exc.amount_impact,
            "currency": exc.currency,
            "oa_state": state_label(exc.oa_state),
            "expense_state": state_label(exc.expense_state),
            "first_seen": _naive_local(data, exc.first_seen),
            "age_days": exc.age_days,
            "detail": exc.detail,
            "owner": exc.owner,
            "note": exc.note,
        }
        for col, name in enumerate(CODE_SHEET_COLUMNS):
            value = values[name]
            if value is None or value == "":
                continue
            if name in _MONEY_COLUMNS:
                sheet.write_number(r, col, float(value), formats["money"])
            elif isinstance(value, datetime):
                sheet.write_datetime(r, col, value, formats["time"])
            elif isinstance(value, int):
                sheet.write_number(r, col, value, formats["int"])
            else:
                sheet.write_string(r, col, str(value))
    if rows:
        sheet.autofilter(0, 0, len(rows), len(CODE_SHEET_COLUMNS) - 1)
