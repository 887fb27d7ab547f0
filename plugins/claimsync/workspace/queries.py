"""Everything the workspace reads from the state schema. All SQL here; values are bound.

Figures per run (counts and amounts by code, severity, department, age) come from
``claimsync.workspace_run_rollup``: what a finished run saw never changes, so it is
aggregated once (:func:`ensure_rollups`) rather than on every page view. A run still
running is aggregated live and not stored. Statuses (open, acknowledged…) change as
finance works, so they are always read live.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from claimsync.workspace.errors import NotFound
from claimsync.workspace.filters import AGE_BUCKETS, Cursor, ExceptionFilter, age_bounds

REQUIRED_MIGRATIONS: Final = frozenset({1, 10, 40, 41})
TREND_RUNS: Final = 30
SEVERITY_ORDER: Final = ("critical", "high", "medium", "info")
# pg_advisory_xact_lock key serialising rollup computation ("claimsync workspace rollup").
_ROLLUP_LOCK: Final = 0x636C77726F6C

_AGE_CASE: Final = """CASE
    WHEN e.first_seen > s.as_of - interval '8 days' THEN 0
    WHEN e.first_seen > s.as_of - interval '31 days' THEN 1
    WHEN e.first_seen > s.as_of - interval '61 days' THEN 2
    ELSE 3 END"""

_ROLLUP_SELECT: Final = f"""
SELECT r.run_id, e.code, max(COALESCE(r.severity, e.severity)) AS severity,
       COALESCE(e.department_code, '') AS department_code, {_AGE_CASE} AS age_bucket,
       COALESCE(r.currency, e.currency) AS currency,
       count(*) AS exceptions, COALESCE(sum(r.amount_impact), 0) AS amount_impact
FROM claimsync.recon_run_exception r
JOIN claimsync.recon_exception e ON e.id = r.exception_id
JOIN claimsync.sync_run s ON s.run_id = r.run_id
WHERE r.run_id = :run_id
GROUP BY r.run_id, e.code, COALESCE(e.department_code, ''), {_AGE_CASE}, COALESCE(r.currency, e.currency)
"""

_STALE_ROLLUPS: Final = """
SELECT s.run_id, s.finished_at FROM claimsync.sync_run s
LEFT JOIN claimsync.workspace_run_rollup_state w ON w.run_id = s.run_id
WHERE s.run_id = ANY(:run_ids) AND s.status <> 'running' AND s.finished_at IS NOT NULL
  AND (w.run_id IS NULL OR w.finished_at IS DISTINCT FROM s.finished_at)
