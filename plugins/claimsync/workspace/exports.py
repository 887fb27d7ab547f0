"""Downloads of a filtered exception list: CSV (``exceptions.csv``'s stable columns) and XLSX.

The CSV is the same interface as the report's ``exceptions.csv`` (claimsync.report): the
same columns in the same order, amounts as plain decimals, ``first_seen`` ISO 8601 with
offset, UTF-8 without BOM. The XLSX has the same columns with bilingual headers, money as
numbers formatted ``¥#,##0.00``, and a second sheet saying which filter produced it.
Free text is masked (claimsync.masking) and never becomes a formula.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

import xlsxwriter

from claimsync.masking import mask_text
from claimsync.report.csv_out import CSV_COLUMNS
from claimsync.report.labels import bilingual, field_label
from claimsync.workspace.filters import ExceptionFilter
from claimsync.workspace.queries import ExceptionRow

_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_MONEY_COLUMNS: Final = frozenset({"oa_amount", "expense_amount", "amount_impact"})
_WIDTHS: Final = {"code": 22, "detail": 60, "first_seen": 20, "claim_code": 14, "employee_code": 12}


def _plain_money(amount: Decimal | None) -> str:
    return "" if amount is None else f"{amount:.2f}"


def _safe_text(value: str | None) -> str:
    """Text a spreadsheet will not run: a leading formula character is escaped with a quote."""
    text = value or ""
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def csv_values(row: ExceptionRow, tz: ZoneInfo) -> list[str]:
    """One row in CSV_COLUMNS order."""
    return [
        row.code,
        row.severity,
        "" if row.oa_request_id is None else str(row.oa_request_id),
        _safe_text(row.claim_code),
        _safe_text(row.employee_code),
        _plain_money(row.oa_amount),
        _plain_money(row.expense_amount),
        _plain_money(row.amount_impact),
        row.currency,
        row.oa_state or "",
        row.expense_state or "",
        row.first_seen.astimezone(tz).isoformat(timespec="seconds"),
        _safe_text(mask_text(row.detail)),
    ]


def iter_csv(rows: Iterable[ExceptionRow], tz: ZoneInfo, chunk_rows: int = 2000) -> Iterator[bytes]:
    """The CSV as UTF-8 chunks (streamed: memory stays flat however long the list is)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    pending = 1
    for row in rows:
        writer.writerow(csv_values(row, tz))
        pending += 1
        if pending >= chunk_rows:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


def xlsx_bytes(
    rows: Iterable[ExceptionRow],
    tz: ZoneInfo,
    flt: ExceptionFilter,
    *,
    exported_by: str,
    exported_at: datetime,
) -> bytes:
    """The XLSX workbook (constant-memory mode through a temporary file, then read back)."""
    handle, path = tempfile.mkstemp(suffix=".xlsx", prefix="claimsync-export-")
    os.close(handle)
    try:
        workbook = xlsxwriter.Workbook(
            path,
            {
                "constant_memory": True,
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
            },
        )
        header = workbook.add_format({"bold": True, "bg_color": "#DDE4EE", "border": 1, "text_wrap": True})
        money = workbook.add_format({"num_format": "¥#,##0.00"})
        when = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm"})
        sheet = workbook.add_worksheet("差异 Exceptions")
        for col, name in enumerate(CSV_COLUMNS):
            sheet.set_column(col, col, _WIDTHS.get(name, 14))
            sheet.write_string(0, col, field_label(name), header)
        sheet.freeze_panes(1, 0)
        count = 0
        for r, row in enumerate(rows, start=1):
            values = csv_values(row, tz)
            for col, name in enumerate(CSV_COLUMNS):
                amount = getattr(row, name) if name in _MONEY_COLUMNS else None
                if amount is not None:
                    sheet.write_number(r, col, float(amount), money)
                elif name == "first_seen":
                    sheet.write_datetime(r, col, row.first_seen.astimezone(tz).replace(tzinfo=None), when)
                elif name == "oa_request_id" and row.oa_request_id is not None:
                    sheet.write_number(r, col, row.oa_request_id)
                elif values[col]:
                    sheet.write_string(r, col, values[col])
            count = r
        if count:
            sheet.autofilter(0, 0, count, len(CSV_COLUMNS) - 1)
        about = workbook.add_worksheet("筛选 Filter")
        about.set_column(0, 0, 24)
        about.set_column(1, 1, 60)
        facts = [
            (bilingual("导出人", "exported by"), exported_by),
            (bilingual("导出时间", "exported at"), exported_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %z")),
            (bilingual("行数", "rows"), str(count)),
            *((field_label(name), value) for name, value in flt.params().items()),
        ]
        for r, (label, value) in enumerate(facts):
            about.write_string(r, 0, label, header)
            about.write_string(r, 1, value)
        workbook.close()
        with open(path, "rb") as result:
            return result.read()
    finally:
        os.unlink(path)
