"""One sync run (``org``, ``claims`` or ``all``), end to end, for the CLI and the DAGs' tasks.

    lock → begin_run → recover unfinished runs → extract the window → [source gate] → plan
         → store the plan → check the delta (circuit breaker, [delta gate]) → apply expense
         → apply OA → confirm: watermark → finish_run

:func:`run_sync` does it all in one process, holding the flow's advisory lock throughout
(``claimsync sync``). The DAGs run the same steps as tasks (:func:`open_sync`,
:func:`extract_stage`, :func:`plan_stage`, :func:`check_stage`, :func:`apply_stage`,
:func:`confirm_stage`); each takes the lock for its own duration, the extracted frames are
staged in the state DB between extract and plan, and the plan lives there under the run id.

Reruns: a run id has one window and one plan. Rerunning a run that already stored its plan
does not extract or plan again: it applies what is unconfirmed (recovering a batch that was
applied but not confirmed, see claimsync.writeback) and confirms. A new run first finishes
the unconfirmed batches of earlier runs of its flow whose plans were cleared, so the audit
holds every applied change exactly once, then plans from the current state of both systems.

The window: ``--since``/``--until`` (the DAG: the run's data interval, reaching back to the
watermark if earlier runs failed), else from the flow's watermark, else a full sync. It
advances only after all of a run's writes are confirmed; losing it costs time, never data.

Quality gates (issue 5) plug in at two seams: ``source_gate(sides, run) -> sides`` between
extraction and planning (quarantine, or raise RunStopped) and ``delta_gate(writes, run,
table_rows)`` beside the circuit breaker. None means no gate is configured.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from claimsync.config import Settings, parse_time
from claimsync.db import check_reachable, create_engine, database_errors, qualified, quote_ident, raw_cursor
from claimsync.errors import ClaimsyncError, ConfigError, RunStopped, one_line
from claimsync.masking import mask_record, mask_text
from claimsync.migrations import migrate
from claimsync.resources import query_template
from claimsync.runs import RunInfo, begin_run, cli_run_id, finish_run, flow_lock, read_run
from claimsync.writeback import (
    DEFAULT_BATCH_SIZE,
    ApplySummary,
    PlannedWrite,
    apply_plan,
    has_plan,
    load_plan,
    plan_counts,
    resolve_stale_conflicts,
    revert_run,
    store_plan,
    unconfirmed_batches,
)

if TYPE_CHECKING:
    import pandas as pd

    from claimsync.canonical import Sides
    from claimsync.plan import PlanDetails

FLOWS: Final = ("org", "claims", "all")
# What each flow plans, which flows' locks and watermarks it covers, which targets it writes.
PARTS: Final = {"org": ("org",), "claims": ("claims",), "all": ("org", "claims")}
TARGETS: Final = {"org": ("expense",), "claims": ("expense", "oa"), "all": ("expense", "oa")}
SOURCES: Final = ("oa", "expense")
# Below this many writes per table the circuit breaker never trips (same floor as
# expectations/write_delta.json's delta_within_limit): small tables are not a disaster.
BREAKER_FLOOR_ROWS: Final = 10
# Tables at least this big are sized from the planner's statistics instead of count(*).
_ESTIMATE_ABOVE: Final = 200_000

SourceGate = Callable[["Sides", RunInfo], "Sides"]
DeltaGate = Callable[[Sequence[PlannedWrite], RunInfo, Mapping[tuple[str, str], int]], None]


@dataclass
class SyncOutcome:
    """What a sync run did (small: it goes through XCom and is printed by the CLI)."""

    run_id: str
    flow: str
    status: str  # succeeded | dry_run
    window_start: datetime | None
    window_end: datetime | None
    full: bool
    dry_run: bool
    forced: bool
    planned: dict[str, int] = field(default_factory=dict)  # target.table.operation.status → rows
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)  # per target, this attempt
    recovered_runs: list[str] = field(default_factory=list)
    breaker: list[str] = field(default_factory=list)

    @property
    def written(self) -> int:
        """Rows written by this attempt (recovered ones were written by an earlier attempt)."""
        return sum(int(a.get("applied", 0)) for a in self.applied.values())

    def count(self, status: str) -> int:
        return sum(n for key, n in self.planned.items() if key.endswith(f".{status}"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "flow": self.flow,
            "status": self.status,
            "window_start": None if self.window_start is None else self.window_start.isoformat(),
            "window_end": None if self.window_end is None else self.window_end.isoformat(),
            "full": self.full,
            "dry_run": self.dry_run,
            "forced": self.forced,
            "planned": dict(self.planned),
            "applied": dict(self.applied),
            "written": self.written,
            "conflicts": self.count("conflict"),
            "deferred": self.count("deferred"),
            "recovered_runs": list(self.recovered_runs),
            "breaker": list(self.breaker),
        }


# --- engines, locks, bookkeeping --------------------------------------------------------------


@dataclass
class Engines:
    oa: Engine
    expense: Engine
    state: Engine

    def target(self, name: str) -> Engine:
        return self.oa if name == "oa" else self.expense


@contextmanager
def _engines(settings: Settings) -> Iterator[Engines]:
    settings.require_urls("oa", "expense", "state")
    made = Engines(
        create_engine(str(settings.oa_url), "OA"),
        create_engine(str(settings.expense_url), "expense"),
        create_engine(str(settings.state_url), "state"),
    )
    try:
        for name in ("state", "oa", "expense"):
            check_reachable(getattr(made, name), name)
        yield made
    finally:
        for engine in (made.oa, made.expense, made.state):
            engine.dispose()


@contextmanager
def sync_lock(state: Engine, flow: str, *, wait: bool) -> Iterator[None]:
    """Hold the advisory lock of every flow ``flow`` covers ('all' takes both, in a fixed order)."""
    with ExitStack() as stack:
        for name in sorted(PARTS[_flow(flow)]):
            stack.enter_context(flow_lock(state, name, wait=wait))
        yield


def _flow(flow: str) -> str:
    if flow not in FLOWS:
        raise ConfigError(f"flow must be one of {', '.join(FLOWS)}, got {flow!r}")
    return flow


@contextmanager
def _failing_marks_run(state: Engine, run_id: str) -> Iterator[None]:
    """A step that raises marks the run stopped (RunStopped) or failed, with the error in one line.

    A database error leaves as a ClaimsyncError of that masked line, the original not chained:
    PostgreSQL's DETAIL and SQLAlchemy's [SQL]/[parameters] echo row values (a rejected row is
    quoted whole, cellphone included), and the task log would print them.
    """
    try:
        yield
    except database_errors(state) as exc:
        refused = ClaimsyncError(f"a database refused a statement: {one_line(exc)}")
        try:
            finish_run(state, run_id, "failed", error=str(refused))
        except Exception as unmarked:
            raise ClaimsyncError(f"{refused} (the run could not be marked failed: {one_line(unmarked)})") from None
        raise refused from None
    except BaseException as exc:
        finish_run(state, run_id, "stopped" if isinstance(exc, RunStopped) else "failed", error=one_line(exc))
        raise


def _note(state: Engine, run_id: str, summary: Mapping[str, Any], status: str | None = None) -> None:
    """Merge ``summary`` into the run's summary (and set its status) without finishing it."""
    with state.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE claimsync.sync_run SET summary = summary || CAST(:s AS jsonb),"
                " status = COALESCE(CAST(:status AS text), status) WHERE run_id = :r"
            ),
            {"s": json.dumps(summary, default=str), "status": status, "r": run_id},
        )


