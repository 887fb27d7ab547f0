"""The PostgreSQL adapter: pull both systems' records, raw, fast, and in one code path.

Every query lives in ``sql/oa/extract_*.sql`` and ``sql/expense/extract_*.sql``; this module
fills in the configured schema and table names (validated by claimsync.config, quoted
here) and one *scope* fragment per query, and binds every value as a parameter.

Scope: which records a run takes
- **full** (no window, no bucket): everything of the configured workflow / form type;
- **window** ``[start - settings.overlap, end)`` of each side's change cursor: OA
  ``lastoperatedate``+``lastoperatetime`` (text in settings.timezone, compared as text so
  the index on the two columns serves it), expense ``flow.update_time`` and
  ``payment.update_time``;
- **bucket** ``(i, n)``: a stable hash (PostgreSQL ``hashtextextended``) of the OA
  ``requestid`` for OA rows, and of ``oa_request_id`` (else the claim ``code``) for
  expense rows, so both sides of a primary link fall into the same bucket.

Window and bucket pick the *seed* records. Unless the scope is full, the seeds' link
counterparts are then fetched by key (requestid ↔ oa_request_id, bxdh ↔ code), and theirs,
until nothing new turns up, so every link group (see claimsync.rules "Linking") a seed
belongs to is complete and a windowed or bucketed reconcile sees both sides of every claim
it touches. Each claim row carries ``scope_bucket``: the bucket of the row when the run's
window selected it (0 without buckets), NULL for a counterpart outside the window; a
bucketed reconcile uses it to decide which bucket reports a link group (claimsync.reconcile).

Transport: ``COPY (query) TO STDOUT`` as CSV, parsed by pyarrow's multi-threaded CSV
reader into Arrow-backed pandas frames, both systems at once on two connections, each in
one read-only repeatable-read transaction (a consistent snapshot per side). Every column
is given an explicit type: amounts and OA dates stay **text** (never float), integers are
nullable ``Int64``, timestamptz values are UTC timestamps. claimsync.canonical turns these
raw frames into the canonical model.
"""

from __future__ import annotations

import gc
import io
import os
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, partial
from typing import TYPE_CHECKING, Any, Final, TypeVar

import numpy as np
import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from claimsync.canonical import Sides, SystemClaims, assemble_sides, canonical_claims
from claimsync.config import Settings
from claimsync.db import quote_ident, raw_cursor, safe_url
from claimsync.errors import ClaimsyncError, ConfigError
from claimsync.memory import return_freed_memory
from claimsync.resources import query_template

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["PARTS", "RawSides", "Sides", "Window", "extract_raw", "extract_sides"]

PARTS: Final = ("claims", "org")


@dataclass(frozen=True)
class Window:
    """A run's extraction window: records whose change cursor is in ``[start - overlap, end)``.

    ``start=None`` means a full extraction (every record; ``end`` is then only the run's
    reference time). Both are tz-aware instants.
    """

    start: datetime | None
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ConfigError(f"the window {name} must carry a time zone, got {value.isoformat()}")
        if self.start is not None and self.start > self.end:
            raise ConfigError(f"the window starts after it ends: {self.start.isoformat()} > {self.end.isoformat()}")

    @property
    def full(self) -> bool:
        return self.start is None


@dataclass(frozen=True)
class RawSides:
    """The records as the two systems store them (column names are the source's).

    Amounts (``bxje``, ``je``, ``sum_amount``, ``pay_money``, ``amount``) and OA dates are
    text exactly as stored; claimsync.canonical parses them. A quality gate may add or
    change rows here before canonicalization. ``scope_bucket`` on the claim frames: see
    the module docstring.
    """

    oa_claims: pd.DataFrame
    oa_lines: pd.DataFrame
    oa_employees: pd.DataFrame
    oa_departments: pd.DataFrame
    expense_claims: pd.DataFrame
    expense_lines: pd.DataFrame
    expense_payments: pd.DataFrame
    expense_employees: pd.DataFrame
    expense_departments: pd.DataFrame
    window: Window | None = None
    bucket: tuple[int, int] | None = None

    def frames(self) -> dict[str, pd.DataFrame]:
        """The nine frames by name (what claimsync.canonical.canonicalize_frames takes)."""
        return {name: getattr(self, name) for name in _FRAME_QUERIES}


