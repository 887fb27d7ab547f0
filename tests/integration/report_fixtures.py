"""Hand-built reconciliation results for the ledger, report and CLI tests.

Exceptions are written as small pipe tables a finance person can read; amounts are
decimals in the table and integer cents in the frame, as claimsync.model prescribes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa

from claimsync.migrations import migrate
from claimsync.model import EXCEPTION_COLUMNS, decimal_to_cents
from claimsync.rules import ExceptionCode
from claimsync.runs import RunInfo, begin_run, finish_run

_INT_COLUMNS = ("oa_request_id", "oa_amount_cents", "expense_amount_cents", "amount_impact_cents")


def exceptions_frame(table: str) -> pd.DataFrame:
    """A pipe table with any of: code, business_key, oa_request_id, claim_code, employee_code,
    department_code, oa_amount, expense_amount, amount_impact, currency, oa_state,
    expense_state, detail. Missing columns are derived (severity from the code, the key from
    the request id or claim code, the impact from the amounts)."""
    lines = [line.strip() for line in table.strip().splitlines() if line.strip()]
    header = [h.strip() for h in lines[0].split("|")]
    rows: list[dict[str, Any]] = []
    for line in lines[1:]:
        values = [v.strip() for v in line.split("|")]
        given = {h: (v if v != "" else None) for h, v in zip(header, values, strict=True)}
        rows.append(_exception_row(given))
    frame = pd.DataFrame(rows, columns=list(EXCEPTION_COLUMNS))
    for column in _INT_COLUMNS:
        frame[column] = frame[column].astype("Int64")
    return frame


def _cents(value: str | None) -> int | None:
    return None if value is None else decimal_to_cents(Decimal(value))


def _exception_row(given: dict[str, str | None]) -> dict[str, Any]:
    code = ExceptionCode(given["code"])
    request_id = int(given["oa_request_id"]) if given.get("oa_request_id") else None
    claim_code = given.get("claim_code")
    oa_cents, exp_cents = _cents(given.get("oa_amount")), _cents(given.get("expense_amount"))
    if given.get("amount_impact") is not None:
        impact = _cents(given["amount_impact"])
    elif oa_cents is not None and exp_cents is not None:
        impact = abs(oa_cents - exp_cents)
    else:
        impact = oa_cents if oa_cents is not None else (exp_cents or 0)
    key = given.get("business_key") or (f"oa:{request_id}" if request_id is not None else f"exp:{claim_code}")
    return {
        "code": code.value,
        "severity": code.severity.value,
        "business_key": key,
        "oa_request_id": request_id,
        "claim_code": claim_code,
        "employee_code": given.get("employee_code"),
        "department_code": given.get("department_code"),
        "oa_amount_cents": oa_cents,
        "expense_amount_cents": exp_cents,
        "amount_impact_cents": impact,
        "currency": given.get("currency") or "CNY",
        "oa_state": given.get("oa_state"),
        "expense_state": given.get("expense_state"),
        "detail": given.get("detail") or f"{code.value} on {key}",
    }


@dataclass
class FakeResult:
    """The shape of claimsync.reconcile.ReconResult that the ledger and report read."""

    exceptions: pd.DataFrame
    as_of: datetime | None = None
    oa_claims: int = 100
    expense_claims: int = 100
    matched: int = 95
    clean_matched: int = 90
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def match_rate(self) -> float | None:
        population = max(self.oa_claims, self.expense_claims)
        return self.clean_matched / population if population else None


def run_info(run_id: str, as_of: datetime, *, full: bool = True, triggered_by: str = "test") -> RunInfo:
    return RunInfo(
        run_id=run_id,
        flow="reconcile",
        as_of=as_of,
        triggered_by=triggered_by,
        config_version="testcfg",
        window_start=as_of - timedelta(days=1),
        window_end=as_of,
        full_run=full,
    )


def prepared_state(engine: sa.Engine) -> sa.Engine:
    migrate(engine)
    return engine


def record_run(engine: sa.Engine, run_id: str, as_of: datetime, frame: pd.DataFrame, *, full: bool = True) -> Any:
    """begin_run → record_reconciliation → finish_run, as the pipeline does."""
    from claimsync.ledger import record_reconciliation

    info = run_info(run_id, as_of, full=full)
    begin_run(engine, info)
    summary = record_reconciliation(engine, info, FakeResult(frame, as_of=as_of), full=full)
    finish_run(engine, run_id, "succeeded", summary.to_dict())
    return summary
