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
import re
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

import xlsxwriter

from claimsync.masking import mask_text
from claimsync.report.csv_out import CSV_COLUMNS
from claimsync.report.labels import bilingual, field_label
from claimsync.workspace.filters import ExceptionFilter

_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_WIDTHS: Final = {"code": 22, "detail": 60, "first_seen": 20, "claim_code": 14, "employee_code": 12}


def _safe_text(value: str | None) -> str:
    """Text a spreadsheet will not run: a leading formula character is escaped with a quote."""
    text = value or ""
    return f"'{text}" if text.startswith(_FORMULA_START) else text


# Every personal number claimsync.masking masks (phone, ID, bank account) has 11+ digits in a row.
_LONG_DIGITS: Final = re.compile(r"[0-9]{11}")
_TEXT_COLUMNS: Final = (3, 4)  # claim_code, employee_code
_DETAIL: Final = CSV_COLUMNS.index("detail")


def export_values(row: tuple[str, ...]) -> list[str]:
    """One row of claimsync.workspace.queries.iter_export_rows, made safe to open: masked, no formulas."""
    values = list(row)
    for i in _TEXT_COLUMNS:
        values[i] = _safe_text(values[i])
    detail = values[_DETAIL] or ""
    if _LONG_DIGITS.search(detail):
        detail = mask_text(detail) or ""
    values[_DETAIL] = _safe_text(detail)
    return values


def iter_csv(rows: Iterable[tuple[str, ...]], chunk_rows: int = 5000) -> Iterator[bytes]:
    """The CSV as UTF-8 chunks (streamed: memory stays flat however long the list is)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    batch: list[list[str]] = []
    for row in rows:
        batch.append(export_values(row))
        if len(batch) >= chunk_rows:
            writer.writerows(batch)
            batch.clear()
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    writer.writerows(batch)
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


_EXCEL_EPOCH: Final = datetime(1899, 12, 30)
_MONEY_INDEXES: Final = frozenset(CSV_COLUMNS.index(c) for c in ("oa_amount", "expense_amount", "amount_impact"))
_REQUEST_ID: Final = CSV_COLUMNS.index("oa_request_id")
_FIRST_SEEN: Final = CSV_COLUMNS.index("first_seen")


def _excel_time(iso: str) -> float:
    """'2026-03-01T09:00:00+08:00' → Excel's serial day number of that local wall time."""
    local = datetime.fromisoformat(iso).replace(tzinfo=None)
    return (local - _EXCEL_EPOCH).total_seconds() / 86400


def xlsx_bytes(
    rows: Iterable[tuple[str, ...]],
    tz: ZoneInfo,
    flt: ExceptionFilter,
    *,
    exported_by: str,
    exported_at: datetime,
) -> bytes:
    """The XLSX workbook of export rows (constant-memory mode through a temporary file, then read back)."""
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
        write_number, write_string = sheet.write_number, sheet.write_string
        count = 0
        for r, row in enumerate(rows, start=1):
            values = export_values(row)
            for col, value in enumerate(values):
                if not value:
                    continue
                if col in _MONEY_INDEXES:
                    write_number(r, col, float(value), money)
                elif col == _FIRST_SEEN:
                    write_number(r, col, _excel_time(value), when)
                elif col == _REQUEST_ID:
                    write_number(r, col, int(value))
                else:
                    write_string(r, col, value)
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