"""

_RUN_COLUMNS: Final = """
s.run_id, s.status, s.window_start, s.window_end, s.as_of, s.full_run, s.started_at, s.finished_at,
s.triggered_by, s.config_version, s.error, st.match_rate, st.oa_claims, st.expense_claims, st.matched,
st.clean_matched, st.exception_count, st.amount_impact
"""


@dataclass
class Signoff:
    role: str
    signed_by: str
    signed_at: datetime
    note: str | None


@dataclass
class Figure:
    """A count of exceptions and their amount impact, per currency (amounts are never summed across)."""

    key: str
    count: int
    amounts: dict[str, Decimal]
    severity: str | None = None

    def add(self, count: int, amounts: dict[str, Decimal]) -> None:
        self.count += count
        for currency, amount in amounts.items():
            self.amounts[currency] = self.amounts.get(currency, Decimal(0)) + amount

    @property
    def weight(self) -> Decimal:
        """For ordering only: the amounts added regardless of currency."""
        return sum(self.amounts.values(), Decimal(0))


@dataclass
class RunRow:
    """One reconciliation run with its figures (per severity: count and amount impact)."""

    run_id: str
    status: str
    window_start: datetime | None
    window_end: datetime | None
    as_of: datetime
    full_run: bool
    started_at: datetime
    finished_at: datetime | None
    triggered_by: str
    config_version: str
    error: str | None
    match_rate: Decimal | None
    oa_claims: int | None
    expense_claims: int | None
    matched: int | None
    clean_matched: int | None
    exception_count: int | None
    amount_impact: Decimal | None
    by_severity: dict[str, Figure] = field(default_factory=dict)
    signoffs: dict[str, Signoff] = field(default_factory=dict)

    @property
    def total(self) -> Figure:
        total = Figure("total", 0, {})
        for figure in self.by_severity.values():
            total.add(figure.count, figure.amounts)
        return total


@dataclass
class RunsPage:
    runs: list[RunRow]
    next_cursor: str | None


@dataclass
class RunDetail:
    run: RunRow
    by_code: list[Figure]
    aging: list[Figure]  # AGE_BUCKETS order
    by_department: list[Figure]
    by_status: list[Figure]
    trend: list[RunRow]  # oldest first, this run last


@dataclass
class ExceptionRow:
    id: int
    code: str
    severity: str
    status: str
    owner: str | None
    business_key: str
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
    first_seen: datetime
    last_seen: datetime
    detail: str


@dataclass
class ExceptionPage:
    rows: list[ExceptionRow]
    total: int
    next_cursor: str | None
    reference: datetime  # ages are measured to this time (the run's as_of, or now)


@dataclass
class ExceptionEvent:
    action: str
    from_status: str | None
    to_status: str | None
    actor: str
    note: str | None
    at: datetime
    run_id: str | None
    owner: str | None


@dataclass
class ExceptionDetail:
    row: ExceptionRow
    oa_side: dict[str, Any] | None
    expense_side: dict[str, Any] | None
    first_run_id: str
    last_run_id: str
    resolved_at: datetime | None
    note: str | None
    events: list[ExceptionEvent]
    runs_seen: int


def missing_migrations(conn: Connection) -> set[int]:
    """The migrations the workspace needs that the state DB lacks (empty when ready)."""
    exists = conn.execute(sa.text("SELECT to_regclass('claimsync.schema_migration')")).scalar()
    if exists is None:
        return set(REQUIRED_MIGRATIONS)
    applied = set(conn.execute(sa.text("SELECT version FROM claimsync.schema_migration")).scalars())
    return set(REQUIRED_MIGRATIONS) - applied


# --- per-run figures ---------------------------------------------------------------------


def ensure_rollups(conn: Connection, run_ids: Sequence[str]) -> None:
    """Aggregate the finished runs among ``run_ids`` whose rollup is missing or stale; commits."""
    if not run_ids:
        return
    stale = conn.execute(sa.text(_STALE_ROLLUPS), {"run_ids": list(run_ids)}).all()
    if not stale:
        conn.rollback()
        return
    ids = [row.run_id for row in stale]
    conn.rollback()
    with conn.begin():
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ROLLUP_LOCK})
        # Another request may have done it while this one waited for the lock.
        stale = conn.execute(sa.text(_STALE_ROLLUPS), {"run_ids": ids}).all()
        ids = [row.run_id for row in stale]
        if not ids:
            return
        # Grouping ~70k joined rows per run: keep the sort/hash in memory, not in temp files.
        conn.execute(sa.text("SELECT set_config('work_mem', '32MB', true)"))
        conn.execute(sa.text("DELETE FROM claimsync.workspace_run_rollup WHERE run_id = ANY(:ids)"), {"ids": ids})
        insert = sa.text(
            "INSERT INTO claimsync.workspace_run_rollup"
            " (run_id, code, severity, department_code, age_bucket, currency, exceptions, amount_impact)"
            + _ROLLUP_SELECT
        )
        for run_id in ids:  # one run per statement: an equality on run_id plans the index scan, ANY(…) may not
            conn.execute(insert, {"run_id": run_id})
        conn.execute(
            sa.text(
                "INSERT INTO claimsync.workspace_run_rollup_state (run_id, finished_at)"
                " SELECT run_id, finished_at FROM claimsync.sync_run WHERE run_id = ANY(:ids)"
                " ON CONFLICT (run_id) DO UPDATE SET finished_at = EXCLUDED.finished_at, computed_at = now()"
            ),
            {"ids": ids},
        )


def precompute_run(state_engine: Engine, run_id: str) -> None:
    """Aggregate a finished run's workspace figures now, so the first page view after it is warm.

    Optional: the pages compute a missing rollup themselves. A DAG's report step may call this
    after the run is finished (``from claimsync.workspace.queries import precompute_run``; no
    web framework is imported).
    """
    with state_engine.connect() as conn:
        ensure_rollups(conn, [run_id])


def _rollup_source(conn: Connection, runs: Sequence[RunRow]) -> str:
    """SQL yielding rollup rows for ``:run_ids`` (stored for finished runs, live for running ones).

    Running runs are passed as ``:live_ids``; a page shows at most a few of them.
    """
    ensure_rollups(conn, [r.run_id for r in runs if r.status != "running"])
    stored = (
        "SELECT run_id, code, severity, department_code, age_bucket, currency, exceptions, amount_impact"
        " FROM claimsync.workspace_run_rollup WHERE run_id = ANY(:run_ids)"
    )
    if not any(r.status == "running" for r in runs):
        return stored
    live = _ROLLUP_SELECT.replace("r.run_id = :run_id", "r.run_id = ANY(:live_ids)")
    return f"{stored} UNION ALL SELECT * FROM ({live}) live"


def _run_row(row: Any) -> RunRow:
    return RunRow(
        run_id=row.run_id,
        status=row.status,
        window_start=row.window_start,
        window_end=row.window_end,
        as_of=row.as_of,
        full_run=bool(row.full_run),
        started_at=row.started_at,
        finished_at=row.finished_at,
        triggered_by=row.triggered_by,
        config_version=row.config_version,
        error=row.error,
        match_rate=row.match_rate,
        oa_claims=row.oa_claims,
        expense_claims=row.expense_claims,
        matched=row.matched,
        clean_matched=row.clean_matched,
        exception_count=row.exception_count,
        amount_impact=row.amount_impact,
    )


def _figures(conn: Connection, source: str, params: dict[str, Any], key: str) -> list[Figure]:
    """Rollup rows grouped by ``key`` (a fixed column name), one Figure per key, amounts per currency."""
    figures: dict[str, Figure] = {}
    rows = conn.execute(
        sa.text(
            f"SELECT {key} AS key, max(severity) AS severity, currency, sum(exceptions) AS n,"
            f" sum(amount_impact) AS amount FROM ({source}) f GROUP BY {key}, currency"
        ),
        params,
    )
    for row in rows:
        figure = figures.setdefault(str(row.key), Figure(str(row.key), 0, {}, row.severity))
        figure.add(int(row.n), {row.currency: Decimal(row.amount)})
    return list(figures.values())


def _attach_figures(conn: Connection, runs: list[RunRow]) -> None:
    """Fill ``by_severity`` and ``signoffs`` of ``runs`` (two statements for the whole list)."""
    if not runs:
        return
    ids = [r.run_id for r in runs]
    by_id = {r.run_id: r for r in runs}
    source = _rollup_source(conn, runs)
    live = [r.run_id for r in runs if r.status == "running"]
    rows = conn.execute(
        sa.text(
            "SELECT run_id, severity, currency, sum(exceptions) AS n, sum(amount_impact) AS amount"
            f" FROM ({source}) f GROUP BY run_id, severity, currency"
        ),
        {"run_ids": ids, "live_ids": live},
    )
    for row in rows:
        run = by_id[row.run_id]
        figure = run.by_severity.setdefault(row.severity, Figure(row.severity, 0, {}, row.severity))
        figure.add(int(row.n), {row.currency: Decimal(row.amount)})
    signoff_rows = conn.execute(
        sa.text("SELECT run_id, role, signed_by, signed_at, note FROM claimsync.signoff WHERE run_id = ANY(:ids)"),
        {"ids": ids},
    )
    for row in signoff_rows:
        by_id[row.run_id].signoffs[row.role] = Signoff(row.role, row.signed_by, row.signed_at, row.note)


_RUNS_FROM: Final = (
    f"SELECT {_RUN_COLUMNS} FROM claimsync.sync_run s LEFT JOIN claimsync.recon_run_stats st ON st.run_id = s.run_id"
)


def list_runs(conn: Connection, limit: int = 30, after: str | None = None) -> RunsPage:
    """Reconciliation runs, latest as-of first; ``after`` is the previous page's last run id."""
    where = "s.flow = 'reconcile'"
    params: dict[str, Any] = {"limit": limit + 1}
    if after is not None:
        anchor = conn.execute(
            sa.text("SELECT as_of FROM claimsync.sync_run WHERE run_id = :r AND flow = 'reconcile'"), {"r": after}
        ).scalar()
        if anchor is None:
            raise NotFound(f"no reconciliation run {after!r}")
        where += " AND (s.as_of, s.run_id) < (:anchor, :after)"
        params.update(anchor=anchor, after=after)
    rows = conn.execute(
        sa.text(f"{_RUNS_FROM} WHERE {where} ORDER BY s.as_of DESC, s.run_id DESC LIMIT :limit"), params
    ).all()
    runs = [_run_row(r) for r in rows[:limit]]
    _attach_figures(conn, runs)
    return RunsPage(runs, runs[-1].run_id if len(rows) > limit else None)