def load_run(state: Engine, run_id: str) -> tuple[RunInfo, dict[str, Any]]:
    """The run's bookkeeping row as RunInfo, and its summary."""
    found = read_run(state, run_id)
    if found is None or found[0].flow not in FLOWS:
        raise ClaimsyncError(f"no sync run {run_id!r} in the state database (claimsync.sync_run)")
    return found


def watermark(state: Engine, flow: str) -> datetime | None:
    """Where the next run of ``flow`` starts: the earliest position over the flows and sources it covers."""
    with state.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT flow, source, position FROM claimsync.watermark WHERE flow = ANY(:f)"),
            {"f": list(PARTS[_flow(flow)])},
        ).all()
    wanted = {(f, s) for f in PARTS[flow] for s in SOURCES}
    found: dict[tuple[str, str], datetime] = {(r.flow, r.source): r.position for r in rows}
    if set(found) != wanted:
        return None
    return min(found.values())


def _advance_watermark(state: Engine, run: RunInfo) -> None:
    assert run.window_end is not None
    with state.begin() as conn:
        for flow in PARTS[run.flow]:
            for source in SOURCES:
                conn.execute(
                    sa.text(
                        "INSERT INTO claimsync.watermark AS w (flow, source, position, run_id)"
                        " VALUES (:f, :s, :p, :r) ON CONFLICT (flow, source) DO UPDATE SET"
                        " position = GREATEST(w.position, EXCLUDED.position),"
                        " run_id = CASE WHEN EXCLUDED.position >= w.position THEN EXCLUDED.run_id ELSE w.run_id END,"
                        " updated_at = now()"
                    ),
                    {"f": flow, "s": source, "p": run.window_end, "r": run.run_id},
                )


# --- open ----------------------------------------------------------------------------------


def open_sync(
    settings: Settings,
    flow: str,
    *,
    run_id: str | None,
    triggered_by: str,
    as_of: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    full: bool = False,
    dry_run: bool = False,
    force: bool = False,
    catch_up: bool = False,
) -> dict[str, Any]:
    """Record the run and fix its window; a rerun of an existing run id keeps its window and flags.

    ``catch_up`` (the DAGs): start at the watermark when it lies before ``since``, so the
    interval of a run that failed earlier is covered by the next one.
    """
    with _engines(settings) as engines:
        return _open(engines, settings, flow, run_id=run_id, triggered_by=triggered_by, as_of=as_of, since=since,
                     until=until, full=full, dry_run=dry_run, force=force, catch_up=catch_up).__dict__  # fmt: skip


