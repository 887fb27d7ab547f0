"""Everything a report shows, read from the ledger in the state DB for one run id.

The pipeline and the Airflow UI plugin both render from here, so a report can be
re-rendered at any time and shows what that run saw (claimsync.ledger freezes it).
Money is Decimal; times are tz-aware and shown in the configured zone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from claimsync.errors import ClaimsyncError
from claimsync.ledger import COMPARED_FIELDS
from claimsync.masking import mask_text
from claimsync.report.labels import SEVERITY_ORDER
from claimsync.rules import ClaimState, ExceptionCode

TREND_RUNS: Final = 30
# (label, lowest age in days, highest age in days or None)
AGING_BUCKETS: Final = (("0–7", 0, 7), ("8–30", 8, 30), ("31–60", 31, 60), (">60", 61, None))
_CODE_ORDER: Final = {code.value: i for i, code in enumerate(ExceptionCode)}
# Withdrawn in OA and rejected in expense mean the same thing (claimsync.rules).
_SAME_STATE: Final = {ClaimState.WITHDRAWN.value: ClaimState.REJECTED.value}


class RunNotFound(ClaimsyncError):
    """No reconciliation run with that id in the state DB."""


@dataclass(frozen=True)
class RunHeader:
    run_id: str
    flow: str
    status: str
    triggered_by: str
    config_version: str
    as_of: datetime
    window_start: datetime | None
    window_end: datetime | None
    full_run: bool
    started_at: datetime
    finished_at: datetime | None
    error: str | None


@dataclass(frozen=True)
class RunStats:
    oa_claims: int
    expense_claims: int
    matched: int
    clean_matched: int
    match_rate: Decimal | None
    buckets: int


@dataclass(frozen=True)
class ExceptionRow:
    """One exception as this run saw it, with its ledger identity and status."""

    code: str
    severity: str
    business_key: str
    status: str
    oa_request_id: int | None
    claim_code: str | None
    employee_code: str | None
    department_code: str | None
    oa_amount: Decimal | None
    expense_amount: Decimal | None
    amount_impact: Decimal
    currency: str
    oa_state: str | None
    expense_state: str | None
    detail: str
    first_seen: datetime
    last_seen: datetime
    age_days: int
    new_in_run: bool
    owner: str | None
    note: str | None
    oa_side: Mapping[str, Any] | None
    expense_side: Mapping[str, Any] | None

    def sides(self) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
        """Both sides for the side-by-side view; built from the exception's own columns when
        no snapshot was stored (e.g. a cross-bucket rule)."""
        if self.oa_side is not None or self.expense_side is not None:
            return self.oa_side, self.expense_side
        oa: dict[str, Any] | None = None
        expense: dict[str, Any] | None = None
        if self.oa_request_id is not None or self.oa_amount is not None or self.oa_state:
            oa = {"request_id": self.oa_request_id, "amount": _money_text(self.oa_amount), "state": self.oa_state}
        if self.expense_amount is not None or self.expense_state:
            expense = {
                "claim_code": self.claim_code,
                "amount": _money_text(self.expense_amount),
                "state": self.expense_state,
            }
        return oa, expense

    def differing_fields(self) -> frozenset[str]:
        """The compared fields whose values differ between two existing sides."""
        oa, expense = self.sides()
        if oa is None or expense is None:
            return frozenset()
        differing = set()
        for name in COMPARED_FIELDS:
            if name not in oa or name not in expense:
                continue
            left, right = oa.get(name), expense.get(name)
            if name == "state":
                left, right = _SAME_STATE.get(str(left), left), _SAME_STATE.get(str(right), right)
            if str(left) != str(right):
                differing.add(name)
        return frozenset(differing)


@dataclass(frozen=True)
class CodeSummary:
    code: str
    severity: str
    count: int
    new: int
    amounts: Mapping[str, Decimal]  # currency → total amount impact


@dataclass(frozen=True)
class AgingBucket:
    label: str
    count: int
    amounts: Mapping[str, Decimal]


@dataclass(frozen=True)
class TrendPoint:
    run_id: str
    as_of: datetime
    exception_count: int
    amount_impact: Decimal
    match_rate: Decimal | None
    by_severity: Mapping[str, int]


@dataclass(frozen=True)
class ReportData:
    header: RunHeader
    stats: RunStats | None
    exceptions: Sequence[ExceptionRow]
    by_code: Sequence[CodeSummary]
    aging: Sequence[AgingBucket]
    trend: Sequence[TrendPoint]
    timezone: str = "Asia/Shanghai"
    totals: Mapping[str, Decimal] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, moment: datetime | None) -> datetime | None:
        return None if moment is None else moment.astimezone(self.tz)

    def exceptions_of(self, code: str) -> list[ExceptionRow]:
        return [row for row in self.exceptions if row.code == code]


_RUN_SQL: Final = """
SELECT r.run_id, r.flow, r.status, r.triggered_by, r.config_version, r.as_of, r.window_start, r.window_end,
       r.full_run, r.started_at, r.finished_at, r.error,
       s.oa_claims, s.expense_claims, s.matched, s.clean_matched, s.match_rate, s.buckets,
       s.run_id IS NOT NULL AS has_stats