def get_run(conn: Connection, run_id: str) -> RunRow:
    row = conn.execute(
        sa.text(f"{_RUNS_FROM} WHERE s.run_id = :r AND s.flow = 'reconcile'"), {"r": run_id}
    ).one_or_none()
    if row is None:
        raise NotFound(f"no reconciliation run {run_id!r}")
    return _run_row(row)


def run_exists(conn: Connection, run_id: str) -> bool:
    return (
        conn.execute(
            sa.text("SELECT 1 FROM claimsync.sync_run WHERE run_id = :r AND flow = 'reconcile'"), {"r": run_id}
        ).first()
        is not None
    )


def _severity_rank(figure: Figure) -> tuple[int, Decimal]:
    rank = SEVERITY_ORDER.index(figure.severity) if figure.severity in SEVERITY_ORDER else len(SEVERITY_ORDER)
    return rank, -figure.weight


def run_detail(conn: Connection, run_id: str) -> RunDetail:
    """The run page: header, figures by code / age / department / status, and the trend.

    The trend is this run and up to 29 earlier (by as-of) reconciliation runs that did not fail.
    """
    run = get_run(conn, run_id)
    trend_rows = conn.execute(
        sa.text(
            f"{_RUNS_FROM} WHERE s.flow = 'reconcile' AND (s.status <> 'failed' OR s.run_id = :r)"
            " AND (s.as_of, s.run_id) <= (:as_of, :r) ORDER BY s.as_of DESC, s.run_id DESC LIMIT :n"
        ),
        {"r": run_id, "as_of": run.as_of, "n": TREND_RUNS},
    ).all()
    trend = [run if r.run_id == run_id else _run_row(r) for r in reversed(trend_rows)]
    _attach_figures(conn, trend)

    source = _rollup_source(conn, [run])
    params = {"run_ids": [run_id], "live_ids": [run_id] if run.status == "running" else []}
    by_code = sorted(_figures(conn, source, params, "code"), key=_severity_rank)
    ages = {int(f.key): f for f in _figures(conn, source, params, "age_bucket")}
    aging = [
        Figure(bucket, ages[i].count, ages[i].amounts) if i in ages else Figure(bucket, 0, {})
        for i, bucket in enumerate(AGE_BUCKETS)
    ]
    by_department = sorted(_figures(conn, source, params, "department_code"), key=lambda f: (-f.weight, f.key))
    by_status: dict[str, Figure] = {}
    for row in conn.execute(
        sa.text(
            "SELECT e.status, COALESCE(r.currency, e.currency) AS currency, count(*) AS n,"
            " COALESCE(sum(r.amount_impact), 0) AS amount"
            " FROM claimsync.recon_run_exception r JOIN claimsync.recon_exception e ON e.id = r.exception_id"
            " WHERE r.run_id = :r GROUP BY e.status, COALESCE(r.currency, e.currency)"
        ),
        {"r": run_id},
    ):
        by_status.setdefault(row.status, Figure(row.status, 0, {})).add(int(row.n), {row.currency: Decimal(row.amount)})
    statuses = [by_status[s] for s in ("open", "acknowledged", "resolved", "written_off") if s in by_status]
    return RunDetail(run, by_code, aging, by_department, statuses, trend)


