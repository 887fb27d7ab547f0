"""The write protocol (DESIGN.md "Write protocol"): plan, compare-and-set apply, confirm, recover, revert.

The targets (OA, expense) and the state database are three databases, so no transaction
spans them. The effect is still exactly once because every step is safe to repeat:

1. **Plan** — :func:`store_plan` stores every :class:`PlannedWrite` (before-image, after-image)
   in ``claimsync.planned_write`` under the run id, grouped into ``claimsync.write_batch``
   rows, in one state transaction, before anything is written.
2. **Apply** — :func:`apply_plan` takes each unconfirmed batch of a target: the batch's rows
   are streamed state → target with COPY into a temporary table, then ONE set-based
   statement per operation does a compare-and-set: ``UPDATE … FROM tmp WHERE key = tmp.key
   AND (cols) IS NOT DISTINCT FROM (tmp's before-image)`` or ``INSERT … SELECT … ON CONFLICT
   DO NOTHING``, with RETURNING to learn which rows applied. Claims' ``flow_log`` rows are
   written by the same statement, so they exist exactly when the change does.
3. **Confirm** — in one state transaction: the rows become ``applied`` (with applied_at and
   applied_by) or ``conflict``/``deferred``, the batch becomes ``confirmed`` with its counts,
   and every conflict becomes a ``write_conflict`` exception in the ledger.
4. **Recover** — a batch that was applied but not confirmed (the process died in between)
   is simply applied again: a row equal to its after-image counts as applied (it was), a
   row equal to its before-image is applied now, anything else is a conflict. Each batch
   notes its first attempt in the state DB before writing, so a row found at its
   after-image on a *first* attempt (someone else made the same change) is ``unchanged``,
   not audited as claimsync's.
5. **Revert** — :func:`revert_run` runs the same machinery with the images swapped: a value
   goes back to its before-image only where it still holds the after-image.

The compare covers the columns a write changes (and, for reverting an inserted row, the
row's change cursor): a person's edit to a column claimsync does not write is not a
conflict, because no plan depends on it. Every expense update also moves the row's change
cursor (``update_time``) so other consumers of the expense system see the change. The OA
form table has no cursor, and claimsync does not touch ``workflow_requestbase``'s
``lastoperatedate``/``lastoperatetime``: they mean "last workflow action" (with its
operator) to OA users, claimsync's own writes need no re-extraction (the next run reads the
OA request by key whenever its expense claim changes), and moving them would make every
write echo back into the next incremental extract.

Images are JSON: Decimal amounts as strings, timestamps ISO 8601 with their offset, dates
``YYYY-MM-DD``. Personal data (cellphone) is kept in the state DB because a revert needs
it; it is masked wherever an image is shown.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final, Literal, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from claimsync.config import SourceMapping
from claimsync.db import qualified, quote_ident, raw_cursor
from claimsync.errors import ClaimsyncError
from claimsync.masking import mask_record
from claimsync.rules import ExceptionCode

DEFAULT_BATCH_SIZE: Final = 5000
TARGETS: Final = ("expense", "oa")
Operation = Literal["insert", "update"]

# --- what a write is ---------------------------------------------------------------------


class PlannedWrite(NamedTuple):
    """One change to one row of a target, planned before anything is written.

    ``before`` holds the values of the written columns as read (None for an insert);
    ``after`` the values to write. Keys are the field names of the table's
    :class:`TableSpec` (for references such as a staff's department, the referenced code).
    ``note`` says why, in one sentence; it becomes the flow_log comment of a claim.
    ``depends_on`` names another write of the same run (:attr:`ref`) that must be applied
    first; if it was not, this one is deferred (OA ``bxdh`` waits for the claim it names).
    """

    target: str
    table: str
    operation: Operation
    record_key: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any]
    note: str = ""
    depends_on: str | None = None

    @property
    def business_key(self) -> str:
        return write_business_key(self.target, self.table, self.record_key)

    @property
    def ref(self) -> str:
        """``target:table:record_key``: how another write names this one in ``depends_on``."""
        return f"{self.target}:{self.table}:{self.record_key}"


def write_business_key(target: str, table: str, record_key: str) -> str:
    """The identity of a write_conflict exception (claimsync.rules)."""
    return f"write:{target}:{table}:{record_key}"


def image_json(image: Mapping[str, Any] | None) -> str | None:
    """An image as canonical JSON: Decimal → string, datetime → ISO with offset, date → ISO."""
    if image is None:
        return None
    return json.dumps(image, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_json_value)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"timestamp {value!r} has no offset: images hold tz-aware times only")
        return value.isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot put {type(value).__name__} into a write image")


# --- where a write goes: the writable tables of each target ------------------------------


@dataclass(frozen=True)
class Ref:
    """A field that names another row by its code; the column stores that row's id."""

    table: str
    column: str


@dataclass(frozen=True)
class Field:
    name: str
    sql_type: str
    column: str | None = None  # the physical column (defaults to ``name``)
    ref: Ref | None = None
    writable: bool = True  # False: compared only (the change cursor)
    insert_only: bool = False  # set when the row is created, never updated

    @property
    def physical(self) -> str:
        return self.ref.column if self.ref is not None else (self.column or self.name)


@dataclass(frozen=True)
class Lines:
    """Child rows written with their parent (a claim's lines), from the image's ``lines`` list."""

    table: str
    parent_column: str
    columns: tuple[tuple[str, str], ...]  # (column, sql type), after id and parent


@dataclass(frozen=True)
class TableSpec:
    target: str
    schema: str
    table: str
    key: str  # natural key column; record_key is its text
    key_type: str
    fields: tuple[Field, ...]
    cursor: str | None = None  # change cursor moved on every write
    insertable: bool = False
    soft_delete: Mapping[str, Any] | None = None  # how a revert undoes an insert (no DELETE grant)
    lines: Lines | None = None
    flow_log: bool = False  # one flow_log row per changed claim

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


def table_specs(mapping: SourceMapping) -> dict[tuple[str, str], TableSpec]:
    """The tables claimsync writes, in apply order (parents before children), keyed (target, table)."""
    exp = mapping.expense_schema
    cursor = Field("update_time", "timestamptz", writable=False)
    specs = [
        TableSpec(
            "expense", exp, "department", "code", "varchar",
            (
                Field("id", "varchar", insert_only=True),
                Field("code", "varchar", insert_only=True),
                Field("name", "varchar"),
                Field("parent_code", "varchar", ref=Ref("department", "parent_id")),
                Field("active", "boolean"),
                cursor,
            ),
            cursor="update_time", insertable=True, soft_delete={"active": False},
        ),
        TableSpec(
            "expense", exp, "staff", "code", "varchar",
            (
                Field("id", "varchar", insert_only=True),
                Field("code", "varchar", insert_only=True),
                Field("name", "varchar"),
                Field("department_code", "varchar", ref=Ref("department", "department_id")),
                Field("email", "varchar"),
                Field("cellphone", "varchar"),
                Field("active", "boolean"),
                cursor,
            ),
            cursor="update_time", insertable=True, soft_delete={"active": False},
        ),
        TableSpec(
            "expense", exp, "flow", "code", "varchar",
            (
                Field("id", "varchar", insert_only=True),
                Field("code", "varchar", insert_only=True),
                Field("form_type", "varchar", insert_only=True),
                Field("title", "varchar", insert_only=True),
                Field("submitter_code", "varchar", ref=Ref("staff", "submitter_id"), insert_only=True),
                Field("department_code", "varchar", ref=Ref("department", "department_id"), insert_only=True),
                Field("sum_amount", "numeric", insert_only=True),
                Field("pay_money", "numeric", insert_only=True),
                Field("currency", "char(3)", insert_only=True),
                Field("oa_request_id", "integer", insert_only=True),
                Field("create_time", "timestamptz", insert_only=True),
                Field("submit_time", "timestamptz", insert_only=True),
                Field("state", "varchar"),
                Field("approve_time", "timestamptz"),
                cursor,
            ),
            cursor="update_time", insertable=True, soft_delete={"state": "nullify"},
            lines=Lines(
                "flow_detail", "flow_id",
                (
                    ("seq", "integer"), ("fee_type", "varchar"), ("amount", "numeric"),
                    ("invoice_code", "varchar"), ("invoice_number", "varchar"), ("invoice_date", "date"),
                    ("remark", "varchar"),
                ),
            ),
            flow_log=True,
        ),
        TableSpec(
            "oa", mapping.oa_schema, mapping.oa_form_table, "requestid", "integer",
            (
                Field("bxdh", "varchar"),
                Field("fkzt", "varchar"),
                Field("fkrq", "char(10)"),
                Field("pzh", "varchar"),
            ),
        ),
    ]  # fmt: skip
    return {(s.target, s.table): s for s in specs}


def _spec_for(specs: Mapping[tuple[str, str], TableSpec], target: str, table: str) -> TableSpec:
    try:
        return specs[(target, table)]
    except KeyError:
        raise ClaimsyncError(f"claimsync does not write {target} table {table!r}") from None


def validate_writes(writes: Sequence[PlannedWrite], mapping: SourceMapping) -> None:
    """Refuse a plan that names an unknown table or field, or writes a field the table does not allow."""
    specs = table_specs(mapping)
    # Per table: fields an image may name, fields an insert may add (its lines), fields no update may set.
    rules = {
        key: (
            spec.names,
            spec.names | ({"lines"} if spec.lines is not None else set()),
            frozenset(f.name for f in spec.fields if f.insert_only or not f.writable),
        )
        for key, spec in specs.items()
    }
    seen: set[tuple[str, str, str]] = set()
    for w in writes:
        if (w.target, w.table) not in rules:
            _spec_for(specs, w.target, w.table)  # raises: an unknown table
        names, allowed, fixed_names = rules[(w.target, w.table)]
        identity = (w.target, w.table, w.record_key)
        if identity in seen:
            raise ClaimsyncError(f"the plan writes {w.business_key} twice")
        seen.add(identity)
        after = w.after.keys()
        if not after <= allowed or (w.before is not None and not w.before.keys() <= names):
            unknown = set(after) - allowed | set(w.before or {}) - names
            raise ClaimsyncError(f"{w.business_key}: unknown fields {sorted(unknown)}")
        if w.operation == "insert":
            if not specs[(w.target, w.table)].insertable or w.before is not None:
                raise ClaimsyncError(f"{w.business_key}: claimsync does not insert into {w.table}")
        else:
            if w.before is None or w.before.keys() != after:
                raise ClaimsyncError(f"{w.business_key}: an update needs a before-image of exactly its fields")
            fixed = sorted(after & fixed_names)
            if fixed:
                raise ClaimsyncError(f"{w.business_key}: fields {fixed} are set only when the row is created")


# --- SQL: one adapter, every statement here ---------------------------------------------

_TMP_DDL: Final = (
    "CREATE TEMPORARY TABLE cs_write (pw_id bigint PRIMARY KEY, op text NOT NULL, k text NOT NULL,"
    " b jsonb NULL, a jsonb NOT NULL, note text NOT NULL) ON COMMIT DROP"
)
_TMP_COLUMNS: Final = ("pw_id", "op", "k", "b", "a", "note")


class _Sql:
    """SQL text for one table spec, identifiers quoted for the connected dialect."""

    def __init__(self, conn: Connection, spec: TableSpec) -> None:
        self.spec = spec
        self.tbl = qualified(conn, spec.schema, spec.table)
        self.schema = spec.schema
        self.conn = conn

    def q(self, name: str) -> str:
        return quote_ident(self.conn, name)

    def ref_table(self, ref: Ref) -> str:
        return qualified(self.conn, self.schema, ref.table)

    @staticmethod
    def lit(name: str) -> str:
        # Field names are fixed in table_specs (plain identifiers), never user input.
        assert name.replace("_", "").isalnum()
        return f"'{name}'"

    def val(self, f: Field, image: str) -> str:
        return f"CAST(s.{image} ->> {self.lit(f.name)} AS {f.sql_type})"

    def read(self, f: Field) -> str:
        """The field's current value on target row ``t`` (a reference reads back the code)."""
        if f.ref is not None:
            return (
                f"(SELECT r.{self.q('code')} FROM {self.ref_table(f.ref)} r"
                f" WHERE r.{self.q('id')} = t.{self.q(f.ref.column)})"
            )
        return f"t.{self.q(f.physical)}"

    def written(self, f: Field, image: str) -> str:
        """The value to store for the field from image ``image`` (a reference resolves code → id)."""
        if f.ref is None:
            return self.val(f, image)
        by_code = (
            f"(SELECT r.{self.q('id')} FROM {self.ref_table(f.ref)} r"
            f" WHERE r.{self.q('code')} = s.{image} ->> {self.lit(f.name)})"
        )
        if f.ref.table == self.spec.table:
            # A parent created in the same batch: its id is in its own after-image.
            same_batch = (
                f"(SELECT x.a ->> 'id' FROM pg_temp.cs_write x"
                f" WHERE x.op = 'insert' AND x.k = s.{image} ->> {self.lit(f.name)})"
            )
            return f"COALESCE({by_code}, {same_batch})"
        return by_code

    def matches(self, image: str, fields: Iterable[Field]) -> str:
        """Every field present in the image equals the row's current value (NULL equals NULL)."""
        parts = [
            f"(NOT (s.{image} ? {self.lit(f.name)}) OR {self.read(f)} IS NOT DISTINCT FROM {self.val(f, image)})"
            for f in fields
        ]
        return "(" + " AND ".join(parts) + ")" if parts else "true"

    def resolvable(self, image: str, fields: Iterable[Field]) -> str:
        """Every reference in the image names a row that exists (or is null)."""
        parts = []
        for f in fields:
            if f.ref is None:
                continue
            key = f"s.{image} ->> {self.lit(f.name)}"
            parts.append(f"({key} IS NULL OR {self.written(f, image)} IS NOT NULL)")
        return "(" + " AND ".join(parts) + ")" if parts else "true"

    def found(self) -> str:
        pairs = ", ".join(f"{self.lit(f.name)}, {self.read(f)}" for f in self.spec.fields)
        return f"jsonb_build_object({pairs})"

    def key_match(self) -> str:
        return f"t.{self.q(self.spec.key)} = CAST(s.k AS {self.spec.key_type})"

    def cursor_out(self) -> str:
        return f"t.{self.q(self.spec.cursor)}" if self.spec.cursor else "CAST(NULL AS timestamptz)"

    def _classify(self, op: str) -> str:
        """The rows of ``op`` the statement did not change, with what the target holds now."""
        spec = self.spec
        compared = list(spec.fields)
        present = f"t.{self.q(spec.key)} IS NOT NULL"
        at_before = f"NOT ({present})" if op == "insert" else f"{present} AND {self.matches('b', compared)}"
        # Usually every row applied: find the rest first, and look only those up on the target.
        return (
            f", rest AS MATERIALIZED (SELECT s.* FROM pg_temp.cs_write s WHERE s.op = '{op}'"
            f" AND NOT EXISTS (SELECT 1 FROM done d WHERE d.pw_id = s.pw_id))"
            f" SELECT s.pw_id, {present} AS present, {present} AND {self.matches('a', compared)} AS at_after,"
            f" {at_before} AS at_before, {self.resolvable('a', compared)} AS resolvable,"
            f" CASE WHEN {present} THEN {self.found()} END AS found, {self.cursor_out()} AS cursor"
            f" FROM rest s LEFT JOIN {self.tbl} t ON {self.key_match()}"
        )

    def _log(self) -> str:
        if not self.spec.flow_log:
            return ""
        log = qualified(self.conn, self.schema, "flow_log")
        return (
            f", logged AS (INSERT INTO {log} (flow_id, action, operator_id, time, comment)"
            " SELECT d.row_id, 'claimsync.sync', NULL, now(), :comment_prefix || d.note FROM done d)"
        )

    def update(self) -> str:
        spec = self.spec
        writable = [f for f in spec.fields if f.writable and not f.insert_only]
        sets = [
            f"{self.q(f.physical)} = CASE WHEN s.a ? {self.lit(f.name)} THEN {self.written(f, 'a')}"
            f" ELSE t.{self.q(f.physical)} END"
            for f in writable
        ]
        if spec.cursor:
            sets.append(f"{self.q(spec.cursor)} = now()")
        row_id = f"t.{self.q('id')}" if spec.flow_log else "NULL"
        return (
            f"WITH done AS (UPDATE {self.tbl} AS t SET {', '.join(sets)}"
            f" FROM pg_temp.cs_write s WHERE s.op = 'update' AND {self.key_match()}"
            f" AND {self.matches('b', spec.fields)} AND {self.resolvable('a', spec.fields)}"
            f" RETURNING s.pw_id, {row_id} AS row_id, s.note){self._log()}" + self._classify("update")
        )

    def insert(self) -> str:
        spec = self.spec
        fields = [f for f in spec.fields if f.writable]
        columns = [self.q(f.physical) for f in fields]
        values = [self.written(f, "a") for f in fields]
        if spec.cursor:
            columns.append(self.q(spec.cursor))
            values.append("now()")
        key = self.q(spec.key)
        lines = ""
        if spec.lines is not None:
            ln = spec.lines
            line_tbl = qualified(self.conn, self.schema, ln.table)
            cols = ", ".join(self.q(c) for c, _ in ln.columns)
            record = ", ".join(f"{self.q(c)} {t}" for c, t in ln.columns)
            lines = (
                f", lined AS (INSERT INTO {line_tbl} ({self.q('id')}, {self.q(ln.parent_column)}, {cols})"
                f" SELECT d.row_id || '-' || l.{self.q('seq')}, d.row_id, {cols}"
                f" FROM done d CROSS JOIN LATERAL jsonb_to_recordset(COALESCE(d.a -> 'lines', '[]')) AS l({record}))"
            )
        return (
            f"WITH ins AS (INSERT INTO {self.tbl} AS t ({', '.join(columns)})"
            f" SELECT {', '.join(values)} FROM pg_temp.cs_write s"
            f" WHERE s.op = 'insert' AND {self.resolvable('a', fields)}"
            f" ON CONFLICT DO NOTHING RETURNING t.{key} AS k, t.{self.q('id')} AS row_id),"
            f" done AS (SELECT s.pw_id, ins.row_id, s.a, s.note FROM ins"
            f" JOIN pg_temp.cs_write s ON s.op = 'insert' AND s.k = CAST(ins.k AS text))"
            f"{lines}{self._log()}" + self._classify("insert")
        )


# --- plan --------------------------------------------------------------------------------


def store_plan(
    state_engine: Engine,
    run_id: str,
    writes: Sequence[PlannedWrite],
    *,
    mapping: SourceMapping | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:
    """Store the plan under ``run_id`` in one transaction; return the number of writes stored.

    A run has one plan: if ``run_id`` already has one, nothing is stored and its size is
    returned (a rerun of the run reuses the plan it made). Batches are numbered per
    (target, table) in the order of ``writes``.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    validate_writes(writes, mapping or SourceMapping())
    counters: Counter[tuple[str, str]] = Counter()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # None → an unquoted empty field → NULL
    for w in writes:
        n = counters[(w.target, w.table)]
        counters[(w.target, w.table)] += 1
        writer.writerow(
            (run_id, w.target, w.table, w.operation, w.record_key, n // batch_size, image_json(w.before),
             image_json(w.after), w.note, w.depends_on)
        )  # fmt: skip
    data = io.BytesIO(buffer.getvalue().encode("utf-8"))
    with state_engine.begin() as conn:
        conn.execute(sa.text("SELECT 1 FROM claimsync.sync_run WHERE run_id = :r FOR UPDATE"), {"r": run_id})
        existing = conn.execute(
            sa.text("SELECT count(*) FROM claimsync.planned_write WHERE run_id = :r"), {"r": run_id}
        ).scalar_one()
        has_batches = conn.execute(
            sa.text("SELECT EXISTS (SELECT 1 FROM claimsync.write_batch WHERE run_id = :r)"), {"r": run_id}
        ).scalar_one()
        if existing or has_batches or _plan_marked(conn, run_id):
            return int(existing)
        with raw_cursor(conn) as cursor:
            cursor.copy_expert(
                "COPY claimsync.planned_write (run_id, target, table_name, operation, record_key, batch_no,"
                " before_image, after_image, note, depends_on) FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL (note))",
                data,
            )
        conn.execute(
            sa.text(
                "INSERT INTO claimsync.write_batch (run_id, target, table_name, batch_no)"
                " SELECT DISTINCT run_id, target, table_name, batch_no FROM claimsync.planned_write"
                " WHERE run_id = :r"
            ),
            {"r": run_id},
        )
        # Marks "this run has a plan" even when it is empty, so a rerun does not plan again.
        conn.execute(
            sa.text(
                "UPDATE claimsync.sync_run"
                " SET summary = summary || jsonb_build_object('planned_writes', CAST(:n AS int)) WHERE run_id = :r"
            ),
            {"r": run_id, "n": len(writes)},
        )
    return len(writes)


def _plan_marked(conn: Connection, run_id: str) -> bool:
    return bool(
        conn.execute(
            sa.text("SELECT summary ? 'planned_writes' FROM claimsync.sync_run WHERE run_id = :r"), {"r": run_id}
        ).scalar()
    )


def has_plan(state_engine: Engine, run_id: str) -> bool:
    """True once :func:`store_plan` has stored a plan (possibly empty) for ``run_id``."""
    with state_engine.connect() as conn:
        return _plan_marked(conn, run_id)


@dataclass(frozen=True)
class StoredWrite:
    """A planned write as the state DB holds it (images as stored JSON values)."""

    id: int
    target: str
    table: str
    operation: str
    record_key: str
    before: dict[str, Any] | None
    after: dict[str, Any]
    note: str
    status: str
    detail: str | None
    applied_at: datetime | None
    applied_by: str | None


def load_plan(state_engine: Engine, run_id: str, *, status: str | None = None) -> list[StoredWrite]:
    """The writes stored for ``run_id`` (optionally only those in ``status``), in plan order."""
    query = (
        "SELECT id, target, table_name, operation, record_key, before_image, after_image, note, status, detail,"
        " applied_at, applied_by FROM claimsync.planned_write WHERE run_id = :r"
        + (" AND status = :s" if status else "")
        + " ORDER BY id"
    )
    with state_engine.connect() as conn:
        rows = conn.execute(sa.text(query), {"r": run_id, "s": status}).all()
    return [StoredWrite(*row) for row in rows]


def plan_counts(state_engine: Engine, run_id: str) -> dict[str, int]:
    """``{'expense.flow.update.applied': n, …}`` for ``run_id``: the shape of a plan and its outcome."""
    with state_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT target, table_name, operation, status, count(*) FROM claimsync.planned_write"
                " WHERE run_id = :r GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
            ),
            {"r": run_id},
        ).all()
    return {f"{t}.{tb}.{op}.{st}": int(n) for t, tb, op, st, n in rows}


# --- apply, confirm, recover --------------------------------------------------------------


@dataclass
class ApplySummary:
    """What applying one target's plan did (counts over the batches this call processed)."""

    target: str
    batches: int = 0
    applied: int = 0  # written now
    recovered: int = 0  # found at their after-image: written by an earlier, unconfirmed attempt
    unchanged: int = 0  # found at their after-image on a first attempt: nothing to write
    conflicts: int = 0
    deferred: int = 0
    conflict_keys: list[str] = field(default_factory=list)
    target_seconds: float = 0.0  # inside the target transactions (COPY in, compare-and-set, commit)
    state_seconds: float = 0.0  # reading the batches from and confirming them in the state DB

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "batches": self.batches,
            "applied": self.applied,
            "recovered": self.recovered,
            "unchanged": self.unchanged,
            "conflicts": self.conflicts,
            "deferred": self.deferred,
            "target_seconds": round(self.target_seconds, 3),
            "state_seconds": round(self.state_seconds, 3),
        }


@dataclass(frozen=True)
class _Outcome:
    """One row the statement did not change, as the target holds it now."""

    pw_id: int
    present: bool
    at_after: bool
    at_before: bool
    resolvable: bool
    found: dict[str, Any] | None
    cursor: datetime | None


def _copy_rows(source: Connection, query: str, params: Mapping[str, Any], target: Connection) -> None:
    """Stream the rows of ``query`` (in _TMP_COLUMNS order) from the state DB into cs_write on the target.

    The temporary table is deliberately not ANALYZEd: without statistics the planner sizes it
    from its pages and probes the target's key index row by row, which is right for a batch
    that is a small part of the table; with them it was seen merge-joining along the whole
    key index of a 1M-row table when a batch's keys happened to be contiguous (5× slower).
    """
    with raw_cursor(source) as cursor:
        bound = cursor.mogrify(query, dict(params)).decode()
        buffer = io.BytesIO()
        cursor.copy_expert(f"COPY ({bound}) TO STDOUT WITH (FORMAT csv)", buffer)
    buffer.seek(0)
    target.execute(sa.text(_TMP_DDL))
    with raw_cursor(target) as cursor:
        cursor.copy_expert(f"COPY pg_temp.cs_write ({', '.join(_TMP_COLUMNS)}) FROM STDIN WITH (FORMAT csv)", buffer)


def _run_statements(
    target: Connection, spec: TableSpec, comment_prefix: str, operations: Iterable[str]
) -> tuple[datetime, list[_Outcome]]:
    """Apply the batch in cs_write; return the transaction time and the rows left unchanged."""
    now = target.execute(sa.text("SELECT now()")).scalar_one()
    sql = _Sql(target, spec)
    outcomes: list[_Outcome] = []
    for op in operations:
        statement = sql.insert() if op == "insert" else sql.update()
        result = target.execute(sa.text(statement), {"comment_prefix": comment_prefix})
        outcomes.extend(_Outcome(*row) for row in result.all())
    return now, outcomes


_PLANNED_ROWS: Final = (
    "SELECT id, operation, record_key, before_image::text, after_image::text, note"
    " FROM claimsync.planned_write WHERE run_id = %(run_id)s AND target = %(target)s"
    " AND table_name = %(table)s AND batch_no = %(batch)s AND status = 'planned' ORDER BY id"
)


def apply_plan(
    target_engine: Engine,
    state_engine: Engine,
    run_id: str,
    target: str,
    *,
    mapping: SourceMapping | None = None,
    applied_by: str = "claimsync",
    as_of: datetime | None = None,
) -> ApplySummary:
    """Apply every unconfirmed batch of ``run_id`` for ``target``; confirm each in the state DB.

    Safe to call again at any time: confirmed batches are skipped and an unconfirmed batch
    is recovered (see the module docstring). The caller holds the flow's lock.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}")
    specs = table_specs(mapping or SourceMapping())
    order = [key for key in specs if key[0] == target]
    summary = ApplySummary(target)
    with state_engine.connect() as conn:
        run = conn.execute(
            sa.text("SELECT as_of, dry_run FROM claimsync.sync_run WHERE run_id = :r"), {"r": run_id}
        ).one_or_none()
        if run is None:
            raise ClaimsyncError(f"no run {run_id!r} in the state database")
        if run.dry_run:
            raise ClaimsyncError(f"run {run_id} is a dry run: its plan is never applied")
        batches = conn.execute(
            sa.text(
                "SELECT table_name, batch_no FROM claimsync.write_batch"
                " WHERE run_id = :r AND target = :t AND status = 'planned'"
            ),
            {"r": run_id, "t": target},
        ).all()
    as_of = as_of or run.as_of
    rank = {key[1]: i for i, key in enumerate(order)}
    unknown = {table for table, _ in batches if table not in rank}
    if unknown:
        raise ClaimsyncError(f"run {run_id} plans writes to {target} tables claimsync does not know: {sorted(unknown)}")
    for table, batch_no in sorted(batches, key=lambda b: (rank[b[0]], b[1])):
        spec = specs[(target, table)]
        params = {"run_id": run_id, "target": target, "table": table, "batch": batch_no}
        started = time.perf_counter()
        deferred_now, first_attempt = _begin_batch(state_engine, params)
        summary.deferred += deferred_now
        with state_engine.connect() as state_conn, target_engine.begin() as target_conn:
            _copy_rows(state_conn, _PLANNED_ROWS, params, target_conn)
            copied = time.perf_counter()
            ops = [
                op
                for (op,) in target_conn.execute(sa.text("SELECT DISTINCT op FROM pg_temp.cs_write ORDER BY op")).all()
            ]  # 'insert' sorts before 'update': a row created here can be referenced by an update
            now, outcomes = _run_statements(target_conn, spec, f"claimsync run {run_id}: ", ops)
        committed = time.perf_counter()
        _confirm_batch(
            state_engine,
            spec,
            run_id=run_id,
            batch_no=batch_no,
            now=now,
            outcomes=outcomes,
            applied_by=applied_by,
            as_of=as_of,
            summary=summary,
            first_attempt=first_attempt,
        )
        summary.batches += 1
        summary.target_seconds += committed - copied
        summary.state_seconds += (copied - started) + (time.perf_counter() - committed)
    return summary


def _begin_batch(state_engine: Engine, batch: Mapping[str, Any]) -> tuple[int, bool]:
    """Before the batch's target transaction: note the attempt, and defer the writes whose
    ``depends_on`` write was not applied (refuse if it is still pending).

    Returns (writes deferred, whether this is the batch's first attempt).
    """
    with state_engine.begin() as conn:
        attempted = conn.execute(
            sa.text(
                "SELECT attempted_at FROM claimsync.write_batch WHERE run_id = :run_id AND target = :target"
                " AND table_name = :table AND batch_no = :batch FOR UPDATE"
            ),
            batch,
        ).scalar()
        if attempted is None:
            conn.execute(
                sa.text(
                    "UPDATE claimsync.write_batch SET attempted_at = now() WHERE run_id = :run_id"
                    " AND target = :target AND table_name = :table AND batch_no = :batch"
                ),
                batch,
            )
        pending = conn.execute(
            sa.text(
                "SELECT w.depends_on FROM claimsync.planned_write w JOIN claimsync.planned_write d"
                " ON d.run_id = w.run_id AND d.target || ':' || d.table_name || ':' || d.record_key = w.depends_on"
                " WHERE w.run_id = :run_id AND w.target = :target AND w.table_name = :table AND w.batch_no = :batch"
                " AND w.status = 'planned' AND w.depends_on IS NOT NULL AND d.status = 'planned' LIMIT 1"
            ),
            batch,
        ).scalar()
        if pending is not None:
            raise ClaimsyncError(
                f"run {batch['run_id']}: {batch['target']} writes wait for {pending}, which is not applied yet:"
                " apply the expense plan before the OA plan"
            )
        return conn.execute(
            sa.text(
                "UPDATE claimsync.planned_write w SET status = 'deferred',"
                " detail = 'deferred: needs ' || w.depends_on || ', which was not applied ('"
                "  || COALESCE(d.status, 'not in this run') || '); a later run retries'"
                " FROM claimsync.planned_write w2 LEFT JOIN claimsync.planned_write d"
                " ON d.run_id = w2.run_id AND d.target || ':' || d.table_name || ':' || d.record_key = w2.depends_on"
                " WHERE w.id = w2.id AND w.run_id = :run_id AND w.target = :target AND w.table_name = :table"
                " AND w.batch_no = :batch AND w.status = 'planned' AND w.depends_on IS NOT NULL"
                " AND (d.id IS NULL OR d.status <> 'applied')"
            ),
            batch,
        ).rowcount, attempted is None


def _describe(spec: TableSpec, image: Mapping[str, Any] | None, found: Mapping[str, Any] | None) -> str:
    """Which fields changed since they were read, masked, in one line."""
    if found is None:
        return f"{spec.target} {spec.table} row no longer exists"
    shown_found = mask_record(found)
    shown_image = mask_record(image or {})
    diffs = [
        f"{name} is {shown_found.get(name)!r} (read as {shown_image.get(name)!r})"
        for name in sorted(image or {})
        if name in shown_found and _norm(found.get(name)) != _norm((image or {}).get(name))
    ]
    return "; ".join(diffs) or "the row changed since it was read"


def _norm(value: Any) -> Any:
    """Loose equality for messages only (the compare itself happens in SQL)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return str(Decimal(str(value)).normalize())
    return str(value).strip()


def _confirm_batch(
    state_engine: Engine,
    spec: TableSpec,
    *,
    run_id: str,
    batch_no: int,
    now: datetime,
    outcomes: Sequence[_Outcome],
    applied_by: str,
    as_of: datetime,
    summary: ApplySummary,
    first_attempt: bool,
) -> None:
    """Mark the batch's rows applied / unchanged / conflict / deferred and the batch confirmed, in one transaction.

    A row found at its after-image was written by an earlier attempt of this batch (applied),
    or, on the batch's first attempt, by someone else (unchanged: nothing written, no audit).
    """
    recovered = [o for o in outcomes if o.at_after]
    deferred = [o for o in outcomes if not o.at_after and o.at_before and not o.resolvable]
    conflicts = [o for o in outcomes if not o.at_after and not (o.at_before and not o.resolvable)]
    by_id = {"run_id": run_id, "target": spec.target, "table": spec.table, "batch": batch_no}
    with state_engine.begin() as conn:
        images = {}
        if conflicts or deferred:
            rows = conn.execute(
                sa.text(
                    "SELECT id, record_key, operation, before_image, after_image FROM claimsync.planned_write"
                    " WHERE id = ANY(:ids)"
                ),
                {"ids": [o.pw_id for o in (*conflicts, *deferred)]},
            ).all()
            images = {row.id: row for row in rows}
        special: list[dict[str, Any]] = [
            *(
                {
                    "id": o.pw_id,
                    "status": "unchanged" if first_attempt else "applied",
                    "detail": "already at its after-image when first applied: nothing written"
                    if first_attempt
                    else "found at its after-image: applied by an earlier attempt of this run",
                    "found": None,
                    "cursor": None if first_attempt else o.cursor,
                }
                for o in recovered
            ),
            *(
                {
                    "id": o.pw_id,
                    "status": "deferred",
                    "detail": _unresolved(spec, images[o.pw_id].after_image),
                    "found": None,
                    "cursor": None,
                }
                for o in deferred
            ),
            *(
                {
                    "id": o.pw_id,
                    "status": "conflict",
                    "detail": _conflict_detail(spec, images[o.pw_id], o),
                    "found": json.dumps(mask_record(o.found), ensure_ascii=False) if o.found is not None else None,
                    "cursor": None,
                }
                for o in conflicts
            ),
        ]
        if special:
            conn.execute(
                sa.text(
                    "UPDATE claimsync.planned_write SET status = :status, detail = :detail,"
                    " found_image = CAST(:found AS jsonb), target_cursor = :cursor,"
                    " applied_at = CASE WHEN :status = 'applied' THEN CAST(:now AS timestamptz) END,"
                    " applied_by = CASE WHEN :status = 'applied' THEN :by END"
                    " WHERE id = :id AND status = 'planned'"
                ),
                [{**row, "now": now, "by": applied_by} for row in special],
            )
        applied_now = conn.execute(
            sa.text(
                "UPDATE claimsync.planned_write SET status = 'applied', applied_at = :now, applied_by = :by,"
                " target_cursor = CASE WHEN :has_cursor THEN CAST(:now AS timestamptz) END"
                " WHERE run_id = :run_id AND target = :target AND table_name = :table AND batch_no = :batch"
                " AND status = 'planned'"
            ),
            {**by_id, "now": now, "by": applied_by, "has_cursor": spec.cursor is not None},
        ).rowcount
        applied_total = applied_now + (0 if first_attempt else len(recovered))
        conn.execute(
            sa.text(
                "UPDATE claimsync.write_batch SET status = 'confirmed', applied_count = :applied,"
                " conflict_count = :conflicts, confirmed_at = now()"
                " WHERE run_id = :run_id AND target = :target AND table_name = :table AND batch_no = :batch"
            ),
            {**by_id, "applied": applied_total, "conflicts": len(conflicts)},
        )
        if conflicts:
            _record_conflicts(conn, run_id, as_of, spec, [(images[o.pw_id], o) for o in conflicts])
        _resolve_conflicts(conn, run_id, as_of, by_id)
    summary.applied += applied_now
    if first_attempt:
        summary.unchanged += len(recovered)
    else:
        summary.recovered += len(recovered)
    summary.deferred += len(deferred)
    summary.conflicts += len(conflicts)
    summary.conflict_keys += [
        write_business_key(spec.target, spec.table, images[o.pw_id].record_key) for o in conflicts
    ]


def _unresolved(spec: TableSpec, after: Mapping[str, Any]) -> str:
    refs = [f"{f.name} {after[f.name]!r}" for f in spec.fields if f.ref is not None and after.get(f.name) is not None]
    return f"deferred: {', '.join(refs) or 'a referenced row'} not on {spec.target} yet; a later run retries"


def _conflict_detail(spec: TableSpec, row: Any, outcome: _Outcome) -> str:
    what = f"{spec.target} {spec.table} {row.record_key}"
    if row.operation == "insert":
        if outcome.present:
            return f"{what}: a different row already has this key ({_describe(spec, row.after_image, outcome.found)})"
        return f"{what}: not created, another row already holds one of its unique values"
    if not outcome.present:
        return f"{what}: the row no longer exists"
    return f"{what} changed since it was read: {_describe(spec, row.before_image, outcome.found)}; not overwritten"


def _identity(spec: TableSpec, row: Any) -> dict[str, Any]:
    """oa_request_id / claim_code / employee_code of a write, for the exception's columns."""
    after = row.after_image or {}
    ident: dict[str, Any] = {"oa_request_id": None, "claim_code": None, "employee_code": None}
    if spec.target == "oa":
        ident["oa_request_id"] = int(row.record_key)
        ident["claim_code"] = after.get("bxdh")
    elif spec.table == "flow":
        ident["claim_code"] = row.record_key
        ident["oa_request_id"] = after.get("oa_request_id")
    elif spec.table == "staff":
        ident["employee_code"] = row.record_key
    return ident


def _record_conflicts(
    conn: Connection, run_id: str, as_of: datetime, spec: TableSpec, items: Sequence[tuple[Any, _Outcome]]
) -> None:
    """Each conflict becomes (or reopens) a write_conflict exception in the ledger, linked to the run."""
    code = ExceptionCode.WRITE_CONFLICT
    for row, outcome in items:
        params = {
            "code": code.value,
            "severity": code.severity.value,
            "key": write_business_key(spec.target, spec.table, row.record_key),
            "detail": _conflict_detail(spec, row, outcome),
            "as_of": as_of,
            "run_id": run_id,
            **_identity(spec, row),
        }
        previous = conn.execute(
            sa.text("SELECT id, status FROM claimsync.recon_exception WHERE code = :code AND business_key = :key"),
            params,
        ).one_or_none()
        exception_id = conn.execute(
            sa.text(
                "INSERT INTO claimsync.recon_exception AS e (code, business_key, severity, status, oa_request_id,"
                " claim_code, employee_code, detail, first_seen, last_seen, first_run_id, last_run_id)"
                " VALUES (:code, :key, :severity, 'open', :oa_request_id, :claim_code, :employee_code, :detail,"
                " :as_of, :as_of, :run_id, :run_id)"
                " ON CONFLICT (code, business_key) DO UPDATE SET detail = EXCLUDED.detail,"
                " status = CASE WHEN e.status = 'resolved' THEN 'open' ELSE e.status END,"
                " resolved_at = CASE WHEN e.status = 'resolved' THEN NULL ELSE e.resolved_at END,"
                " last_seen = GREATEST(e.last_seen, EXCLUDED.last_seen), last_run_id = EXCLUDED.last_run_id"
                " RETURNING e.id"
            ),
            params,
        ).scalar_one()
        if previous is not None and previous.status == "resolved":
            conn.execute(
                sa.text(
                    "INSERT INTO claimsync.recon_exception_event (exception_id, action, from_status, to_status,"
                    " actor, note, run_id) VALUES (:id, 'reopened', 'resolved', 'open', 'claimsync', :note, :run_id)"
                ),
                {"id": exception_id, "note": f"run {run_id}", "run_id": run_id},
            )
        conn.execute(
            sa.text(
                "INSERT INTO claimsync.recon_run_exception (run_id, exception_id, severity, detail)"
                " VALUES (:run_id, :id, :severity, :detail)"
                " ON CONFLICT (run_id, exception_id) DO UPDATE SET detail = EXCLUDED.detail"
            ),
            {"run_id": run_id, "id": exception_id, "severity": params["severity"], "detail": params["detail"]},
        )


def _resolve_conflicts(conn: Connection, run_id: str, as_of: datetime, batch: Mapping[str, Any]) -> None:
    """A write applied now resolves the write_conflict an earlier run raised for the same record."""
    pending = conn.execute(
        sa.text(
            "SELECT EXISTS (SELECT 1 FROM claimsync.recon_exception"
            " WHERE status IN ('open', 'acknowledged') AND code = 'write_conflict')"
        )
    ).scalar()
    if not pending:
        return
    conn.execute(
        sa.text(
            "WITH keys AS (SELECT 'write:' || target || ':' || table_name || ':' || record_key AS business_key"
            "   FROM claimsync.planned_write WHERE run_id = :run_id AND target = :target AND table_name = :table"
            "   AND batch_no = :batch AND status = 'applied'),"
            " open AS (SELECT e.id, e.status FROM claimsync.recon_exception e JOIN keys"
            "   ON e.code = 'write_conflict' AND e.business_key = keys.business_key"
            "   WHERE e.status IN ('open', 'acknowledged') AND e.last_run_id <> :run_id FOR UPDATE OF e),"
            " resolved AS (UPDATE claimsync.recon_exception e SET status = 'resolved', resolved_at = :as_of"
            "   FROM open WHERE e.id = open.id RETURNING e.id)"
            " INSERT INTO claimsync.recon_exception_event (exception_id, action, from_status, to_status, actor,"
            "   note, run_id)"
            " SELECT r.id, 'auto_resolved', o.status, 'resolved', 'claimsync', :note, :run_id"
            " FROM resolved r JOIN open o ON o.id = r.id"
        ),
        {**batch, "as_of": as_of, "note": f"written by run {run_id}"},
    )


def resolve_stale_conflicts(state_engine: Engine, run_id: str, as_of: datetime) -> int:
    """After a full run: a write_conflict whose record the run no longer needed to write is resolved.

    A full run plans every difference there is; a record it does not plan to write holds
    what both systems agree on, so the conflict a person was asked about has gone.
    """
    with state_engine.begin() as conn:
        return conn.execute(
            sa.text(
                "WITH stale AS (SELECT e.id, e.status FROM claimsync.recon_exception e"
                "   WHERE e.code = 'write_conflict' AND e.status IN ('open', 'acknowledged')"
                "   AND e.last_run_id <> :run_id AND e.last_seen <= :as_of"
                "   AND NOT EXISTS (SELECT 1 FROM claimsync.planned_write w WHERE w.run_id = :run_id"
                "     AND 'write:' || w.target || ':' || w.table_name || ':' || w.record_key = e.business_key)"
                "   FOR UPDATE),"
                " resolved AS (UPDATE claimsync.recon_exception e SET status = 'resolved', resolved_at = :as_of"
                "   FROM stale WHERE e.id = stale.id RETURNING e.id)"
                " INSERT INTO claimsync.recon_exception_event (exception_id, action, from_status, to_status, actor,"
                "   note, run_id)"
                " SELECT r.id, 'auto_resolved', s.status, 'resolved', 'claimsync', :note, :run_id"
                " FROM resolved r JOIN stale s ON s.id = r.id"
            ),
            {"run_id": run_id, "as_of": as_of, "note": f"full run {run_id} found nothing left to write"},
        ).rowcount


def unconfirmed_batches(state_engine: Engine, run_id: str, target: str | None = None) -> int:
    with state_engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM claimsync.write_batch WHERE run_id = :r AND status = 'planned'"
                    " AND (CAST(:t AS text) IS NULL OR target = :t)"
                ),
                {"r": run_id, "t": target},
            ).scalar_one()
        )