FROM claimsync.sync_run r LEFT JOIN claimsync.recon_run_stats s ON s.run_id = r.run_id
WHERE r.run_id = :run_id
"""

_EXCEPTIONS_SQL: Final = """
SELECT e.code, COALESCE(x.severity, e.severity) AS severity, e.business_key, e.status,
       e.oa_request_id, e.claim_code, e.employee_code, e.department_code,
       x.oa_amount, x.expense_amount, x.amount_impact, COALESCE(x.currency, e.currency) AS currency,
       x.oa_state, x.expense_state, x.detail, e.first_seen, e.last_seen, e.first_run_id = x.run_id AS new_in_run,
       e.owner, e.note, x.oa_side, x.expense_side
FROM claimsync.recon_run_exception x
JOIN claimsync.recon_exception e ON e.id = x.exception_id
WHERE x.run_id = :run_id
"""

# The run and up to 29 earlier reconciliation runs that did not fail, oldest first.
_TREND_SQL: Final = """
WITH runs AS (
    SELECT s.run_id, s.as_of, s.exception_count, s.amount_impact, s.match_rate
    FROM claimsync.recon_run_stats s JOIN claimsync.sync_run r ON r.run_id = s.run_id
    WHERE (r.status <> 'failed' AND s.as_of <= :as_of) OR s.run_id = :run_id
    ORDER BY s.as_of DESC, s.recorded_at DESC
    LIMIT :limit
)
SELECT runs.run_id, runs.as_of, runs.exception_count, runs.amount_impact, runs.match_rate,
       x.severity, count(x.exception_id) AS n
FROM runs LEFT JOIN claimsync.recon_run_exception x ON x.run_id = runs.run_id
GROUP BY runs.run_id, runs.as_of, runs.exception_count, runs.amount_impact, runs.match_rate, x.severity
ORDER BY runs.as_of, runs.run_id
"""


def load_report_data(state_engine: Engine, run_id: str, *, timezone: str = "Asia/Shanghai") -> ReportData:
    """Read one run's report from the state DB; RunNotFound when the run is unknown."""
    with state_engine.connect() as conn:
        run = conn.execute(sa.text(_RUN_SQL), {"run_id": run_id}).mappings().one_or_none()
        if run is None:
            raise RunNotFound(f"no run {run_id!r} in the state database")
        header = RunHeader(
            run_id=run["run_id"],
            flow=run["flow"],
            status=run["status"],
            triggered_by=run["triggered_by"],
            config_version=run["config_version"],
            as_of=run["as_of"],
            window_start=run["window_start"],
            window_end=run["window_end"],
            full_run=run["full_run"],
            started_at=run["started_at"],
            finished_at=run["finished_at"],
            error=run["error"],
        )
        stats = (
            RunStats(
                oa_claims=run["oa_claims"],
                expense_claims=run["expense_claims"],
                matched=run["matched"],
                clean_matched=run["clean_matched"],
                match_rate=run["match_rate"],
                buckets=run["buckets"],
            )
            if run["has_stats"]
            else None
        )
        rows = conn.execute(sa.text(_EXCEPTIONS_SQL), {"run_id": run_id}).mappings().all()
        trend_rows = conn.execute(
            sa.text(_TREND_SQL), {"run_id": run_id, "as_of": header.as_of, "limit": TREND_RUNS}
        ).mappings()
        trend = _trend(trend_rows)

    exceptions = sorted(
        (_exception_row(row, header.as_of) for row in rows),
        key=lambda e: (
            SEVERITY_ORDER.get(e.severity, 9),
            _CODE_ORDER.get(e.code, 99),
            -e.amount_impact,
            e.business_key,
        ),
    )
    return ReportData(
        header=header,
        stats=stats,
        exceptions=exceptions,
        by_code=_by_code(exceptions),
        aging=_aging(exceptions),
        trend=trend,
        timezone=timezone,
        totals=_sum_by_currency(exceptions),
    )