# Buffer of each end of the pipe between a COPY and its parser (claimsync.extract._stream_copy).
_PIPE_BUFFER: Final = 1 << 20
# Column types of each query's output; every other column is text.
_I64 = pa.int64()
_TS = pa.timestamp("us", tz="UTC")
_TYPES: Final[Mapping[str, Mapping[str, pa.DataType]]] = {
    "oa/claims": {"requestid": _I64, "form_id": _I64, "sqr_status": _I64, "deleted": _I64, "scope_bucket": _I64},
    "oa/lines": {"form_id": _I64, "requestid": _I64, "id": _I64},
    "oa/employees": {"status": _I64},
    "oa/departments": {},
    "expense/claims": {
        "oa_request_id": _I64,
        "scope_bucket": _I64,
        "approve_time": _TS,
        "pay_time": _TS,
        "create_time": _TS,
        "update_time": _TS,
    },
    "expense/lines": {"seq": _I64},
    "expense/payments": {"create_time": _TS, "finish_time": _TS, "update_time": _TS},
    "expense/employees": {"active": pa.bool_(), "update_time": _TS},
    "expense/departments": {"active": pa.bool_(), "update_time": _TS},
}

# Scope fragments (SQL over each query's own table aliases); values are bound parameters.
_BUCKET_HASH = "mod(mod(hashtextextended({key}, 0), %(buckets)s) + %(buckets)s, %(buckets)s)"
_OA_CLAIM_SCOPE: Final = {
    "window": "(r.lastoperatedate, r.lastoperatetime) >= (%(since_date)s, %(since_time)s)"
    " AND (r.lastoperatedate, r.lastoperatetime) < (%(until_date)s, %(until_time)s)",
    "hash": _BUCKET_HASH.format(key="r.requestid::text"),
    # Keys on two tables: a UNION of two index lookups (an OR across them scans both tables).
    "keys": "r.requestid IN (SELECT k.requestid FROM {schema}.workflow_requestbase k"
    " WHERE k.requestid = ANY(%(key_ids)s)"
    " UNION SELECT k.requestid FROM {schema}.{form_table} k WHERE k.bxdh = ANY(%(key_codes)s))",
    "extra": "r.requestid = ANY(%(extra_ids)s)",
}
_EXPENSE_CLAIM_SCOPE: Final = {
    "window": "fl.id IN (SELECT w.id FROM {schema}.flow w WHERE w.update_time >= %(since)s"
    " AND w.update_time < %(until)s UNION SELECT p.flow_id FROM {schema}.payment p"
    " WHERE p.update_time >= %(since)s AND p.update_time < %(until)s)",
    "hash": _BUCKET_HASH.format(key="COALESCE(fl.oa_request_id::text, fl.code)"),
    "keys": "fl.id IN (SELECT k.id FROM {schema}.flow k WHERE k.oa_request_id = ANY(%(key_ids)s)"
    " UNION SELECT k.id FROM {schema}.flow k WHERE k.code = ANY(%(key_codes)s))",
    "extra": "fl.code = ANY(%(extra_codes)s)",
}
# The OA requests a scope takes: their request ids (for the log) or form ids (for the lines).
# Aliases r, f inside.
_OA_REQUESTS: Final = (
    "SELECT {column} FROM {{schema}}.workflow_requestbase r"
    " JOIN {{schema}}.{{form_table}} f ON f.requestid = r.requestid"
    " WHERE r.workflowid = %(workflow_id)s AND ({where})"
)
# The expense claims a scope takes, for lines and payments (alias fl inside).
_EXPENSE_FLOWS: Final = "SELECT {column} FROM {{schema}}.flow fl WHERE fl.form_type = %(form_type)s AND ({where})"
# Details name their claim by its form id (OA lines) or flow id (expense lines, payments).
_OWNER_ID: Final = {"oa/lines": "d.mainid", "expense/lines": "fd.flow_id", "expense/payments": "p.flow_id"}
_ORG_SCOPE: Final = {
    "oa/employees": {
        "window": "(e.lastmoddate, e.lastmodtime) >= (%(since_date)s, %(since_time)s)"
        " AND (e.lastmoddate, e.lastmodtime) < (%(until_date)s, %(until_time)s)",
        "hash": _BUCKET_HASH.format(key="e.workcode"),
        "keys": "e.workcode = ANY(%(key_codes)s)",
    },
    "oa/departments": {
        "window": "d.modified >= %(since_stamp)s AND d.modified < %(until_stamp)s",
        "hash": _BUCKET_HASH.format(key="d.departmentmark"),
        "keys": "d.departmentmark = ANY(%(key_codes)s)",
    },
    "expense/employees": {
        "window": "s.update_time >= %(since)s AND s.update_time < %(until)s",
        "hash": _BUCKET_HASH.format(key="s.code"),
        "keys": "s.code = ANY(%(key_codes)s)",
    },
    "expense/departments": {
        "window": "d.update_time >= %(since)s AND d.update_time < %(until)s",
        "hash": _BUCKET_HASH.format(key="d.code"),
        "keys": "d.code = ANY(%(key_codes)s)",
    },
}
_ORG_KEY: Final = {
    "oa/employees": "workcode",
    "oa/departments": "departmentmark",
    "expense/employees": "code",
    "expense/departments": "code",
}
# A claim row's own cursor; extraction sorts nothing, reconcile needs no order.
_SESSION_SETUP: Final = (
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    "SET LOCAL TIME ZONE 'UTC'",
    # Joins of a full extraction hash a million rows: let them stay in memory.
    "SET LOCAL work_mem = '256MB'",
    "SET LOCAL jit = off",
)