def _open(
    engines: Engines,
    settings: Settings,
    flow: str,
    *,
    run_id: str | None,
    triggered_by: str,
    as_of: datetime,
    since: datetime | None,
    until: datetime | None,
    full: bool,
    dry_run: bool,
    force: bool,
    catch_up: bool,
) -> RunInfo:
    flow = _flow(flow)
    for name, value in (("as_of", as_of), ("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ConfigError(f"{name} must carry a time zone")
    migrate(engines.state)
    # A fresh id per invocation (two CLI runs in the same second are two runs); reruns pass theirs.
    run_id = run_id or f"{cli_run_id(f'sync_{flow}', as_of)}__{uuid.uuid4().hex[:8]}"
    with engines.state.connect() as conn:
        exists = conn.execute(sa.text("SELECT flow FROM claimsync.sync_run WHERE run_id = :r"), {"r": run_id}).first()
    if exists is not None:
        if exists.flow != flow:
            raise ConfigError(f"run {run_id} is a {exists.flow} run, not {flow}")
        info, _ = load_run(engines.state, run_id)
        begin_run(engines.state, info)  # reopen: same window, same flags
        return info
    end = until or as_of
    start: datetime | None = None
    if not full:
        mark = watermark(engines.state, flow)  # None: no watermark yet, a full sync
        start = mark if since is None else min(since, mark) if catch_up and mark is not None else since
    if start is not None and start > end:
        raise ConfigError(f"the window starts after it ends: {start.isoformat()} > {end.isoformat()}")
    info = RunInfo(
        run_id=run_id,
        flow=flow,
        as_of=as_of,
        triggered_by=triggered_by,
        config_version=settings.config_version(),
        window_start=start,
        window_end=end,
        full_run=start is None,
        dry_run=dry_run,
        forced=force,
    )
    begin_run(engines.state, info)
    return info


# --- recover ------------------------------------------------------------------------------


def recover_unfinished(engines: Engines, settings: Settings, flow: str, *, current_run_id: str) -> list[str]:
    """Finish the unconfirmed batches of earlier cleared (non-dry) runs of the flows ``flow`` covers.

    Their writes may be on the targets already (a process killed between apply and
    confirm); applying their plans again confirms those and completes the rest, so the
    audit has every change exactly once. The caller holds the lock.
    """
    covered = set(PARTS[flow]) | {"all"} if flow != "all" else set(FLOWS)
    with engines.state.connect() as conn:
        runs = list(
            conn.execute(
                sa.text(
                    "SELECT r.run_id FROM claimsync.sync_run r WHERE r.flow = ANY(:flows) AND NOT r.dry_run"
                    " AND r.run_id <> :current AND r.summary ? 'plan_cleared'"
                    " AND EXISTS (SELECT 1 FROM claimsync.write_batch b WHERE b.run_id = r.run_id"
                    "   AND b.status = 'planned') ORDER BY r.started_at"
                ),
                {"flows": sorted(covered), "current": current_run_id},
            ).scalars()
        )
    for run_id in runs:
        info, _ = load_run(engines.state, run_id)
        applied = _apply_all(engines, settings, info)
        with engines.state.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE claimsync.sync_run SET summary = summary || jsonb_build_object('recovered_by',"
                    " CAST(:by AS text), 'recovered', CAST(:applied AS jsonb)),"
                    " status = CASE WHEN status IN ('running', 'planned') THEN 'applied' ELSE status END,"
                    " finished_at = COALESCE(finished_at, now()) WHERE run_id = :r"
                ),
                {"by": current_run_id, "applied": json.dumps(applied), "r": run_id},
            )
    return runs


# --- extract and stage ---------------------------------------------------------------------


def _extract(engines: Engines, settings: Settings, run: RunInfo) -> Sides:
    from claimsync.extract import Window, extract_sides

    window = None
    if not run.full_run and run.window_start is not None and run.window_end is not None:
        window = Window(start=run.window_start, end=run.window_end)
    return extract_sides(engines.oa, engines.expense, settings, window=window, parts=PARTS[run.flow])


def _stage(state: Engine, run_id: str, sides: Sides) -> dict[str, int]:
    counts: dict[str, int] = {}
    with state.begin() as conn:
        conn.execute(sa.text("DELETE FROM claimsync.run_stage WHERE run_id = :r"), {"r": run_id})
        for f in fields(sides):
            frame = getattr(sides, f.name)
            if f.name == "scope" or frame is None:
                continue
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            conn.execute(
                sa.text("INSERT INTO claimsync.run_stage (run_id, name, row_count, data) VALUES (:r, :n, :c, :d)"),
                {"r": run_id, "n": f.name, "c": len(frame), "d": buffer.getvalue()},
            )
            counts[f.name] = len(frame)
    return counts


def staged_sides(state: Engine, run_id: str) -> Sides:
    """The canonical frames staged for ``run_id`` (the quality gate task reads them between extract and plan)."""
    return _load_stage(state, run_id)


def _load_stage(state: Engine, run_id: str) -> Sides:
    import pandas as pd

    from claimsync.canonical import Sides

    with state.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT name, data FROM claimsync.run_stage WHERE run_id = :r"), {"r": run_id}
        ).all()
    frames: dict[str, Any] = {row.name: pd.read_parquet(io.BytesIO(bytes(row.data))) for row in rows}
    missing = [f.name for f in fields(Sides) if f.name != "scope" and f.name not in frames]
    if missing:
        raise ClaimsyncError(f"run {run_id} has no extracted frames staged ({', '.join(missing)}): rerun its extract")
    return Sides(**frames)


