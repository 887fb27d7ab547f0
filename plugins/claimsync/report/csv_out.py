"""``exceptions.csv``: every exception of a run, in the stable column order of DESIGN.md."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Final

from claimsync.report.data import ReportData

# A stable interface: users' scripts read these columns in this order.
CSV_COLUMNS: Final = (
    "code",
    "severity",
    "oa_request_id",
    "claim_code",
    "employee_code",
    "oa_amount",
    "expense_amount",
    "amount_impact",
    "currency",
    "oa_state",
    "expense_state",
    "first_seen",
    "detail",
)


def _money(amount: Decimal | None) -> str:
    return "" if amount is None else f"{amount:.2f}"


def csv_rows(data: ReportData) -> list[Sequence[str]]:
    """The CSV body: amounts as plain decimals (1200.00), first_seen ISO 8601 with offset."""
    rows: list[Sequence[str]] = []
    for row in data.exceptions:
        first_seen = data.local(row.first_seen)
        rows.append(
            (
                row.code,
                row.severity,
                "" if row.oa_request_id is None else str(row.oa_request_id),
                row.claim_code or "",
                row.employee_code or "",
                _money(row.oa_amount),
                _money(row.expense_amount),
                _money(row.amount_impact),
                row.currency,
                row.oa_state or "",
                row.expense_state or "",
                first_seen.isoformat(timespec="seconds") if first_seen else "",
                row.detail,
            )
        )
    return rows


def write_exceptions_csv(data: ReportData, path: Path) -> Path:
    """Write ``exceptions.csv`` (UTF-8, no BOM, RFC 4180 quoting)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_rows(data))
    return path