@cache
def _template(name: str) -> str:
    system, entity = name.split("/")
    return query_template(system, f"extract_{entity}")


@dataclass(frozen=True)
class _Scope:
    """The seed predicate of one run, as SQL over a query's aliases, and its parameters."""

    window: Window | None
    bucket: tuple[int, int] | None
    params: Mapping[str, Any]

    @property
    def full(self) -> bool:
        return not self.windowed and self.bucket is None

    @property
    def windowed(self) -> bool:
        """A window of the change cursor restricts the seeds (not a full window)."""
        return self.window is not None and not self.window.full

    def seed(self, fragments: Mapping[str, str]) -> str:
        parts = []
        if self.windowed:
            parts.append(fragments["window"])
        if self.bucket is not None:
            parts.append(f"{fragments['hash']} = %(bucket)s")
        return " AND ".join(f"({p})" for p in parts) or "TRUE"

    def scope_bucket(self, fragments: Mapping[str, str]) -> str:
        """The bucket of a row the window selected (0 without buckets), else NULL."""
        bucket = fragments["hash"] if self.bucket is not None else "0"
        if self.windowed:
            return f"CASE WHEN {fragments['window']} THEN {bucket} END"
        return bucket


def _scope(settings: Settings, window: Window | None, bucket: tuple[int, int] | None) -> _Scope:
    params: dict[str, Any] = {}
    if bucket is not None:
        index, count = bucket
        if not (isinstance(index, int) and isinstance(count, int) and count >= 1 and 0 <= index < count):
            raise ConfigError(f"a bucket is (index, count) with 0 <= index < count, got {bucket!r}")
        params.update(bucket=index, buckets=count)
    if window is not None and not window.full:
        assert window.start is not None
        since = window.start - settings.overlap
        params.update(since=since, until=window.end)
        # The OA cursor is whole seconds of local text: t >= since ⟺ t >= ceil(since), same for until.
        for name, instant in (("since", since), ("until", window.end)):
            local = _ceil_second(instant.astimezone(settings.tz))
            params[f"{name}_date"] = local.strftime("%Y-%m-%d")
            params[f"{name}_time"] = local.strftime("%H:%M:%S")
            params[f"{name}_stamp"] = local.strftime("%Y-%m-%d %H:%M:%S")
    return _Scope(window, bucket, params)


def _ceil_second(instant: datetime) -> datetime:
    if instant.microsecond:
        return instant.replace(microsecond=0) + timedelta(seconds=1)
    return instant