def extract_stage(settings: Settings, run_id: str) -> dict[str, Any]:
    """DAG step: extract the run's window and stage the canonical frames; skipped once the run has a plan."""
    with _engines(settings) as engines:
        run, _ = load_run(engines.state, run_id)
        if has_plan(engines.state, run_id):
            return {"run_id": run_id, "skipped": "the run already has its plan"}
        with sync_lock(engines.state, run.flow, wait=True), _failing_marks_run(engines.state, run_id):
            if not run.dry_run:  # before reading: finished writes of a dead run must not be planned again
                recover_unfinished(engines, settings, run.flow, current_run_id=run_id)
            counts = _stage(engines.state, run_id, _extract(engines, settings, run))
    return {"run_id": run_id, "rows": counts}


# --- plan -------------------------------------------------------------------------------------


def _render(conn: Connection, settings: Settings, system: str, name: str) -> str:
    mapping = settings.mapping
    if system == "oa":
        identifiers = {
            "schema": quote_ident(conn, mapping.oa_schema),
            "form_table": quote_ident(conn, mapping.oa_form_table),
            "lines_table": quote_ident(conn, mapping.oa_form_lines_table),
        }
    else:
        identifiers = {"schema": quote_ident(conn, mapping.expense_schema)}
    return query_template(system, name).format(**identifiers)


def _read(engine: Engine, settings: Settings, system: str, name: str, params: Mapping[str, Any]) -> list[Any]:
    with engine.connect() as conn:
        with raw_cursor(conn) as cursor:
            cursor.execute(_render(conn, settings, system, name), dict(params))
            rows = list(cursor.fetchall())
        conn.rollback()
    return rows


def _details(
    engines: Engines, settings: Settings, run: RunInfo, sides: Sides, links: pd.DataFrame | None
) -> PlanDetails:
    """Values a write needs beyond the canonical model, read by key for the records it writes."""
    from claimsync.plan import PlanDetails, new_claim_request_ids

    titles: dict[int, str] = {}
    submitted: dict[int, datetime] = {}
    remarks: dict[tuple[int, int], str] = {}
    oa_phones: dict[str, str | None] | None = None
    expense_phones: dict[str, str | None] | None = None
    if "claims" in PARTS[run.flow] and links is not None:
        ids = new_claim_request_ids(sides, links)
        if ids:
            for request_id, name, first_submit in _read(
                engines.oa, settings, "oa", "read_request_details", {"ids": ids}
            ):
                titles[int(request_id)] = name
                if first_submit:
                    # An unparseable log time: the claim uses the request's creation time.
                    with suppress(ConfigError):
                        submitted[int(request_id)] = parse_time(first_submit.replace(" ", "T"), settings.tz)
            for request_id, seq, remark in _read(engines.oa, settings, "oa", "read_line_remarks", {"ids": ids}):
                if remark is not None:
                    remarks[(int(request_id), int(seq))] = remark
    if "org" in PARTS[run.flow]:
        codes = sorted(
            set(sides.oa_employees["employee_code"].dropna().tolist())
            | set(sides.expense_employees["employee_code"].dropna().tolist())
        )
        oa_phones = dict(_read(engines.oa, settings, "oa", "read_mobiles", {"codes": codes})) if codes else {}
        expense_phones = (
            dict(_read(engines.expense, settings, "expense", "read_cellphones", {"codes": codes})) if codes else {}
        )
    return PlanDetails(titles, submitted, remarks, oa_phones, expense_phones)


def _plan(
    engines: Engines, settings: Settings, run: RunInfo, sides: Sides, source_gate: SourceGate | None
) -> list[PlannedWrite]:
    from claimsync.plan import plan_writes

    if source_gate is not None:  # the data-quality gate (issue 5) plugs in here
        sides = source_gate(sides, run)
    links = None
    if "claims" in PARTS[run.flow]:
        from claimsync.reconcile import link_claims

        links = link_claims(sides)
    details = _details(engines, settings, run, sides, links)
    writes = plan_writes(sides, links, settings, as_of=run.as_of, parts=PARTS[run.flow], details=details)
    if not run.full_run:
        writes += _carry_over(engines.state, run, sides, writes)
    return writes