def recover(
    target_engines: Mapping[str, Engine],
    state_engine: Engine,
    run_id: str,
    *,
    mapping: SourceMapping | None = None,
    applied_by: str = "claimsync",
) -> dict[str, ApplySummary]:
    """Finish a run that died before confirming all its batches: apply what is unconfirmed, per target.

    The same as :func:`apply_plan` for each target that still has unconfirmed batches;
    named for what an operator does after a crash.
    """
    return {
        target: apply_plan(engine, state_engine, run_id, target, mapping=mapping, applied_by=applied_by)
        for target, engine in target_engines.items()
        if unconfirmed_batches(state_engine, run_id, target)
    }


# --- revert -------------------------------------------------------------------------------


@dataclass
class RevertSummary:
    run_id: str
    reverted: int = 0
    refused: int = 0  # the value is no longer the after-image: left as it is, reported
    refused_keys: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "reverted": self.reverted, "refused": self.refused}


# The revert of a write, as a compare-and-set update: compare the after-image, write the
# before-image. An inserted row cannot be deleted (the writer role has no DELETE): it is
# voided / deactivated, and only if nobody touched it since (its change cursor is unchanged).
_REVERT_ROWS: Final = (
    "SELECT id, 'update', record_key,"
    " CASE WHEN operation = 'update' THEN after_image::text"
    "      ELSE ((after_image - 'lines') || jsonb_build_object('update_time', target_cursor))::text END,"
    " CASE WHEN operation = 'update' THEN before_image::text ELSE %(soft)s END,"
    " 'revert: ' || note"
    " FROM claimsync.planned_write WHERE run_id = %(run_id)s AND target = %(target)s AND table_name = %(table)s"
    " AND status = 'applied' AND id = ANY(%(ids)s) ORDER BY id"
)