def _render(conn: Connection, name: str, settings: Settings, **fragments: str) -> str:
    """The query ``name`` with quoted identifiers and scope fragments filled in."""
    mapping = settings.mapping
    if name.startswith("oa/"):
        identifiers = {
            "schema": quote_ident(conn, mapping.oa_schema),
            "form_table": quote_ident(conn, mapping.oa_form_table),
            "lines_table": quote_ident(conn, mapping.oa_form_lines_table),
        }
    else:
        identifiers = {"schema": quote_ident(conn, mapping.expense_schema)}
    filled = {key: value.format(**identifiers) for key, value in fragments.items()}
    return _template(name).format(**identifiers, **filled)


def _copy_frame(conn: Connection, name: str, query: str, params: Mapping[str, Any]) -> pd.DataFrame:
    """Run ``query`` through ``COPY … TO STDOUT`` (CSV) and parse it with pyarrow as it arrives."""
    try:
        with raw_cursor(conn) as cursor:
            bound = cursor.mogrify(query, dict(params)).decode()
            table = _stream_copy(cursor, f"COPY ({bound}) TO STDOUT WITH (FORMAT csv, HEADER true)", _TYPES[name])
    except psycopg2.Error as exc:
        what = "OA" if name.startswith("oa/") else "expense"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClaimsyncError(
            f"extracting from the {what} database at {safe_url(conn.engine.url)} failed ({name}): {reason}"
        ) from None
    return _to_pandas(table)


def _stream_copy(cursor: Any, copy: str, types: Mapping[str, pa.DataType]) -> pa.Table:
    """``copy``'s CSV, parsed by Arrow's streaming reader in a thread while psycopg2 writes it
    into a pipe: the CSV text is never held whole (it was the largest transient of a full
    extraction), and parsing overlaps the transfer. A COPY error is raised as psycopg2's."""
    read_end, write_end = os.pipe()
    _widen(write_end)
    parsed: dict[str, Any] = {}

    def parse() -> None:
        try:
            with io.BufferedReader(io.FileIO(read_end, "rb"), buffer_size=_PIPE_BUFFER) as source:
                parsed["table"] = _parse_csv(source, types)
        except BaseException as exc:  # reported by the caller, after the COPY's own error
            parsed["error"] = exc

    reader = threading.Thread(target=parse, name="claimsync-copy-parse", daemon=True)
    reader.start()
    try:
        with io.BufferedWriter(io.FileIO(write_end, "wb"), buffer_size=_PIPE_BUFFER) as sink:
            cursor.copy_expert(copy, sink)
    except BrokenPipeError:
        pass  # the reader stopped early: its error says why
    finally:
        reader.join()
    if "error" in parsed:
        raise parsed["error"]
    table: pa.Table = parsed["table"]
    return table


def _widen(pipe: int) -> None:
    """Let the pipe hold a whole buffer (Linux: 64 KiB by default), so each write of the COPY's
    1 MiB buffer is one hand-over instead of sixteen, each a wake-up of the parser."""
    try:
        import fcntl

        fcntl.fcntl(pipe, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BUFFER)
    except (ImportError, OSError):
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size: the default size works, a little slower


def _parse_csv(source: io.BufferedReader[io.FileIO], types: Mapping[str, pa.DataType]) -> pa.Table:
    header = source.readline().decode().rstrip("\r\n")
    columns = header.split(",") if header else []
    column_types = {column: types.get(column, pa.string()) for column in columns}
    if not source.peek(1):  # no rows (Arrow's reader wants at least one)
        return pa.table({column: pa.array([], type=kind) for column, kind in column_types.items()})
    reader = pa_csv.open_csv(
        source,
        read_options=pa_csv.ReadOptions(column_names=columns, block_size=8 << 20),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=column_types,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )
    return reader.read_all()


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    frame: pd.DataFrame = table.to_pandas(types_mapper=mapping.get, self_destruct=True)
    return frame