def _carry_over(state: Engine, run: RunInfo, sides: Sides, writes: Sequence[PlannedWrite]) -> list[PlannedWrite]:
    """Deferred writes of earlier runs whose records this (windowed) run did not see again.

    A write is deferred when a row it refers to is not on the target yet (a claim's
    submitter before the org sync created them). Its record has not changed since, so the
    window will not bring it back: the run takes the earlier write over, unchanged. A
    record the run did see is planned afresh instead.
    """
    flows = sorted(set(PARTS[run.flow]) | {"all"} if run.flow != "all" else set(FLOWS))
    with state.connect() as conn:
        rows = conn.execute(
            sa.text(
                # Only runs since the flows' last full run: a full run planned every record again.
                "WITH recent AS ("
                " SELECT r.run_id FROM claimsync.sync_run r WHERE r.flow = ANY(:flows) AND NOT r.dry_run"
                " AND r.run_id <> :run_id AND r.started_at >= COALESCE((SELECT max(f.started_at)"
                "  FROM claimsync.sync_run f WHERE f.flow = ANY(:flows) AND f.full_run AND NOT f.dry_run"
                "  AND f.status = 'succeeded' AND f.run_id <> :run_id), '-infinity')),"
                " deferred AS (SELECT w.target, w.table_name, w.record_key FROM claimsync.planned_write w"
                "  WHERE w.run_id IN (SELECT run_id FROM recent) AND w.status = 'deferred'),"
                " latest AS ("
                " SELECT DISTINCT ON (w.target, w.table_name, w.record_key) w.*, r.flow"
                " FROM claimsync.planned_write w JOIN claimsync.sync_run r ON r.run_id = w.run_id"
                " WHERE NOT r.dry_run AND w.run_id <> :run_id AND (w.target, w.table_name, w.record_key) IN"
                "  (SELECT target, table_name, record_key FROM deferred)"
                " ORDER BY w.target, w.table_name, w.record_key, w.id DESC)"
                " SELECT run_id, target, table_name, operation, record_key, before_image, after_image, note,"
                " depends_on FROM latest WHERE status = 'deferred' AND flow = ANY(:flows)"
                " ORDER BY id"
            ),
            {"run_id": run.run_id, "flows": flows},
        ).all()
    if not rows:
        return []
    planned = {w.ref for w in writes}
    seen_requests = {int(r) for r in sides.oa_claims["request_id"].dropna().tolist()}
    seen_employees = set(sides.oa_employees["employee_code"].dropna().tolist()) | set(
        sides.expense_employees["employee_code"].dropna().tolist()
    )
    seen_departments = set(sides.oa_departments["department_code"].dropna().tolist()) | set(
        sides.expense_departments["department_code"].dropna().tolist()
    )
    carried: list[PlannedWrite] = []
    for row in rows:
        write = PlannedWrite(
            row.target, row.table_name, row.operation, row.record_key, row.before_image, row.after_image,
            f"{row.note} (carried over from run {row.run_id})", row.depends_on,
        )  # fmt: skip
        if write.ref in planned:
            continue
        if row.target == "oa":  # the form of an OA request
            seen = int(row.record_key) in seen_requests
        elif row.table_name == "flow":
            seen = int(row.after_image.get("oa_request_id") or -1) in seen_requests
        elif row.table_name == "staff":
            seen = row.record_key in seen_employees
        else:
            seen = row.record_key in seen_departments
        if not seen:
            carried.append(write)
            planned.add(write.ref)
    # A carried write that waits for a claim is kept only if that claim is carried too.
    return [w for w in carried if w.depends_on is None or w.depends_on in planned]


def batch_size() -> int:
    """Writes per target transaction: ``CLAIMSYNC_BATCH_SIZE`` (default 5000)."""
    text = os.environ.get("CLAIMSYNC_BATCH_SIZE", "").strip()
    if not text:
        return DEFAULT_BATCH_SIZE
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"CLAIMSYNC_BATCH_SIZE must be a whole number of at least 1, got {text!r}")
    return int(text)


def _store(engines: Engines, settings: Settings, run: RunInfo, writes: Sequence[PlannedWrite]) -> None:
    store_plan(engines.state, run.run_id, writes, mapping=settings.mapping, batch_size=batch_size())
    from claimsync.plan import plan_shape

    _note(engines.state, run.run_id, {"plan": plan_shape(writes)})


def plan_stage(settings: Settings, run_id: str, *, source_gate: SourceGate | None = None) -> dict[str, Any]:
    """DAG step: plan from the staged frames and store the plan; a run that has its plan keeps it."""
    with _engines(settings) as engines:
        run, _ = load_run(engines.state, run_id)
        if not has_plan(engines.state, run_id):
            with sync_lock(engines.state, run.flow, wait=True), _failing_marks_run(engines.state, run_id):
                sides = _load_stage(engines.state, run_id)
                _store(engines, settings, run, _plan(engines, settings, run, sides, source_gate))
        return {"run_id": run_id, "planned": _shape(engines.state, run_id)}