def signoffs(conn: Connection, run_id: str) -> dict[str, Signoff]:
    rows = conn.execute(
        sa.text("SELECT role, signed_by, signed_at, note FROM claimsync.signoff WHERE run_id = :r"), {"r": run_id}
    )
    return {r.role: Signoff(r.role, r.signed_by, r.signed_at, r.note) for r in rows}


# --- the exception list ------------------------------------------------------------------


@dataclass(frozen=True)
class _ListSql:
    from_where: str
    params: dict[str, Any]
    amount: str
    ident: str
    columns: str


def _list_sql(flt: ExceptionFilter, reference: datetime) -> _ListSql:
    """FROM … WHERE … for ``flt``; only fixed fragments are joined, every value is a parameter."""
    params: dict[str, Any] = {}
    conditions: list[str] = []
    if flt.run_id is not None:
        source = "claimsync.recon_run_exception r JOIN claimsync.recon_exception e ON e.id = r.exception_id"
        conditions.append("r.run_id = :run_id")
        params["run_id"] = flt.run_id
        amount, ident = "r.amount_impact", "r.exception_id"
        columns = (
            "e.id, e.code, COALESCE(r.severity, e.severity) AS severity, e.status, e.owner, e.business_key,"
            " e.oa_request_id, e.claim_code, e.employee_code, e.department_code, r.oa_amount, r.expense_amount,"
            " r.amount_impact, COALESCE(r.currency, e.currency) AS currency, r.oa_state, r.expense_state,"
            " e.first_seen, e.last_seen, r.detail"
        )
    else:
        source = "claimsync.recon_exception e"
        amount, ident = "e.amount_impact", "e.id"
        columns = (
            "e.id, e.code, e.severity, e.status, e.owner, e.business_key, e.oa_request_id, e.claim_code,"
            " e.employee_code, e.department_code, e.oa_amount, e.expense_amount, e.amount_impact, e.currency,"
            " e.oa_state, e.expense_state, e.first_seen, e.last_seen, e.detail"
        )
    if flt.code is not None:
        conditions.append("e.code = :code")
        params["code"] = flt.code
    if flt.severity is not None:
        conditions.append("e.severity = :severity")
        params["severity"] = flt.severity
    if flt.department is not None:
        conditions.append("e.department_code = :department")
        params["department"] = flt.department
    if flt.status == "unresolved":
        conditions.append("e.status IN ('open', 'acknowledged')")
    elif flt.status is not None:
        conditions.append("e.status = :status")
        params["status"] = flt.status
    if flt.owner is not None:
        conditions.append("e.owner = :owner")
        params["owner"] = flt.owner
    if flt.q is not None:
        params["q"] = flt.q
        if flt.q.isdigit() and len(flt.q) <= 18:
            conditions.append("(e.oa_request_id = :q_int OR e.claim_code = :q)")
            params["q_int"] = int(flt.q)
        else:
            conditions.append("(e.claim_code = :q OR e.business_key = :q)")
    if flt.age is not None:
        after, not_after = age_bounds(flt.age, reference)
        if after is not None:
            conditions.append("e.first_seen > :age_after")
            params["age_after"] = after
        if not_after is not None:
            conditions.append("e.first_seen <= :age_not_after")
            params["age_not_after"] = not_after
    where = " AND ".join(conditions) or "TRUE"
    return _ListSql(f"FROM {source} WHERE {where}", params, amount, ident, columns)