class _Side:
    """One system's connection inside its snapshot transaction, and its queries."""

    def __init__(self, system: str, conn: Connection, settings: Settings, scope: _Scope) -> None:
        self.system = system
        self.conn = conn
        self.settings = settings
        self.scope = scope
        self.fragments = _OA_CLAIM_SCOPE if system == "oa" else _EXPENSE_CLAIM_SCOPE

    def _params(self, **extra: Any) -> dict[str, Any]:
        return {
            **self.scope.params,
            "workflow_id": self.settings.mapping.oa_workflow_id,
            "form_type": self.settings.mapping.expense_form_type,
            **extra,
        }

    def claims(self, where: str, **params: Any) -> pd.DataFrame:
        name = f"{self.system}/claims"
        fragments = {"scope": where, "scope_bucket": self.scope.scope_bucket(self.fragments)}
        if self.system == "oa":
            requests = _OA_REQUESTS.format(column="r.requestid", where=where)
            fragments["log_scope"] = "TRUE" if where == "TRUE" else f"l.requestid IN ({requests})"
        query = _render(self.conn, name, self.settings, **fragments)
        return _copy_frame(self.conn, name, query, self._params(**params))

    def seed_claims(self) -> pd.DataFrame:
        return self.claims(self.scope.seed(self.fragments))

    def lookup_claims(self, ids: Collection[int], codes: Collection[str]) -> pd.DataFrame:
        """Claims linked by key to records already extracted (the caller drops those it has).

        A bucket's own claims come back by the thousand, so its hash (a test on the row itself)
        leaves them out here. A window's few are left in: excluding them needs the window's
        subquery, and with it the planner scans the claims table (170 ms instead of 7 ms).
        """
        where = self.fragments["keys"]
        if not self.scope.windowed:
            where = f"{where} AND NOT ({self.scope.seed(self.fragments)})"
        return self.claims(where, key_ids=sorted(ids), key_codes=sorted(codes))

    def details(self, entity: str, extra: Collection[Any]) -> pd.DataFrame:
        """Lines or payments of the seed claims and of the counterparts fetched by key."""
        name = f"{self.system}/{entity}"
        seed = self.scope.seed(self.fragments)
        params: dict[str, Any] = {}
        # The seed claims' ids, and the extra claims' as a UNION (each an index lookup; an OR
        # of the two predicates would scan the claims table).
        wanted, column = (_OA_REQUESTS, "f.id") if self.system == "oa" else (_EXPENSE_FLOWS, "fl.id")
        ids = [wanted.format(column=column, where=seed)] if seed != "TRUE" else []
        if extra and not self.scope.full:
            ids.append(wanted.format(column=column, where=self.fragments["extra"]))
            params["extra_ids" if self.system == "oa" else "extra_codes"] = sorted(extra)
        where = f"{_OWNER_ID[name]} IN ({' UNION '.join(ids)})" if ids else "TRUE"
        query = _render(self.conn, name, self.settings, lines_scope=where)
        return _copy_frame(self.conn, name, query, self._params(**params))

    def org(self, entity: str, codes: Collection[str] | None = None) -> pd.DataFrame:
        """Employees or departments: the seeds (window, bucket), or those with the given codes."""
        name = f"{self.system}/{entity}"
        fragments = _ORG_SCOPE[name]
        if codes is None:
            where = self.scope.seed(fragments)
            params: dict[str, Any] = {}
        else:
            where = f"{fragments['keys']} AND NOT ({self.scope.seed(fragments)})"
            params = {"key_codes": sorted(codes)}
        query = _render(self.conn, name, self.settings, scope=where)
        return _copy_frame(self.conn, name, query, self._params(**params))


def extract_raw(
    oa_engine: Engine,
    expense_engine: Engine,
    settings: Settings,
    *,
    window: Window | None = None,
    bucket: tuple[int, int] | None = None,
    parts: Iterable[str] = PARTS,
) -> RawSides:
    """Extract both systems' raw records for ``window`` (None = full) and ``bucket`` (None = all).

    ``parts`` limits the extraction to ``claims`` (claims, lines, payments) or ``org``
    (employees, departments); frames of a part not extracted are empty. An unreachable
    database or a missing table stops with one line (ClaimsyncError).
    """
    oa, expense, org = _extract(
        oa_engine, expense_engine, settings, window=window, bucket=bucket, parts=parts, finish=_as_extracted
    )
    return RawSides(**oa, **expense, **org, window=window, bucket=bucket)


