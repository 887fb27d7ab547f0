"""``report.html``: one self-contained page (inline CSS and SVG, no script, no external asset)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Final

import jinja2

from claimsync.report.chart import COLOURS, RATE_COLOUR, STACK_ORDER, trend_chart
from claimsync.report.data import AGING_BUCKETS, ExceptionRow, ReportData
from claimsync.report.labels import (
    bilingual,
    code_label,
    field_label,
    severity_label,
    state_label,
    status_label,
)
from claimsync.rules import ExceptionCode

# How many exceptions per code the page lists; the CSV and XLSX always have all of them.
DEFAULT_HTML_LIMIT: Final = 200
_TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
_MONEY_FIELDS: Final = frozenset({"amount", "pay_amount", "lines_total"})
# The fields the side-by-side view shows (the XLSX and the ledger keep the full snapshots).
HTML_SIDE_FIELDS: Final = (
    "request_id",
    "claim_code",
    "employee_code",
    "department_code",
    "amount",
    "currency",
    "state",
    "lines_total",
    "changed_at",
)
_STATE_FIELDS: Final = frozenset({"state"})


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = money
    env.globals.update(
        bilingual=bilingual,
        code_label=code_label,
        field_label=field_label,
        severity_label=severity_label,
        state_label=state_label,
        status_label=status_label,
    )
    return env


def money(amount: Decimal | str | None) -> str:
    """``Decimal('1234.5')`` → ``'1,234.50'``; None → ''."""
    if amount is None or amount == "":
        return ""
    return f"{Decimal(amount):,.2f}"


def side_value(name: str, value: Any) -> str:
    if value is None or value == "":
        return "—"
    if name in _MONEY_FIELDS:
        return money(value)
    if name in _STATE_FIELDS:
        return state_label(str(value))
    if name == "changed_at":
        try:
            return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return str(value)
    return str(value)


def _side_rows(row: ExceptionRow) -> dict[str, Any]:
    """One exception for the template: the fields either side has, each with both values and a diff mark."""
    oa, expense = row.sides()
    differing = row.differing_fields()
    fields = [
        {
            "name": name,
            "oa": side_value(name, oa.get(name)) if oa is not None else None,
            "expense": side_value(name, expense.get(name)) if expense is not None else None,
            "diff": name in differing,
        }
        for name in HTML_SIDE_FIELDS
        if (oa is not None and oa.get(name) is not None) or (expense is not None and expense.get(name) is not None)
    ]
    return {"exception": row, "has_oa": oa is not None, "has_expense": expense is not None, "fields": fields}


def render_report_html(data: ReportData, *, limit: int = DEFAULT_HTML_LIMIT) -> str:
    tz = data.tz

    def local(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return "" if moment is None else moment.astimezone(tz).strftime(fmt)

    sections = []
    for summary in data.by_code:
        rows = data.exceptions_of(summary.code)
        shown = rows[:limit]
        sections.append(
            {
                "code": summary.code,
                "summary": summary,
                "total": len(rows),
                "rows": [_side_rows(row) for row in shown],
                "truncated": len(rows) > len(shown),
            }
        )
    template = _environment().get_template("report.html.j2")
    return template.render(
        data=data,
        header=data.header,
        stats=data.stats,
        sections=sections,
        limit=limit,
        chart=trend_chart(data.trend, data.timezone),
        colours=[(severity_label(s.value), COLOURS[s]) for s in STACK_ORDER],
        rate_colour=RATE_COLOUR,
        side_value=side_value,
        aging_labels=[label for label, _, _ in AGING_BUCKETS],
        all_codes=[c.value for c in ExceptionCode],
        local=local,
        new_total=sum(1 for e in data.exceptions if e.new_in_run),
    )


def write_report_html(data: ReportData, path: Path, *, limit: int = DEFAULT_HTML_LIMIT) -> Path:
    path.write_text(render_report_html(data, limit=limit), encoding="utf-8")
    return path