def _shape(state: Engine, run_id: str) -> dict[str, int]:
    shape: dict[str, int] = {}
    for key, n in plan_counts(state, run_id).items():
        target, table, operation, _ = key.split(".")
        shape[f"{target}.{table}.{operation}"] = shape.get(f"{target}.{table}.{operation}", 0) + n
    return shape


# --- check: the circuit breaker ------------------------------------------------------------------


def table_rows(engines: Engines, settings: Settings, tables: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Row counts of target tables (exact below 200k rows, the planner's estimate above)."""
    schema = {"oa": settings.mapping.oa_schema, "expense": settings.mapping.expense_schema}
    counts: dict[tuple[str, str], int] = {}
    for target, table in tables:
        with engines.target(target).connect() as conn:
            name = qualified(conn, schema[target], table)
            estimate = conn.execute(
                sa.text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:n)"), {"n": name}
            ).scalar()
            if estimate is None or estimate < _ESTIMATE_ABOVE:
                estimate = conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one()
            counts[(target, table)] = int(estimate)
    return counts


def breaker_findings(
    shape: Mapping[tuple[str, str], int], rows: Mapping[tuple[str, str], int], limit: float
) -> list[str]:
    """One sentence per target table the plan touches more of than ``limit`` allows (floor: 10 rows)."""
    findings = []
    for (target, table), writes in sorted(shape.items()):
        total = rows.get((target, table), 0)
        allowed = max(int(limit * total), BREAKER_FLOOR_ROWS)
        if writes > allowed:
            share = f"{writes / total:.1%} of its {total:,} rows" if total else "a table that is empty"
            findings.append(
                f"{target}.{table}: {writes:,} writes touch {share}, {writes - allowed:,} over the limit of "
                f"{allowed:,} ({limit:.0%}, CLAIMSYNC_DELTA_LIMIT)"
            )
    return findings


def _check(engines: Engines, settings: Settings, run: RunInfo, delta_gate: DeltaGate | None) -> list[str]:
    """The circuit breaker on the stored plan; clears it for apply, or stops the run (unless forced / dry)."""
    shape: dict[tuple[str, str], int] = {}
    for key, n in _shape(engines.state, run.run_id).items():
        target, table, _ = key.split(".")
        shape[(target, table)] = shape.get((target, table), 0) + n
    rows = table_rows(engines, settings, sorted(shape))
    findings = breaker_findings(shape, rows, settings.delta_limit)
    if delta_gate is not None:  # the data-quality gate on the delta (issue 5) plugs in here
        delta_gate(load_writes(engines.state, run.run_id), run, rows)
    if findings and not run.forced and not run.dry_run:
        raise RunStopped(
            f"{run.flow} sync {run.run_id} stopped before any write: " + "; ".join(findings)
            + " — check the plan with --dry-run, then rerun with --force (DAG param force=true) if it is intended"
        )  # fmt: skip
    _note(
        engines.state,
        run.run_id,
        {"breaker": findings, **({} if run.dry_run else {"plan_cleared": True})},
        status=None if run.dry_run else "planned",
    )
    return findings


def load_writes(state: Engine, run_id: str) -> list[PlannedWrite]:
    """The stored plan as PlannedWrites (for a delta gate or a report)."""
    return [
        PlannedWrite(w.target, w.table, w.operation, w.record_key, w.before, w.after, w.note)  # type: ignore[arg-type]
        for w in load_plan(state, run_id)
    ]


def check_stage(settings: Settings, run_id: str, *, delta_gate: DeltaGate | None = None) -> dict[str, Any]:
    """DAG step: the circuit breaker (and delta gate) on the stored plan."""
    with _engines(settings) as engines:
        run, summary = load_run(engines.state, run_id)
        if summary.get("plan_cleared"):
            return {"run_id": run_id, "breaker": summary.get("breaker", []), "cleared": True}
        with sync_lock(engines.state, run.flow, wait=True), _failing_marks_run(engines.state, run_id):
            findings = _check(engines, settings, run, delta_gate)
    return {"run_id": run_id, "breaker": findings, "cleared": not run.dry_run}


# --- apply and confirm -------------------------------------------------------------------------


def _apply_all(engines: Engines, settings: Settings, run: RunInfo) -> dict[str, dict[str, Any]]:
    applied: dict[str, dict[str, Any]] = {}
    for target in TARGETS[run.flow]:  # expense first: OA bxdh waits for the claims it names
        summary = apply_plan(
            engines.target(target),
            engines.state,
            run.run_id,
            target,
            mapping=settings.mapping,
            applied_by=run.triggered_by,
            as_of=run.as_of,
        )
        applied[target] = summary.to_dict()
    return applied


def _apply_target(
    engines: Engines, settings: Settings, run: RunInfo, summary: Mapping[str, Any], target: str
) -> ApplySummary | None:
    if run.dry_run or target not in TARGETS[run.flow]:
        return None
    if not summary.get("plan_cleared"):
        raise ClaimsyncError(f"run {run.run_id}: its plan has not passed the delta check; nothing applied")
    return apply_plan(
        engines.target(target),
        engines.state,
        run.run_id,
        target,
        mapping=settings.mapping,
        applied_by=run.triggered_by,
        as_of=run.as_of,
    )


def apply_stage(settings: Settings, run_id: str, target: str) -> dict[str, Any]:
    """DAG step: apply (or recover) the run's unconfirmed batches for one target."""
    with _engines(settings) as engines:
        run, summary = load_run(engines.state, run_id)
        with sync_lock(engines.state, run.flow, wait=True), _failing_marks_run(engines.state, run_id):
            result = _apply_target(engines, settings, run, summary, target)
            if result is not None:
                _note(engines.state, run_id, {f"applied_{target}": result.to_dict()})
    return {"run_id": run_id, "target": target, **(result.to_dict() if result is not None else {"skipped": True})}


def _confirm(engines: Engines, run: RunInfo, summary: Mapping[str, Any], applied: Mapping[str, Any]) -> SyncOutcome:
    if not run.dry_run:
        left = unconfirmed_batches(engines.state, run.run_id)
        if left:
            raise ClaimsyncError(f"run {run.run_id} still has {left} unconfirmed batch(es): rerun its apply steps")
        _advance_watermark(engines.state, run)
        if run.full_run:
            resolve_stale_conflicts(engines.state, run.run_id, run.as_of)
    with engines.state.begin() as conn:
        conn.execute(sa.text("DELETE FROM claimsync.run_stage WHERE run_id = :r"), {"r": run.run_id})
    outcome = SyncOutcome(
        run_id=run.run_id,
        flow=run.flow,
        status="dry_run" if run.dry_run else "succeeded",
        window_start=run.window_start,
        window_end=run.window_end,
        full=run.full_run,
        dry_run=run.dry_run,
        forced=run.forced,
        planned=plan_counts(engines.state, run.run_id),
        applied=dict(applied),
        breaker=list(summary.get("breaker", [])),
    )
    finish_run(engines.state, run.run_id, "succeeded", outcome.to_dict())
    return outcome


def confirm_stage(settings: Settings, run_id: str) -> dict[str, Any]:
    """DAG step: check every batch is confirmed, advance the watermark, finish the run."""
    with _engines(settings) as engines:
        run, summary = load_run(engines.state, run_id)
        with sync_lock(engines.state, run.flow, wait=True), _failing_marks_run(engines.state, run_id):
            applied = {t: summary[f"applied_{t}"] for t in SOURCES if f"applied_{t}" in summary}
            return _confirm(engines, run, summary, applied).to_dict()


# --- the whole run in one process ------------------------------------------------------------------


def run_sync(
    settings: Settings,
    flow: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    full: bool = False,
    dry_run: bool = False,
    force: bool = False,
    run_id: str | None = None,
    triggered_by: str = "claimsync",
    as_of: datetime | None = None,
    wait: bool = False,
    source_gate: SourceGate | None = None,
    delta_gate: DeltaGate | None = None,
) -> SyncOutcome:
    """One sync run of ``flow`` ('org', 'claims' or 'all'), start to finish, under the flow's lock.

    ``as_of`` defaults to now (the CLI); ``wait`` blocks on another copy of the flow
    instead of exiting with FlowBusy. Raises RunStopped when the circuit breaker (or a
    gate) stops the run before any write, ClaimsyncError when it fails (the run is then
    marked so in the state DB).
    """
    flow = _flow(flow)
    as_of = as_of or datetime.now(settings.tz).replace(microsecond=0)
    with _engines(settings) as engines:
        migrate(engines.state)
        with sync_lock(engines.state, flow, wait=wait):
            run = _open(engines, settings, flow, run_id=run_id, triggered_by=triggered_by, as_of=as_of, since=since,
                        until=until, full=full, dry_run=dry_run, force=force, catch_up=False)  # fmt: skip
            with _failing_marks_run(engines.state, run.run_id):
                recovered = (
                    [] if run.dry_run else recover_unfinished(engines, settings, flow, current_run_id=run.run_id)
                )
                if not has_plan(engines.state, run.run_id):
                    sides = _extract(engines, settings, run)
                    _store(engines, settings, run, _plan(engines, settings, run, sides, source_gate))
                _, summary = load_run(engines.state, run.run_id)
                if not summary.get("plan_cleared"):
                    _check(engines, settings, run, delta_gate)
                    _, summary = load_run(engines.state, run.run_id)
                applied: dict[str, Any] = {}
                for target in TARGETS[flow]:
                    result = _apply_target(engines, settings, run, summary, target)
                    if result is not None:
                        applied[target] = result.to_dict()
                outcome = _confirm(engines, run, summary, applied)
                outcome.recovered_runs = recovered
                return outcome


def revert(settings: Settings, run_id: str, *, reverted_by: str, wait: bool = False) -> dict[str, Any]:
    """Put back ``run_id``'s before-images where its after-images are still there (under the flow's lock)."""
    with _engines(settings) as engines:
        run, _ = load_run(engines.state, run_id)
        if run.dry_run:
            raise ConfigError(f"run {run_id} was a dry run: it wrote nothing to revert")
        with sync_lock(engines.state, run.flow, wait=wait):
            targets = {t: engines.target(t) for t in TARGETS[run.flow]}
            summary = revert_run(targets, engines.state, run_id, mapping=settings.mapping, reverted_by=reverted_by)
    return {**summary.to_dict(), "refused_keys": summary.refused_keys, "details": summary.details}


# --- the CLI ------------------------------------------------------------------------------------


def _who() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def describe_plan(state: Engine, run_id: str, *, limit: int = 20) -> list[str]:
    """The first ``limit`` planned writes, one line each, personal data masked."""
    lines = []
    for w in load_plan(state, run_id)[:limit]:
        before = mask_record(w.before or {})
        after = mask_record({k: v for k, v in w.after.items() if k != "lines"})
        if "lines" in w.after:
            after["lines"] = f"{len(w.after['lines'])} line(s)"
        change = (
            ", ".join(f"{k}: {before.get(k)!r} → {after[k]!r}" for k in sorted(after))
            if w.operation == "update"
            else json.dumps(after, ensure_ascii=False, default=str)
        )
        lines.append(f"  {w.operation:6s} {w.target}.{w.table} {w.record_key}: {mask_text(change)}")
    return lines


def summary_lines(outcome: SyncOutcome, state: Engine | None = None) -> list[str]:
    window = (
        "everything (full sync)"
        if outcome.full
        else f"{outcome.window_start.isoformat() if outcome.window_start else '?'} .. "
        f"{outcome.window_end.isoformat() if outcome.window_end else '?'}"
    )
    head = "dry run: planned, nothing written" if outcome.dry_run else f"{outcome.written} row(s) written"
    lines = [f"{outcome.flow} sync {outcome.run_id}: {head}", f"  window: {window}"]
    if outcome.recovered_runs:
        lines.append(f"  finished unconfirmed writes of earlier run(s): {', '.join(outcome.recovered_runs)}")
    for key, n in sorted(outcome.planned.items()):
        lines.append(f"  {key:45s} {n:7d}")
    if not outcome.planned:
        lines.append("  nothing to write: both systems agree on everything this sync owns")
    for finding in outcome.breaker:
        lines.append(f"  circuit breaker: {finding}" + (" (forced)" if outcome.forced else ""))
    conflicts = outcome.count("conflict")
    if conflicts:
        lines.append(f"  {conflicts} write conflict(s): recorded as write_conflict exceptions for a person")
    return lines


def sync_command(args: Any, settings: Settings) -> int:
    """``claimsync sync {org|claims|all} [--since T --until T] [--full] [--dry-run] [--force] [--wait]``."""
    from sqlalchemy.exc import DBAPIError

    from claimsync import quality_gates

    since = parse_time(args.since, settings.tz, "--since") if args.since else None
    until = parse_time(args.until, settings.tz, "--until") if args.until else None
    if args.full and since is not None:
        raise ConfigError("--full and --since exclude each other: a full sync reads everything")
    settings.require_urls("oa", "expense", "state")
    try:
        outcome = run_sync(
            settings,
            args.flow,
            since=since,
            until=until,
            full=args.full,
            dry_run=args.dry_run,
            force=args.force,
            triggered_by=_who(),
            wait=args.wait,
            source_gate=quality_gates.source_gate(settings),
            delta_gate=quality_gates.delta_gate(settings),
        )
    except DBAPIError as exc:
        raise ClaimsyncError(f"the sync failed on a database error: {one_line(exc.orig or exc)}") from None
    for line in summary_lines(outcome):
        print(line)
    if outcome.dry_run:
        assert settings.state_url is not None
        engine = create_engine(settings.state_url, "state")
        try:
            shown = describe_plan(engine, outcome.run_id)
        finally:
            engine.dispose()
        total = sum(outcome.planned.values())
        if shown:
            print(f"  the plan (first {len(shown)} of {total}; all of it is in claimsync.planned_write):")
            for line in shown:
                print(line)
    return 0


def revert_command(args: Any, settings: Settings) -> int:
    """``claimsync revert RUN_ID``: restore before-images where still possible; report the rest."""
    settings.require_urls("oa", "expense", "state")
    result = revert(settings, args.run_id, reverted_by=_who(), wait=args.wait)
    print(f"reverted run {args.run_id}: {result['reverted']} change(s) put back, {result['refused']} left as they are")
    for detail in result["details"]:
        print(f"  not reverted: {mask_text(detail)}")
    return 0