def extract_sides(
    oa_engine: Engine,
    expense_engine: Engine,
    settings: Settings,
    *,
    window: Window | None = None,
    bucket: tuple[int, int] | None = None,
    parts: Iterable[str] = PARTS,
) -> Sides:
    """:func:`extract_raw` then :func:`claimsync.canonical.canonicalize`, the same Sides; each
    system's claims are canonicalized in its own thread as soon as its records are in (while
    the other system's may still be coming), and each raw frame is freed once used."""

    def canonical(system: str, frames: dict[str, pd.DataFrame]) -> SystemClaims:
        return canonical_claims(system, frames, settings, bucket=bucket)

    oa, expense, org = _extract(
        oa_engine, expense_engine, settings, window=window, bucket=bucket, parts=parts, finish=canonical
    )
    sides = assemble_sides(oa, expense, org, settings, bucket=bucket)
    del oa, expense
    # The raw frames sit in reference cycles (pandas caches): collect them and give their memory
    # back (claimsync.memory) before the caller builds its own working set.
    gc.collect()
    pa.default_memory_pool().release_unused()
    return sides


_Done = TypeVar("_Done")
_OA = TypeVar("_OA")
_Expense = TypeVar("_Expense")


def _as_extracted(system: str, frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return frames


def _extract(
    oa_engine: Engine,
    expense_engine: Engine,
    settings: Settings,
    *,
    window: Window | None,
    bucket: tuple[int, int] | None,
    parts: Iterable[str],
    finish: Callable[[str, dict[str, pd.DataFrame]], _Done],
) -> tuple[_Done, _Done, dict[str, pd.DataFrame]]:
    """Each system's claim frames passed through ``finish`` (in that system's thread), and the
    four raw org frames by name."""
    wanted = set(parts)
    if not wanted or wanted - set(PARTS):
        raise ConfigError(f"parts must be among {', '.join(PARTS)}, got {sorted(wanted)!r}")
    scope = _scope(settings, window, bucket)
    return_freed_memory()  # a full extraction's frames are freed phase by phase: let the OS have them
    with (
        _snapshot(oa_engine, "OA") as oa_conn,
        _snapshot(expense_engine, "expense") as expense_conn,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="claimsync-extract-oa") as pool,
    ):
        oa = _Side("oa", oa_conn, settings, scope)
        expense = _Side("expense", expense_conn, settings, scope)
        if "claims" in wanted:
            oa_done, expense_done = _extract_claims(pool, oa, expense, finish)
        else:
            oa_done, expense_done = (
                finish(system, {name: _empty(name) for name in _SYSTEM_FRAMES[system]}) for system in ("oa", "expense")
            )
        org = _extract_org(pool, oa, expense) if "org" in wanted else {name: _empty(name) for name in _ORG_FRAMES}
    return oa_done, expense_done, org


_FRAME_QUERIES: Final = {
    "oa_claims": "oa/claims",
    "oa_lines": "oa/lines",
    "oa_employees": "oa/employees",
    "oa_departments": "oa/departments",
    "expense_claims": "expense/claims",
    "expense_lines": "expense/lines",
    "expense_payments": "expense/payments",
    "expense_employees": "expense/employees",
    "expense_departments": "expense/departments",
}

# Output columns of each query (for the empty frame of a part that was not extracted).
_COLUMNS: Final = {
    "oa/claims": (
        "requestid form_id requestmark bxdh sqr_workcode sqr_status sqbm_departmentmark bxje bz currentnodetype deleted"
        " fkzt fkrq pzh createdate createtime lastoperatedate lastoperatetime last_logtype last_logdate"
        " last_logtime scope_bucket"
    ),
    "oa/lines": "requestid id fylx je fpdm fphm kprq",  # as _owned leaves them
    "oa/employees": "workcode lastname departmentmark status email lastmoddate lastmodtime",
    "oa/departments": "departmentmark departmentname parent_departmentmark canceled modified",
    "expense/claims": (
        "id code oa_request_id submitter_code department_code sum_amount pay_money currency state approve_time"
        " pay_time voucher_no create_time update_time scope_bucket"
    ),
    "expense/lines": "code seq fee_type amount invoice_code invoice_number invoice_date",
    "expense/payments": ("id code amount status payee_name payee_account_masked create_time finish_time update_time"),
    "expense/employees": "code name department_code email active update_time",
    "expense/departments": "code name parent_code active update_time",
}


# The raw frames of each system's claims, and the org frames.
_SYSTEM_FRAMES: Final = {
    "oa": ("oa_claims", "oa_lines"),
    "expense": ("expense_claims", "expense_lines", "expense_payments"),
}
_ORG_FRAMES: Final = tuple(
    name for name in _FRAME_QUERIES if not any(name in frames for frames in _SYSTEM_FRAMES.values())
)


