"""Live look-ups in the OA and expense systems for the exception page (read-only, masked).

A source that is not configured, unreachable or slow never breaks the page: the look-up
answers :class:`SourceView` with ``available=False`` and a reason that names no secret, and
a failed connection is remembered for ``_RETRY_AFTER`` seconds so the next pages do not
each wait for a timeout. Table and schema names come from the mapping (validated
identifiers), quoted; every value is bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from claimsync.config import SourceMapping
from claimsync.db import create_engine, qualified, safe_url
from claimsync.errors import ClaimsyncError
from claimsync.masking import mask_bank_account, mask_text
from claimsync.workspace.config import CachedUrl

_RETRY_AFTER: Final = 30.0
T = TypeVar("T")


class SourceUnavailable(Exception):
    """The source cannot answer now; ``str(exc)`` is safe to show (no credentials)."""


@dataclass
class SourceView:
    """One system's live view of the exception's document."""

    system: str  # oa | expense
    available: bool
    reason: str | None = None
    record: dict[str, Any] | None = None  # None with available=True: no such document
    log: list[dict[str, Any]] = field(default_factory=list)
    payments: list[dict[str, Any]] = field(default_factory=list)


class SourceDatabase:
    """A lazily created, cached engine for one source, with a short statement timeout."""

    def __init__(self, system: str, url: CachedUrl, timeout_seconds: int = 3) -> None:
        self.system = system
        self._url = url
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._engine_url: str | None = None
        self._failed_until = 0.0
        self._failure = ""

    def _current_engine(self) -> Engine:
        url = self._url.get()
        if not url:
            reason = self._url.error or "not_configured"
            raise SourceUnavailable(reason)
        with self._lock:
            if time.monotonic() < self._failed_until:
                raise SourceUnavailable(self._failure)
            if self._engine is None or self._engine_url != url:
                if self._engine is not None:
                    self._engine.dispose()
                try:
                    self._engine = create_engine(
                        url,
                        self.system,
                        pool_size=3,
                        max_overflow=2,
                        connect_args={
                            "connect_timeout": self._timeout,
                            "options": f"-c statement_timeout={self._timeout * 1000}"
                            " -c default_transaction_read_only=on",
                        },
                    )
                except ClaimsyncError as exc:
                    raise SourceUnavailable(str(exc)) from None
                self._engine_url = url
            return self._engine

    def read(self, query: Callable[[Connection], T]) -> T:
        """Run ``query`` on a connection; any database failure becomes SourceUnavailable."""
        engine = self._current_engine()
        try:
            with engine.connect() as conn:
                return query(conn)
        except DBAPIError as exc:
            first = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            reason = f"{safe_url(engine.url)}: {first}"
            if exc.connection_invalidated or "connect" in first.lower() or "timeout" in first.lower():
                with self._lock:
                    self._failed_until = time.monotonic() + _RETRY_AFTER
                    self._failure = reason
            raise SourceUnavailable(reason) from None
        except SQLAlchemyError as exc:
            raise SourceUnavailable(f"{safe_url(engine.url)}: {type(exc).__name__}") from None

    def dispose(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value).strip()


def oa_view(db: SourceDatabase, mapping: SourceMapping, request_id: int | None, claim_code: str | None) -> SourceView:
    """The OA request (by request id, else by the claim code written into bxdh) and its approval log."""
    if request_id is None and not claim_code:
        return SourceView("oa", available=True)

    def query(conn: Connection) -> SourceView:
        base = qualified(conn, mapping.oa_schema, "workflow_requestbase")
        form = qualified(conn, mapping.oa_schema, mapping.oa_form_table)
        lines = qualified(conn, mapping.oa_schema, mapping.oa_form_lines_table)
        people = qualified(conn, mapping.oa_schema, "hrmresource")
        departments = qualified(conn, mapping.oa_schema, "hrmdepartment")
        log = qualified(conn, mapping.oa_schema, "workflow_requestlog")
        key = "rb.requestid = :rid" if request_id is not None else "f.bxdh = :code"
        row = (
            conn.execute(
                sa.text(
                    "SELECT rb.requestid, rb.requestmark, rb.requestname, rb.currentnodetype, rb.status AS node_name,"
                    " rb.deleted, rb.createdate, rb.createtime, rb.lastoperatedate, rb.lastoperatetime,"
                    " f.bxdh, f.bxje, f.bz, f.fkzt, f.fkrq, f.pzh, h.workcode, h.lastname, h.status AS employee_status,"
                    " d.departmentmark, d.departmentname,"
                    f" (SELECT count(*) FROM {lines} l WHERE l.mainid = f.id) AS line_count,"
                    f" (SELECT COALESCE(sum(l.je), 0) FROM {lines} l WHERE l.mainid = f.id) AS lines_total"
                    f" FROM {base} rb JOIN {form} f ON f.requestid = rb.requestid"
                    f" LEFT JOIN {people} h ON h.id = f.sqr LEFT JOIN {departments} d ON d.id = f.sqbm"
                    f" WHERE {key} AND rb.workflowid = :wf ORDER BY rb.requestid LIMIT 1"
                ),
                {"rid": request_id, "code": claim_code, "wf": mapping.oa_workflow_id},
            )
            .mappings()
            .one_or_none()
        )
        if row is None:
            return SourceView("oa", available=True)
        record = dict(row)
        record["requestname"] = mask_text(record["requestname"])
        entries = [
            {
                "logtype": _text(r.logtype),
                "at": f"{_text(r.operatedate) or ''} {_text(r.operatetime) or ''}".strip(),
                "operator": r.lastname or r.workcode or "",
                "remark": mask_text(r.remark),
                "nodeid": r.nodeid,
            }
            for r in conn.execute(
                sa.text(
                    "SELECT l.logtype, l.operatedate, l.operatetime, l.remark, l.nodeid, h.lastname, h.workcode"
                    f" FROM {log} l LEFT JOIN {people} h ON h.id = l.operator"
                    " WHERE l.requestid = :rid ORDER BY l.operatedate, l.operatetime, l.logid"
                ),
                {"rid": row["requestid"]},
            )
        ]
        return SourceView("oa", available=True, record=record, log=entries)

    return _guarded("oa", db, query)


def expense_view(
    db: SourceDatabase, mapping: SourceMapping, claim_code: str | None, request_id: int | None
) -> SourceView:
    """The expense claim (by code, else by its oa_request_id), its payments (masked) and its log."""
    if not claim_code and request_id is None:
        return SourceView("expense", available=True)

    def query(conn: Connection) -> SourceView:
        flow = qualified(conn, mapping.expense_schema, "flow")
        detail = qualified(conn, mapping.expense_schema, "flow_detail")
        staff = qualified(conn, mapping.expense_schema, "staff")
        department = qualified(conn, mapping.expense_schema, "department")
        payment = qualified(conn, mapping.expense_schema, "payment")
        flow_log = qualified(conn, mapping.expense_schema, "flow_log")
        key = "f.code = :code" if claim_code else "f.oa_request_id = :rid"
        row = (
            conn.execute(
                sa.text(
                    "SELECT f.id, f.code, f.title, f.sum_amount, f.pay_money, f.currency, f.state, f.oa_request_id,"
                    " f.create_time, f.submit_time, f.approve_time, f.pay_time, f.voucher_no, f.update_time,"
                    " s.code AS staff_code, s.name AS staff_name, d.code AS dept_code, d.name AS dept_name,"
                    f" (SELECT count(*) FROM {detail} x WHERE x.flow_id = f.id) AS line_count,"
                    f" (SELECT COALESCE(sum(x.amount), 0) FROM {detail} x WHERE x.flow_id = f.id) AS lines_total"
                    f" FROM {flow} f LEFT JOIN {staff} s ON s.id = f.submitter_id"
                    f" LEFT JOIN {department} d ON d.id = f.department_id"
                    f" WHERE {key} AND f.form_type = :form_type ORDER BY f.code LIMIT 1"
                ),
                {"code": claim_code, "rid": request_id, "form_type": mapping.expense_form_type},
            )
            .mappings()
            .one_or_none()
        )
        if row is None:
            return SourceView("expense", available=True)
        record = dict(row)
        record["title"] = mask_text(record["title"])
        payments = [
            {
                "amount": r.amount,
                "status": r.status,
                "payee_name": r.payee_name,
                "payee_account": mask_bank_account(r.payee_account),
                "created": r.create_time,
                "finished": r.finish_time,
            }
            for r in conn.execute(
                sa.text(
                    "SELECT amount, status, payee_name, payee_account, create_time, finish_time"
                    f" FROM {payment} WHERE flow_id = :fid ORDER BY create_time, id"
                ),
                {"fid": row["id"]},
            )
        ]
        entries = [
            {"action": r.action, "at": r.time, "operator": r.name or "", "remark": mask_text(r.comment)}
            for r in conn.execute(
                sa.text(
                    f"SELECT l.action, l.time, l.comment, s.name FROM {flow_log} l"
                    f" LEFT JOIN {staff} s ON s.id = l.operator_id WHERE l.flow_id = :fid ORDER BY l.time, l.id"
                ),
                {"fid": row["id"]},
            )
        ]
        return SourceView("expense", available=True, record=record, log=entries, payments=payments)

    return _guarded("expense", db, query)


def _guarded(system: str, db: SourceDatabase, query: Callable[[Connection], SourceView]) -> SourceView:
    try:
        return db.read(query)
    except SourceUnavailable as exc:
        return SourceView(system, available=False, reason=str(exc))


class DepartmentNames:
    """Department code → name from OA's hrmdepartment, cached for five minutes ({} when OA is unavailable)."""

    def __init__(self, db: SourceDatabase, mapping: SourceMapping, ttl: float = 300.0) -> None:
        self._db = db
        self._mapping = mapping
        self._ttl = ttl
        self._names: dict[str, str] = {}
        self._expires = 0.0
        self._lock = threading.Lock()

    def get(self) -> dict[str, str]:
        with self._lock:
            if time.monotonic() < self._expires:
                return self._names

        def query(conn: Connection) -> dict[str, str]:
            table = qualified(conn, self._mapping.oa_schema, "hrmdepartment")
            rows = conn.execute(sa.text(f"SELECT departmentmark, departmentname FROM {table}"))
            return {r.departmentmark: r.departmentname for r in rows if r.departmentmark}

        try:
            names = self._db.read(query)
        except SourceUnavailable:
            names = {}
        with self._lock:
            self._names, self._expires = names, time.monotonic() + self._ttl
        return names