def _order(sql: _ListSql, sort: str) -> str:
    if sort == "age":
        return f"ORDER BY e.first_seen ASC, {sql.ident} ASC"
    return f"ORDER BY {sql.amount} DESC, {sql.ident} DESC"


def _exception_row(row: Any) -> ExceptionRow:
    return ExceptionRow(
        id=int(row.id),
        code=row.code,
        severity=row.severity,
        status=row.status,
        owner=row.owner,
        business_key=row.business_key,
        oa_request_id=row.oa_request_id,
        claim_code=row.claim_code,
        employee_code=row.employee_code,
        department_code=row.department_code,
        oa_amount=row.oa_amount,
        expense_amount=row.expense_amount,
        amount_impact=Decimal(row.amount_impact),
        currency=row.currency,
        oa_state=row.oa_state,
        expense_state=row.expense_state,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        detail=row.detail,
    )


def list_exceptions(
    conn: Connection, flt: ExceptionFilter, reference: datetime, *, limit: int = 50, after: Cursor | None = None
) -> ExceptionPage:
    """One page of the filtered list (keyset paging: the cost of page 1000 is that of page 1)."""
    sql = _list_sql(flt, reference)
    params = dict(sql.params)
    page_where = ""
    if after is not None:
        if flt.sort == "age":
            page_where = f" AND (e.first_seen, {sql.ident}) > (:c_first_seen, :c_id)"
            params["c_first_seen"] = after.first_seen
        else:
            page_where = f" AND ({sql.amount}, {sql.ident}) < (:c_amount, :c_id)"
            params["c_amount"] = after.amount
        params["c_id"] = after.id
    rows = conn.execute(
        sa.text(f"SELECT {sql.columns} {sql.from_where}{page_where} {_order(sql, flt.sort)} LIMIT :limit"),
        {**params, "limit": limit + 1},
    ).all()
    total = int(conn.execute(sa.text(f"SELECT count(*) {sql.from_where}"), sql.params).scalar_one())
    page = [_exception_row(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = Cursor(flt.sort, amount=last.amount_impact, first_seen=last.first_seen, id=last.id).encode()
    return ExceptionPage(page, total, next_cursor, reference)


# exceptions.csv's columns as text, formatted by PostgreSQL (numeric(18,2) prints two decimals;
# first_seen in the session time zone with its offset): the export loop only writes them out.
_EXPORT_COLUMNS: Final = {
    "run": (
        "e.code, COALESCE(r.severity, e.severity), COALESCE(e.oa_request_id::text, ''), COALESCE(e.claim_code, ''),"
        " COALESCE(e.employee_code, ''), COALESCE(r.oa_amount::text, ''), COALESCE(r.expense_amount::text, ''),"
        " r.amount_impact::text, COALESCE(r.currency, e.currency), COALESCE(r.oa_state, ''),"
        " COALESCE(r.expense_state, ''), to_char(e.first_seen, 'YYYY-MM-DD\"T\"HH24:MI:SSTZH:TZM'), r.detail"
    ),
    "ledger": (
        "e.code, e.severity, COALESCE(e.oa_request_id::text, ''), COALESCE(e.claim_code, ''),"
        " COALESCE(e.employee_code, ''), COALESCE(e.oa_amount::text, ''), COALESCE(e.expense_amount::text, ''),"
        " e.amount_impact::text, e.currency, COALESCE(e.oa_state, ''), COALESCE(e.expense_state, ''),"
        " to_char(e.first_seen, 'YYYY-MM-DD\"T\"HH24:MI:SSTZH:TZM'), e.detail"
    ),
}


def iter_export_rows(
    conn: Connection, flt: ExceptionFilter, reference: datetime, timezone: str, batch: int = 5000
) -> Iterator[tuple[str, ...]]:
    """The filtered list in list order as text tuples in exceptions.csv's column order (streamed)."""
    sql = _list_sql(flt, reference)
    columns = _EXPORT_COLUMNS["run" if flt.run_id is not None else "ledger"]
    conn.execute(sa.text("SELECT set_config('TimeZone', :tz, true)"), {"tz": timezone})
    # A download reads every row: plan the cursor for all of them, not for a quick first page.
    conn.execute(sa.text("SELECT set_config('cursor_tuple_fraction', '1', true)"))
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(
        sa.text(f"SELECT {columns} {sql.from_where} {_order(sql, flt.sort)}"), sql.params
    )
    for row in result:
        yield tuple(row)


def departments(conn: Connection) -> list[str]:
    """Distinct department codes of the ledger, by a loose index scan (one probe per department)."""
    rows = conn.execute(
        sa.text(
            "WITH RECURSIVE d(code) AS ("
            " (SELECT department_code FROM claimsync.recon_exception WHERE department_code IS NOT NULL"
            "  ORDER BY department_code LIMIT 1)"
            " UNION ALL"
            " SELECT (SELECT department_code FROM claimsync.recon_exception WHERE department_code > d.code"
            "  ORDER BY department_code LIMIT 1) FROM d WHERE d.code IS NOT NULL)"
            " SELECT code FROM d WHERE code IS NOT NULL"
        )
    )
    return [r.code for r in rows]


def owners(conn: Connection) -> list[str]:
    return list(
        conn.execute(
            sa.text(
                "SELECT DISTINCT owner FROM claimsync.recon_exception WHERE owner IS NOT NULL ORDER BY owner LIMIT 200"
            )
        ).scalars()
    )


# --- one exception -----------------------------------------------------------------------


def exception_detail(conn: Connection, exception_id: int, run_id: str | None = None) -> ExceptionDetail:
    """The exception now (or as ``run_id`` saw it), its sides, its history and how often runs saw it."""
    if run_id is not None:
        row = conn.execute(
            sa.text(
                "SELECT e.id, e.code, COALESCE(r.severity, e.severity) AS severity, e.status, e.owner,"
                " e.business_key, e.oa_request_id, e.claim_code, e.employee_code, e.department_code,"
                " r.oa_amount, r.expense_amount, r.amount_impact, COALESCE(r.currency, e.currency) AS currency,"
                " r.oa_state, r.expense_state, e.first_seen, e.last_seen, r.detail,"
                " COALESCE(r.oa_side, e.oa_side) AS oa_side, COALESCE(r.expense_side, e.expense_side) AS expense_side,"
                " e.first_run_id, e.last_run_id, e.resolved_at, e.note"
                " FROM claimsync.recon_run_exception r JOIN claimsync.recon_exception e ON e.id = r.exception_id"
                " WHERE r.exception_id = :id AND r.run_id = :run_id"
            ),
            {"id": exception_id, "run_id": run_id},
        ).one_or_none()
    else:
        row = None
    if row is None:
        row = conn.execute(
            sa.text(
                "SELECT e.id, e.code, e.severity, e.status, e.owner, e.business_key, e.oa_request_id, e.claim_code,"
                " e.employee_code, e.department_code, e.oa_amount, e.expense_amount, e.amount_impact, e.currency,"
                " e.oa_state, e.expense_state, e.first_seen, e.last_seen, e.detail, e.oa_side, e.expense_side,"
                " e.first_run_id, e.last_run_id, e.resolved_at, e.note"
                " FROM claimsync.recon_exception e WHERE e.id = :id"
            ),
            {"id": exception_id},
        ).one_or_none()
    if row is None:
        raise NotFound(f"no exception {exception_id}")
    events = [
        ExceptionEvent(r.action, r.from_status, r.to_status, r.actor, r.note, r.at, r.run_id, r.owner)
        for r in conn.execute(
            sa.text(
                "SELECT action, from_status, to_status, actor, note, at, run_id, owner"
                " FROM claimsync.recon_exception_event WHERE exception_id = :id ORDER BY at, id"
            ),
            {"id": exception_id},
        )
    ]
    runs_seen = conn.execute(
        sa.text("SELECT count(*) FROM claimsync.recon_run_exception WHERE exception_id = :id"), {"id": exception_id}
    ).scalar_one()
    return ExceptionDetail(
        row=_exception_row(row),
        oa_side=row.oa_side,
        expense_side=row.expense_side,
        first_run_id=row.first_run_id,
        last_run_id=row.last_run_id,
        resolved_at=row.resolved_at,
        note=row.note,
        events=events,
        runs_seen=int(runs_seen),
    )