def _empty(frame: str) -> pd.DataFrame:
    name = _FRAME_QUERIES[frame]
    types = _TYPES[name]
    schema = pa.schema([(column, types.get(column, pa.string())) for column in _COLUMNS[name].split()])
    return _to_pandas(schema.empty_table())


def _both(
    pool: ThreadPoolExecutor, on_oa: Callable[[], _OA], on_expense: Callable[[], _Expense]
) -> tuple[_OA, _Expense]:
    """``on_oa`` in the pool while ``on_expense`` runs here; when both fail, OA's error is raised."""
    oa_future = pool.submit(on_oa)
    try:
        expense_result = on_expense()
    finally:
        oa_result = oa_future.result()  # awaited either way, before the connections close
    return oa_result, expense_result


def _one_at_a_time(
    finish: Callable[[str, dict[str, pd.DataFrame]], _Done],
) -> Callable[[str, dict[str, pd.DataFrame]], _Done]:
    """``finish`` for one system at a time. Canonicalizing is mostly Python (one core at a time
    anyway); two at once hold both systems' raw and canonical frames together, so the peak
    memory depended on how they overlapped (at 1M claims: 1515-1524 MiB, once 1585 MiB; one at
    a time: 1515-1518 MiB, for about a second more of wall time)."""
    lock = threading.Lock()

    def finish_alone(system: str, frames: dict[str, pd.DataFrame]) -> _Done:
        with lock:
            return finish(system, frames)

    return finish_alone


def _extract_claims(
    pool: ThreadPoolExecutor, oa: _Side, expense: _Side, finish: Callable[[str, dict[str, pd.DataFrame]], _Done]
) -> tuple[_Done, _Done]:
    finish = _one_at_a_time(finish)
    if oa.scope.full:
        # Every claim, every detail: neither system waits for the other.
        return _both(
            pool,
            lambda: finish("oa", _oa_frames(oa, oa.seed_claims(), set())),
            lambda: finish("expense", _expense_frames(expense, expense.seed_claims(), set())),
        )
    oa_claims, expense_claims = _both(pool, oa.seed_claims, expense.seed_claims)
    extra_ids: set[int] = set()
    extra_codes: set[str] = set()
    # Close the link groups: fetch counterparts by key until nothing new turns up.
    asked_oa: tuple[set[int], set[str]] = (set(), set())
    asked_expense: tuple[set[int], set[str]] = (set(), set())
    first_round_of_bucket = not oa.scope.windowed
    while True:
        oa_ids = set(_ints(expense_claims["oa_request_id"])) - asked_oa[0]
        oa_codes = set(_texts(expense_claims["code"])) - asked_oa[1]
        expense_ids = set(_ints(oa_claims["requestid"])) - asked_expense[0]
        expense_codes = set(_texts(oa_claims["bxdh"])) - asked_expense[1]
        if not (oa_ids or oa_codes or expense_ids or expense_codes):
            break
        asked_oa[0].update(oa_ids)
        asked_oa[1].update(oa_codes)
        asked_expense[0].update(expense_ids)
        asked_expense[1].update(expense_codes)
        if first_round_of_bucket:
            # A request id names a record of the same bucket on both sides (the expense hash
            # takes oa_request_id first): the seeds already hold whatever these ids find.
            # Only codes can lead out of a bucket.
            oa_ids, expense_ids = set(), set()
            first_round_of_bucket = False
        more_oa, more_expense = _both(
            pool,
            partial(oa.lookup_claims, oa_ids, oa_codes),
            partial(expense.lookup_claims, expense_ids, expense_codes),
        )
        more_oa = more_oa[~more_oa["requestid"].isin(oa_claims["requestid"])]
        more_expense = more_expense[~more_expense["code"].isin(expense_claims["code"])]
        extra_ids.update(_ints(more_oa["requestid"]))
        extra_codes.update(_texts(more_expense["code"]))
        oa_claims = _concat(oa_claims, more_oa)
        expense_claims = _concat(expense_claims, more_expense)
    return _both(
        pool,
        lambda: finish("oa", _oa_frames(oa, oa_claims, extra_ids)),
        lambda: finish("expense", _expense_frames(expense, expense_claims, extra_codes)),
    )


