"""Where the quality gates meet the runs: gate callables for the pipeline seams, and the DAG steps.

In one process (``claimsync sync``, ``claimsync reconcile``) the seams take
:func:`source_gate` and :func:`delta_gate`: validate, quarantine, stop or continue.

In the DAGs the source gate is its own task so an operator sees where a run stopped:
:func:`validate_sync_stage` (sync DAGs: the staged frames between extract and plan) and
:func:`validate_reconcile_run` (reconcile DAG: before the bucket tasks) validate, store the
quarantine and the results, and raise RunStopped; the following task then passes
:func:`quarantine_gate` to the seam, which leaves out exactly what that run quarantined
(rows with a quarantined record key, rows without a key, and the lines and payments of a
quarantined claim) without validating again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from claimsync.config import Settings
from claimsync.db import create_engine
from claimsync.errors import ClaimsyncError, RunStopped, one_line
from claimsync.quality import frames_of, record_key, validate_delta, validate_sources, with_frames
from claimsync.quality_rules import SOURCE_SUITES
from claimsync.runs import RunInfo, finish_run, read_run

if TYPE_CHECKING:
    from claimsync.canonical import Sides

SourceGate = Callable[["Sides", RunInfo], "Sides"]
DeltaGate = Callable[[Sequence[Any], RunInfo, Mapping[tuple[str, str], int]], None]


@contextmanager
def _state(settings: Settings, engine: Engine | None) -> Iterator[Engine]:
    if engine is not None:
        yield engine
        return
    settings.require_urls("state")
    assert settings.state_url is not None
    made = create_engine(settings.state_url, "state")
    try:
        yield made
    finally:
        made.dispose()


def _full(run: RunInfo) -> bool:
    return run.full_run or run.flow == "reconcile"


# What each flow extracts (claimsync.sync.PARTS); a frame of a part not extracted is empty, not broken.
_PART_SUITES: Mapping[str, tuple[str, ...]] = {
    "claims": ("oa_claims", "oa_lines", "expense_claims", "expense_lines", "expense_payments"),
    "org": ("oa_employees", "oa_departments", "expense_employees", "expense_departments"),
}
_FLOW_PARTS: Mapping[str, tuple[str, ...]] = {"claims": ("claims",), "org": ("org",)}


def suites_of(run: RunInfo) -> tuple[str, ...]:
    """The frames ``run``'s flow extracts (all of them for 'all' and 'reconcile')."""
    parts = _FLOW_PARTS.get(run.flow, ("claims", "org"))
    return tuple(s for part in parts for s in _PART_SUITES[part])


def source_gate(settings: Settings, *, state_engine: Engine | None = None, force: bool = False) -> SourceGate:
    """Validate the sides at the seam; quarantine and store; RunStopped unless the run (or ``force``) forces it."""

    def gate(sides: Sides, run: RunInfo) -> Sides:
        with _state(settings, state_engine) as state:
            outcome = validate_sources(
                sides,
                settings=settings,
                as_of=run.as_of,
                run_id=run.run_id,
                state_engine=state,
                force=run.forced or force,
                full_run=_full(run),
                suites=suites_of(run),
            )
        return outcome.sides  # type: ignore[no-any-return]

    return gate


def delta_gate(settings: Settings, *, state_engine: Engine | None = None) -> DeltaGate:
    """Validate a plan at the seam; RunStopped unless the run is forced or a dry run (which writes nothing)."""

    def gate(writes: Sequence[Any], run: RunInfo, table_rows: Mapping[tuple[str, str], int]) -> None:
        with _state(settings, state_engine) as state:
            validate_delta(
                writes,
                settings=settings,
                target_row_counts=table_rows,
                force=run.forced or run.dry_run,
                run_id=run.run_id,
                state_engine=state,
            )

    return gate


# --- leaving out what a run's gate task quarantined --------------------------------------------

_KEY_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "oa_claims": ("request_id",),
    "oa_lines": ("claim_ref",),
    "oa_employees": ("employee_code",),
    "oa_departments": ("department_code",),
    "expense_claims": ("claim_code", "flow_id"),
    "expense_lines": ("claim_ref",),
    "expense_payments": ("payment_id",),
    "expense_employees": ("employee_code",),
    "expense_departments": ("department_code",),
}
_PREFIX = {
    "oa_claims": "oa:",
    "oa_lines": "oa:",
    "expense_lines": "exp:",
    "expense_payments": "pay:",
    "oa_employees": "emp:",
    "expense_employees": "emp:",
    "oa_departments": "dep:",
    "expense_departments": "dep:",
}
_NEEDS_ESCAPE = re.compile(r"[\x00-\x1f\x7f]")


def _text(column: pd.Series) -> pd.Series:
    if pd.api.types.is_integer_dtype(column.dtype):
        return column.astype("Int64").astype("str")
    return column.astype("str")


def record_keys(suite: str, frame: pd.DataFrame) -> pd.Series:
    """claimsync.quality.record_key of every row, vectorised (rows without a key: <NA>)."""
    if suite == "expense_claims":
        code, flow = _text(frame["claim_code"]), _text(frame["flow_id"])
        keys = ("exp:" + code).where(code.notna(), "flow:" + flow)
    elif suite.endswith("_lines"):
        ref, seq = _text(frame["claim_ref"]), _text(frame["seq"])
        keys = _PREFIX[suite] + ref + "#" + seq.fillna("?")
    else:
        keys = _PREFIX[suite] + _text(frame[_KEY_COLUMNS[suite][0]])
    # Keys with control characters or very long ones are stored escaped: spell those the same way.
    odd = keys.notna() & (keys.str.contains(_NEEDS_ESCAPE.pattern) | (keys.str.len() > 100)).fillna(False)
    if odd.any():
        rows = frame.loc[odd.to_numpy()].to_dict(orient="records")
        escaped = pd.Series(
            [record_key(suite, {str(k): v for k, v in r.items()}) for r in rows], index=keys.index[odd.to_numpy()]
        )
        keys = keys.where(~odd, escaped)
    return keys