def _exception_row(row: Mapping[Any, Any], as_of: datetime) -> ExceptionRow:
    first_seen: datetime = row["first_seen"]
    return ExceptionRow(
        code=row["code"],
        severity=row["severity"],
        business_key=row["business_key"],
        status=row["status"],
        oa_request_id=row["oa_request_id"],
        claim_code=row["claim_code"],
        employee_code=row["employee_code"],
        department_code=row["department_code"],
        oa_amount=row["oa_amount"],
        expense_amount=row["expense_amount"],
        amount_impact=row["amount_impact"],
        currency=row["currency"],
        oa_state=row["oa_state"],
        expense_state=row["expense_state"],
        detail=mask_text(row["detail"]) or "",
        first_seen=first_seen,
        last_seen=row["last_seen"],
        age_days=max((as_of - first_seen).days, 0),
        new_in_run=bool(row["new_in_run"]),
        owner=row["owner"],
        note=mask_text(row["note"]),
        oa_side=row["oa_side"],
        expense_side=row["expense_side"],
    )


def _sum_by_currency(rows: Iterable[ExceptionRow]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(lambda: Decimal("0.00"))
    for row in rows:
        totals[row.currency] += row.amount_impact
    return dict(sorted(totals.items()))


def _by_code(exceptions: Sequence[ExceptionRow]) -> list[CodeSummary]:
    groups: dict[str, list[ExceptionRow]] = defaultdict(list)
    for row in exceptions:
        groups[row.code].append(row)
    summaries = [
        CodeSummary(
            code=code,
            severity=rows[0].severity,
            count=len(rows),
            new=sum(1 for r in rows if r.new_in_run),
            amounts=_sum_by_currency(rows),
        )
        for code, rows in groups.items()
    ]
    return sorted(summaries, key=lambda s: (SEVERITY_ORDER.get(s.severity, 9), _CODE_ORDER.get(s.code, 99)))


def aging_label(age_days: int) -> str:
    for label, low, high in AGING_BUCKETS:
        if age_days >= low and (high is None or age_days <= high):
            return label
    return AGING_BUCKETS[0][0]


def _aging(exceptions: Sequence[ExceptionRow]) -> list[AgingBucket]:
    groups: dict[str, list[ExceptionRow]] = {label: [] for label, _, _ in AGING_BUCKETS}
    for row in exceptions:
        groups[aging_label(row.age_days)].append(row)
    return [AgingBucket(label, len(rows), _sum_by_currency(rows)) for label, rows in groups.items()]


def _trend(rows: Iterable[Mapping[Any, Any]]) -> list[TrendPoint]:
    points: dict[str, dict[str, Any]] = {}
    for row in rows:
        point = points.setdefault(
            row["run_id"],
            {
                "run_id": row["run_id"],
                "as_of": row["as_of"],
                "exception_count": int(row["exception_count"]),
                "amount_impact": row["amount_impact"],
                "match_rate": row["match_rate"],
                "by_severity": {},
            },
        )
        if row["severity"] is not None:
            point["by_severity"][row["severity"]] = int(row["n"])
    return [TrendPoint(**point) for point in points.values()]


def _money_text(amount: Decimal | None) -> str | None:
    return None if amount is None else f"{amount:.2f}"