def revert_run(
    target_engines: Mapping[str, Engine],
    state_engine: Engine,
    run_id: str,
    *,
    mapping: SourceMapping | None = None,
    reverted_by: str = "claimsync",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> RevertSummary:
    """Put back the before-images of ``run_id``'s applied writes where the after-image is still there.

    Rows whose value changed since claimsync wrote it are left alone and reported
    (``revert_conflict``). Safe to repeat: what was reverted stays reverted, and a revert
    that died before it was recorded is recognised (the row already holds the before-image).
    The caller holds the flow's lock.
    """
    specs = table_specs(mapping or SourceMapping())
    summary = RevertSummary(run_id)
    with state_engine.connect() as conn:
        if conn.execute(sa.text("SELECT 1 FROM claimsync.sync_run WHERE run_id = :r"), {"r": run_id}).first() is None:
            raise ClaimsyncError(f"no run {run_id!r} in the state database")
    # Children before parents: the reverse of the apply order.
    for key in reversed(list(specs)):
        target, table = key
        if target not in target_engines:
            continue
        spec = specs[key]
        with state_engine.connect() as conn:
            ids = list(
                conn.execute(
                    sa.text(
                        "SELECT id FROM claimsync.planned_write WHERE run_id = :r AND target = :t"
                        " AND table_name = :tb AND status = 'applied' ORDER BY id"
                    ),
                    {"r": run_id, "t": target, "tb": table},
                ).scalars()
            )
        for chunk in _chunks(ids, batch_size):
            params = {
                "run_id": run_id,
                "target": target,
                "table": table,
                "ids": chunk,
                "soft": image_json(spec.soft_delete or {}),
            }
            with state_engine.connect() as state_conn, target_engines[target].begin() as target_conn:
                _copy_rows(state_conn, _REVERT_ROWS, params, target_conn)
                _, outcomes = _run_statements(target_conn, spec, f"claimsync revert of run {run_id}: ", ["update"])
            _confirm_revert(state_engine, spec, ids=chunk, outcomes=outcomes, reverted_by=reverted_by, summary=summary)
    with state_engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE claimsync.sync_run SET summary = summary || jsonb_build_object('revert',"
                " jsonb_build_object('by', CAST(:by AS text), 'at', now(),"
                " 'reverted', (SELECT count(*) FROM claimsync.planned_write WHERE run_id = :r AND status = 'reverted'),"
                " 'refused', (SELECT count(*) FROM claimsync.planned_write"
                "   WHERE run_id = :r AND status = 'revert_conflict'))) WHERE run_id = :r"
            ),
            {"r": run_id, "by": reverted_by},
        )
    return summary


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _confirm_revert(
    state_engine: Engine,
    spec: TableSpec,
    *,
    ids: Sequence[int],
    outcomes: Sequence[_Outcome],
    reverted_by: str,
    summary: RevertSummary,
) -> None:
    # A row already at the revert's after-image (the before-image) was reverted by an earlier attempt.
    refused = {o.pw_id: o for o in outcomes if not o.at_after}
    with state_engine.begin() as conn:
        rows = {
            row.id: row
            for row in conn.execute(
                sa.text(
                    "SELECT id, record_key, operation, before_image, after_image FROM claimsync.planned_write"
                    " WHERE id = ANY(:ids)"
                ),
                {"ids": list(refused)},
            ).all()
        }
        details = []
        for pw_id, outcome in refused.items():
            row = rows[pw_id]
            what = f"{spec.target} {spec.table} {row.record_key}"
            if not outcome.present:
                detail = f"{what}: the row no longer exists"
            else:
                changed = _describe(spec, {k: v for k, v in row.after_image.items() if k != "lines"}, outcome.found)
                detail = f"{what} changed since claimsync wrote it: {changed}; left as it is"
            details.append({"id": pw_id, "detail": detail})
            summary.refused_keys.append(write_business_key(spec.target, spec.table, row.record_key))
            summary.details.append(detail)
        if details:
            conn.execute(
                sa.text(
                    "UPDATE claimsync.planned_write SET status = 'revert_conflict', detail = :detail,"
                    " reverted_by = :by WHERE id = :id AND status = 'applied'"
                ),
                [{**d, "by": reverted_by} for d in details],
            )
        done = conn.execute(
            sa.text(
                "UPDATE claimsync.planned_write SET status = 'reverted', reverted_at = now(), reverted_by = :by"
                " WHERE id = ANY(:ids) AND status = 'applied'"
            ),
            {"ids": [i for i in ids if i not in refused], "by": reverted_by},
        ).rowcount
    summary.reverted += done
    summary.refused += len(details)