def _claim_keys(suite: str, frame: pd.DataFrame) -> pd.Series | None:
    if suite in ("oa_lines", "expense_lines"):
        return ("oa:" if suite == "oa_lines" else "exp:") + _text(frame["claim_ref"])
    if suite == "expense_payments":
        return "exp:" + _text(frame["claim_code"])
    return None


def run_quarantine(state: Engine, run_id: str) -> dict[tuple[str, str], set[str]]:
    """Record keys each (source, entity) had quarantined (or held back) by ``run_id`` and not released."""
    with state.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT DISTINCT source, entity, record_key FROM claimsync.quarantine"
                " WHERE last_run_id = :run_id AND released_at IS NULL"
            ),
            {"run_id": run_id},
        ).all()
    found: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        found.setdefault((row.source, row.entity), set()).add(row.record_key)
    return found


def apply_quarantine(sides: Any, quarantined: Mapping[tuple[str, str], set[str]]) -> Any:
    """``sides`` without the quarantined records, keyless rows, and children of quarantined claims."""
    frames = frames_of(sides)
    claim_keys = quarantined.get(("oa", "claims"), set()) | quarantined.get(("expense", "claims"), set())
    clean: dict[str, pd.DataFrame] = {}
    for suite, frame in frames.items():
        keyless = pd.Series(False, index=frame.index)
        for column in _KEY_COLUMNS[suite][:1]:
            keyless |= frame[column].isna()
        if suite == "expense_claims":
            keyless = frame["claim_code"].isna() & frame["flow_id"].isna()
        drop = keyless.to_numpy(dtype=bool)
        keys_here = quarantined.get(SOURCE_SUITES[suite], set())
        if keys_here:
            drop = drop | record_keys(suite, frame).isin(keys_here).to_numpy(dtype=bool, na_value=False)
        parents = _claim_keys(suite, frame)
        if parents is not None and claim_keys:
            drop = drop | parents.isin(claim_keys).to_numpy(dtype=bool, na_value=False)
        if drop.any():
            clean[suite] = frame.loc[~drop].reset_index(drop=True)
    return with_frames(sides, clean) if clean else sides


def quarantine_gate(settings: Settings, *, state_engine: Engine | None = None) -> SourceGate:
    """The seam's gate after a separate validation task: leave out what that task quarantined for the run."""

    def gate(sides: Sides, run: RunInfo) -> Sides:
        with _state(settings, state_engine) as state:
            quarantined = run_quarantine(state, run.run_id)
        return apply_quarantine(sides, quarantined)  # type: ignore[no-any-return]

    return gate


# --- DAG steps -----------------------------------------------------------------------------------


def _gate_step(state: Engine, run: RunInfo, sides: Any, settings: Settings) -> dict[str, Any]:
    try:
        outcome = validate_sources(
            sides,
            settings=settings,
            as_of=run.as_of,
            run_id=run.run_id,
            state_engine=state,
            force=run.forced,
            full_run=_full(run),
            suites=suites_of(run),
        )
    except RunStopped as stopped:
        finish_run(state, run.run_id, "stopped", error=one_line(stopped))
        raise
    return outcome.to_dict()


def validate_sync_stage(settings: Settings, run_id: str) -> dict[str, Any]:
    """Sync DAG step between extract and plan: validate the staged frames, quarantine, or stop the run.

    Rerunning it validates the same staged frames again (same quarantine, results replaced);
    once the run has a plan there is nothing left to gate.
    """
    from claimsync.sync import load_run, staged_sides
    from claimsync.writeback import has_plan

    with _state(settings, None) as state:
        run, _ = load_run(state, run_id)
        if has_plan(state, run_id):
            return {"run_id": run_id, "skipped": "the run already has its plan"}
        return {"run_id": run_id, **_gate_step(state, run, staged_sides(state, run_id), settings)}


def _reconcile_run(state: Engine, run_id: str) -> RunInfo:
    found = read_run(state, run_id)
    if found is None or found[0].flow != "reconcile":
        raise ClaimsyncError(f"no reconciliation run {run_id!r} in the state database: start it first")
    return found[0]


def validate_reconcile_run(settings: Settings, run_id: str, *, force: bool = False) -> dict[str, Any]:
    """Reconcile DAG step before the buckets: extract the run's scope once, validate, quarantine, or stop."""
    from dataclasses import replace

    from claimsync.extract import Window, extract_sides

    settings.require_urls("oa", "expense", "state")
    assert settings.oa_url is not None
    assert settings.expense_url is not None
    oa, expense = create_engine(settings.oa_url, "oa"), create_engine(settings.expense_url, "expense")
    try:
        with _state(settings, None) as state:
            run = _reconcile_run(state, run_id)
            run = replace(run, forced=run.forced or force)
            window = None
            if not run.full_run and run.window_start is not None and run.window_end is not None:
                window = Window(start=run.window_start, end=run.window_end)
            sides = extract_sides(oa, expense, settings, window=window)
            return {"run_id": run_id, **_gate_step(state, run, sides, settings)}
    finally:
        oa.dispose()
        expense.dispose()