# --- the side-by-side table ----------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Decimal | int) and isinstance(b, Decimal | int):
        return Decimal(a) == Decimal(b)
    return (_text(a) or "") == (_text(b) or "")


def _oa_pay_date(record: dict[str, Any]) -> str | None:
    return _text(record.get("fkrq"))


def _expense_pay_date(record: dict[str, Any], tz: Any) -> str | None:
    value = record.get("pay_time")
    if isinstance(value, datetime):
        return value.astimezone(tz).date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return None


def live_comparison(
    oa: dict[str, Any] | None, expense: dict[str, Any] | None, tz: Any
) -> list[tuple[str, Any, Any, bool]]:
    """(label key, OA value, expense value, compared?) rows; values raw, formatted by the template."""
    o = oa or {}
    e = expense or {}

    def tstamp(value: Any) -> Any:
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else value

    oa_changed = f"{_text(o.get('lastoperatedate')) or ''} {_text(o.get('lastoperatetime')) or ''}".strip() or None
    return [
        ("request_id", o.get("requestid"), e.get("oa_request_id"), True),
        ("claim_code", o.get("bxdh"), e.get("code"), True),
        ("request_mark", o.get("requestmark"), None, False),
        ("title", o.get("requestname"), e.get("title"), False),
        ("employee_code", o.get("workcode"), e.get("staff_code"), True),
        ("employee_name", o.get("lastname"), e.get("staff_name"), True),
        ("department", o.get("departmentmark"), e.get("dept_code"), True),
        ("department_name", o.get("departmentname"), e.get("dept_name"), False),
        ("amount", o.get("bxje"), e.get("sum_amount"), True),
        ("pay_amount", None, e.get("pay_money"), False),
        ("currency", o.get("bz"), e.get("currency"), True),
        ("raw_state", _oa_state_text(o), e.get("state"), False),
        ("payment_state", o.get("fkzt"), None, False),
        ("pay_date", _oa_pay_date(o), _expense_pay_date(e, tz), True),
        ("voucher", o.get("pzh"), e.get("voucher_no"), True),
        ("lines_total", o.get("lines_total"), e.get("lines_total"), True),
        ("line_count", o.get("line_count"), e.get("line_count"), True),
        ("changed_at", oa_changed, tstamp(e.get("update_time")), False),
    ]


def _oa_state_text(record: dict[str, Any]) -> str | None:
    if not record:
        return None
    node = {"0": "创建", "1": "审批", "2": "提交", "3": "归档"}.get(_text(record.get("currentnodetype")) or "", "")
    name = _text(record.get("node_name")) or ""
    deleted = " (deleted)" if record.get("deleted") == 1 else ""
    return f"{record.get('currentnodetype')} {node} {name}".strip() + deleted


def mark_differences(rows: list[tuple[str, Any, Any, bool]], *, both_present: bool) -> list[tuple[str, Any, Any, bool]]:
    """Turn the 'compared?' flag into 'differs': only where both documents exist and both values are set."""
    marked = []
    for label, a, b, compared in rows:
        differs = both_present and compared and a not in (None, "") and b not in (None, "") and not _same(a, b)
        marked.append((label, a, b, differs))
    return marked