# Details come by owner id (a full extraction reads them whole, without a join): each side
# keeps those of the claims it took, named by the claim's key.
def _oa_frames(oa: _Side, claims: pd.DataFrame, extra_ids: Collection[int]) -> dict[str, pd.DataFrame]:
    lines = _owned(oa.details("lines", extra_ids), "form_id", claims["form_id"], claims["requestid"])
    return {"oa_claims": claims, "oa_lines": lines}


def _expense_frames(expense: _Side, claims: pd.DataFrame, extra_codes: Collection[str]) -> dict[str, pd.DataFrame]:
    flow_ids, codes = claims["id"], claims["code"]
    return {
        "expense_claims": claims,
        "expense_lines": _owned(expense.details("lines", extra_codes), "flow_id", flow_ids, codes),
        "expense_payments": _owned(expense.details("payments", extra_codes), "flow_id", flow_ids, codes),
    }


def _owned(details: pd.DataFrame, owner: str, ids: pd.Series, keys: pd.Series) -> pd.DataFrame:
    """``details`` of the claims taken, with their ``owner`` id (one of the claims' ``ids``)
    replaced, in place, by that claim's key (named as ``keys``): the raw frames keep their columns."""
    # Hashed in Arrow (millions of text ids: much faster than a pandas Index of Python strings);
    # index_in gives the first equal id's position, so duplicate ids need no pass of their own.
    found = pc.index_in(_combined(details[owner]), value_set=_combined(ids))
    position = np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    taken = position >= 0
    kept = details if taken.all() else details.loc[taken].reset_index(drop=True)
    kept[owner] = keys.take(position[taken]).reset_index(drop=True)
    renamed: pd.DataFrame = kept.rename(columns={owner: keys.name})
    return renamed


def _combined(values: pd.Series) -> pa.Array:
    array = pa.array(values, from_pandas=True)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _extract_org(pool: ThreadPoolExecutor, oa: _Side, expense: _Side) -> dict[str, pd.DataFrame]:
    frames: dict[str, pd.DataFrame] = {}
    for entity, oa_key, expense_key in (("employees", "workcode", "code"), ("departments", "departmentmark", "code")):
        oa_rows, expense_rows = _both(pool, partial(oa.org, entity), partial(expense.org, entity))
        if not oa.scope.full:
            # Counterparts by code (unique on each side): one hop completes the pairs.
            oa_codes, expense_codes = set(_texts(expense_rows[expense_key])), set(_texts(oa_rows[oa_key]))
            more_oa, more_expense = _both(
                pool, partial(oa.org, entity, oa_codes), partial(expense.org, entity, expense_codes)
            )
            oa_rows = _concat(oa_rows, more_oa[~more_oa[oa_key].isin(oa_rows[oa_key])])
            expense_rows = _concat(
                expense_rows, more_expense[~more_expense[expense_key].isin(expense_rows[expense_key])]
            )
        frames[f"oa_{entity}"] = oa_rows
        frames[f"expense_{entity}"] = expense_rows
    return frames


def _ints(series: pd.Series) -> list[int]:
    return [int(v) for v in series.dropna().unique()]


def _texts(series: pd.Series) -> list[str]:
    return [str(v) for v in series.dropna().unique()]


def _concat(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    if second.empty:
        return first
    return pd.concat([first, second], ignore_index=True)


class _snapshot:
    """A connection in a read-only repeatable-read transaction; failures become one line."""

    def __init__(self, engine: Engine, what: str) -> None:
        self.engine = engine
        self.what = what
        self.conn: Connection | None = None

    def __enter__(self) -> Connection:
        try:
            self.conn = self.engine.connect()
            self.conn.begin()
            for statement in _SESSION_SETUP:
                self.conn.execute(sa.text(statement))
        except DBAPIError as exc:
            self._close()
            raise _extract_error(exc, self.what, self.engine.url) from None
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._close()
        if isinstance(exc, DBAPIError):
            raise _extract_error(exc, self.what, self.engine.url) from None

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None


def _extract_error(exc: DBAPIError, what: str, url: URL) -> ClaimsyncError:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
    return ClaimsyncError(f"extracting from the {what} database at {safe_url(url)} failed: {reason}")
