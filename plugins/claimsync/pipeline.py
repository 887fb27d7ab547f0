"""One reconciliation run, end to end, for the CLI and for the DAG's tasks.

    begin_run → extract_sides → [quality gate] → reconcile → ledger → report → finish_run

:func:`run_reconciliation` does it all in one process (``claimsync reconcile``). The DAG
runs the same steps as separate tasks: :func:`start_reconciliation`, one
:func:`reconcile_bucket` per hash bucket (each stores its partial result in the state DB,
so buckets can run on different workers), :func:`record_partials` (merge, cross-bucket
rules, ledger), :func:`render_report` and :func:`close_run`. Every step marks the run
failed, with a one-line error, when it fails; every step can be rerun.

Data-quality gate: the ``gate`` parameter is the seam where the source validation
(DESIGN.md step 3) plugs in, between extraction and reconcile. It receives the extracted
sides and the run, and returns the sides to reconcile (with quarantined rows left out) or
raises claimsync.errors.RunStopped. ``None`` means no gate is configured.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from claimsync.config import Settings
from claimsync.db import check_reachable, create_engine, database_errors
from claimsync.errors import ClaimsyncError, ConfigError, one_line
from claimsync.ledger import LedgerSummary, attach_snapshots, claim_snapshots, record_reconciliation
from claimsync.migrations import migrate
from claimsync.report import ReportFiles, render_run_report
from claimsync.runs import RunInfo, begin_run, cli_run_id, finish_run, read_run

if TYPE_CHECKING:
    import pandas as pd

    from claimsync.extract import Sides, Window
    from claimsync.reconcile import ReconResult

FLOW: Final = "reconcile"
MAX_BUCKETS: Final = 256

Gate = Callable[["Sides", RunInfo], "Sides"]


@dataclass(frozen=True)
class BucketOutcome:
    """What one bucket found (small: goes through XCom)."""

    run_id: str
    bucket: int
    buckets: int
    exceptions: int
    oa_claims: int
    expense_claims: int
    matched: int
    clean_matched: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReconOutcome:
    """What a reconciliation run found and where its report is."""

    run_id: str
    as_of: datetime
    full: bool
    buckets: int
    counts: Mapping[str, int]
    amounts_cents: Mapping[str, int]
    match_rate: float | None
    ledger: LedgerSummary
    report: ReportFiles | None = None

    @property
    def exception_count(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "full": self.full,
            "buckets": self.buckets,
            "exceptions": self.exception_count,
            "counts": dict(self.counts),
            "amounts_cents": dict(self.amounts_cents),
            "match_rate": self.match_rate,
            "ledger": self.ledger.to_dict(),
            "report": None if self.report is None else self.report.to_dict(),
        }


@dataclass(frozen=True)
class _Figures:
    """A reconciliation result as the ledger reads it (exceptions with both sides attached)."""

    exceptions: pd.DataFrame
    oa_claims: int
    expense_claims: int
    matched: int
    clean_matched: int
    match_rate: float | None
    counts: Mapping[str, int]
    amounts_cents: Mapping[str, int]


# --- engines and run bookkeeping ------------------------------------------------------------


@contextmanager
def _engine(settings: Settings, system: str) -> Iterator[Engine]:
    """An engine for a configured database, checked reachable (one clear line if not)."""
    settings.require_urls(system)
    url = getattr(settings, f"{system}_url")
    assert url is not None
    engine = create_engine(url, system)
    try:
        check_reachable(engine, system)
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _failing_marks_run(state: Engine, run_id: str) -> Iterator[None]:
    """Mark the run failed (with the error in one line) if the block raises; re-raise.

    A database error leaves as a ClaimsyncError of that masked line, the original not chained:
    PostgreSQL's DETAIL and SQLAlchemy's [SQL]/[parameters] echo row values, and the task log
    would print them.
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
        try:
            finish_run(state, run_id, "failed", error=one_line(exc))
        finally:
            raise


def _load_run(state: Engine, run_id: str) -> RunInfo:
    found = read_run(state, run_id)
    if found is None or found[0].flow != FLOW:
        raise ClaimsyncError(f"no reconciliation run {run_id!r} in the state database: start it first")
    return found[0]


def _check_buckets(buckets: int) -> int:
    if not isinstance(buckets, int) or isinstance(buckets, bool) or not 1 <= buckets <= MAX_BUCKETS:
        raise ConfigError(f"buckets must be a whole number from 1 to {MAX_BUCKETS}, got {buckets!r}")
    return buckets


# --- the steps --------------------------------------------------------------------------------


def _begin(state: Engine, settings: Settings, run: RunInfo, buckets: int) -> None:
    migrate(state)
    begin_run(state, run)
    with state.begin() as conn:
        # Partials of an earlier attempt with another bucket count must not be merged into this one.
        conn.execute(
            sa.text("DELETE FROM claimsync.recon_bucket_result WHERE run_id = :r AND buckets <> :n"),
            {"r": run.run_id, "n": buckets},
        )


def _run_info(
    settings: Settings,
    *,
    as_of: datetime,
    run_id: str | None,
    triggered_by: str,
    full: bool,
    buckets: int,
    window_start: datetime | None,
    window_end: datetime | None,
) -> RunInfo:
    _check_buckets(buckets)
    if as_of.tzinfo is None:
        raise ConfigError("as_of must carry a time zone")
    if not full and (window_start is None or window_end is None):
        raise ConfigError("a partial reconciliation (full=false) needs a window: give window_start and window_end")
    return RunInfo(
        run_id=run_id or cli_run_id(FLOW, as_of),
        flow=FLOW,
        as_of=as_of,
        triggered_by=triggered_by,
        config_version=settings.config_version(),
        window_start=window_start,
        window_end=window_end if window_end is not None else as_of,
        full_run=full,
    )


def start_reconciliation(
    settings: Settings,
    *,
    as_of: datetime,
    run_id: str | None,
    triggered_by: str,
    full: bool = True,
    buckets: int = 1,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
) -> dict[str, Any]:
    """Migrate the state schema if needed and record the run; return {run_id, as_of, full, buckets}.

    A partial run (``full=False``) reconciles the records changed in its window
    (``window_start - overlap`` .. ``window_end``); a full run reads everything.
    """
    run = _run_info(
        settings,
        as_of=as_of,
        run_id=run_id,
        triggered_by=triggered_by,
        full=full,
        buckets=buckets,
        window_start=window_start,
        window_end=window_end,
    )
    with _engine(settings, "state") as state:
        _begin(state, settings, run, buckets)
    return {"run_id": run.run_id, "as_of": as_of.isoformat(), "full": full, "buckets": buckets}


def _window(run: RunInfo) -> Window | None:
    """The extraction window of a partial run (extract widens it by settings.overlap); None = everything."""
    if run.full_run or run.window_start is None or run.window_end is None:
        return None
    from claimsync.extract import Window

    return Window(start=run.window_start, end=run.window_end)


@dataclass(frozen=True)
class _Partial:
    """One bucket's reconciliation and the snapshots of the claims its exceptions name."""

    result: ReconResult
    oa_snapshots: pd.DataFrame
    expense_snapshots: pd.DataFrame


def _reconcile_one(
    settings: Settings, oa: Engine, expense: Engine, run: RunInfo, *, bucket: int, buckets: int, gate: Gate | None
) -> _Partial:
    from claimsync.extract import extract_sides
    from claimsync.reconcile import reconcile

    sides = extract_sides(
        oa, expense, settings, window=_window(run), bucket=None if buckets == 1 else (bucket, buckets)
    )
    if gate is not None:  # the data-quality gate (DESIGN.md step 3) plugs in here
        sides = gate(sides, run)
    sides = sides.for_reconcile()
    result = reconcile(sides, as_of=run.as_of, settings=settings)
    oa_snapshots, expense_snapshots = claim_snapshots(result.exceptions, sides.oa_claims, sides.expense_claims)
    return _Partial(result, oa_snapshots, expense_snapshots)


def _merge(partials: Sequence[_Partial]) -> _Figures:
    """Merge the buckets (merge_results decides the cross-bucket duplicate_invoice), then attach both sides."""
    import pandas as pd

    from claimsync.reconcile import merge_results

    results = [p.result for p in partials]
    merged = results[0] if len(results) == 1 else merge_results(results)
    exceptions = attach_snapshots(
        merged.exceptions,
        pd.concat([p.oa_snapshots for p in partials], ignore_index=True),
        pd.concat([p.expense_snapshots for p in partials], ignore_index=True),
    )
    return _Figures(
        exceptions=exceptions,
        oa_claims=merged.oa_claims,
        expense_claims=merged.expense_claims,
        matched=merged.matched,
        clean_matched=merged.clean_matched,
        match_rate=merged.match_rate,
        counts=merged.counts(),
        amounts_cents=merged.amounts_cents(),
    )


def reconcile_bucket(
    settings: Settings, run_id: str, *, bucket: int, buckets: int, gate: Gate | None = None
) -> BucketOutcome:
    """Reconcile one hash bucket of a started run and store its partial result in the state DB."""
    _check_buckets(buckets)
    if not 0 <= bucket < buckets:
        raise ConfigError(f"bucket must be from 0 to {buckets - 1}, got {bucket}")
    with _engine(settings, "state") as state:
        run = _load_run(state, run_id)
        with _failing_marks_run(state, run_id), _engine(settings, "oa") as oa, _engine(settings, "expense") as expense:
            partial = _reconcile_one(settings, oa, expense, run, bucket=bucket, buckets=buckets, gate=gate)
            _store_partial(state, run_id, bucket, buckets, partial)
    result = partial.result
    return BucketOutcome(
        run_id=run_id,
        bucket=bucket,
        buckets=buckets,
        exceptions=len(result.exceptions),
        oa_claims=result.oa_claims,
        expense_claims=result.expense_claims,
        matched=result.matched,
        clean_matched=result.clean_matched,
    )


def _store_partial(state: Engine, run_id: str, bucket: int, buckets: int, partial: _Partial) -> None:
    result = partial.result
    parts = {
        "exceptions": result.exceptions,
        "oa_snapshots": partial.oa_snapshots,
        "expense_snapshots": partial.expense_snapshots,
    }
    if result.pending_invoices is not None:
        parts["pending_invoices"] = result.pending_invoices
    figures = {
        "as_of": result.as_of.isoformat(),
        "oa_claims": result.oa_claims,
        "expense_claims": result.expense_claims,
        "matched": result.matched,
        "clean_matched": result.clean_matched,
    }
    with state.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM claimsync.recon_bucket_result WHERE run_id = :r AND buckets = :n AND bucket = :b"),
            {"r": run_id, "n": buckets, "b": bucket},
        )
        conn.execute(
            sa.text(
                "INSERT INTO claimsync.recon_bucket_result (run_id, buckets, bucket, part, figures, payload)"
                " VALUES (:r, :n, :b, :p, CAST(:f AS jsonb), :payload)"
            ),
            [
                {
                    "r": run_id,
                    "n": buckets,
                    "b": bucket,
                    "p": part,
                    "f": json.dumps(figures),
                    "payload": _parquet(frame),
                }
                for part, frame in parts.items()
            ],
        )


def _load_partials(state: Engine, run_id: str, expected_buckets: int | None) -> tuple[list[_Partial], int]:
    from claimsync.reconcile import ReconResult

    with state.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT buckets, bucket, part, figures, payload FROM claimsync.recon_bucket_result"
                " WHERE run_id = :r ORDER BY buckets, bucket, part"
            ),
            {"r": run_id},
        ).all()
    if not rows:
        raise ClaimsyncError(f"run {run_id!r} has no bucket results: run its reconcile_bucket tasks first")
    buckets = int(rows[0].buckets)
    if expected_buckets is not None and buckets != expected_buckets:
        raise ClaimsyncError(f"run {run_id!r} has results for {buckets} buckets, expected {expected_buckets}")
    grouped: dict[int, tuple[dict[str, pd.DataFrame], dict[str, Any]]] = {}
    for row in rows:
        parts, _ = grouped.setdefault(int(row.bucket), ({}, dict(row.figures)))
        parts[row.part] = _unparquet(bytes(row.payload))
    missing = sorted(set(range(buckets)) - set(grouped))
    if missing:
        raise ClaimsyncError(f"run {run_id!r} lacks the results of bucket(s) {missing}: rerun those tasks")
    partials = []
    for bucket in range(buckets):
        parts, figures = grouped[bucket]
        result = ReconResult(
            as_of=datetime.fromisoformat(figures["as_of"]),
            exceptions=parts["exceptions"],
            oa_claims=int(figures["oa_claims"]),
            expense_claims=int(figures["expense_claims"]),
            matched=int(figures["matched"]),
            clean_matched=int(figures["clean_matched"]),
            pending_invoices=parts.get("pending_invoices"),
        )
        partials.append(_Partial(result, parts["oa_snapshots"], parts["expense_snapshots"]))
    return partials, buckets


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _unparquet(payload: bytes) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(io.BytesIO(payload))


def record_partials(settings: Settings, run_id: str, *, expected_buckets: int | None = None) -> LedgerSummary:
    """Merge a started run's bucket results (cross-bucket rules included) and write the ledger."""
    with _engine(settings, "state") as state:
        run = _load_run(state, run_id)
        with _failing_marks_run(state, run_id):
            partials, buckets = _load_partials(state, run_id, expected_buckets)
            return record_reconciliation(state, run, _merge(partials), full=run.full_run, buckets=buckets)


def render_report(settings: Settings, run_id: str, out_dir: Path) -> ReportFiles:
    """Render the run's report files from the ledger into ``out_dir`` and note them in the run's summary."""
    with _engine(settings, "state") as state, _failing_marks_run(state, run_id):
        files = render_run_report(state, run_id, out_dir, timezone=settings.timezone)
        with state.begin() as conn:
            conn.execute(
                sa.text("UPDATE claimsync.sync_run SET summary = summary || CAST(:s AS jsonb) WHERE run_id = :r"),
                {"s": json.dumps({"report": files.to_dict()}), "r": run_id},
            )
        return files


def close_run(settings: Settings, run_id: str, summary: Mapping[str, Any]) -> None:
    """Mark the run succeeded with its summary (the ledger holds its result); drop bucket results
    older than two weeks."""
    with _engine(settings, "state") as state:
        finish_run(state, run_id, "succeeded", summary)
        with state.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM claimsync.recon_bucket_result WHERE created_at < now() - interval '14 days'")
            )


def run_reconciliation(
    settings: Settings,
    *,
    as_of: datetime,
    run_id: str | None = None,
    triggered_by: str,
    out_dir: Path | None = None,
    full: bool = True,
    buckets: int = 1,
    gate: Gate | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
) -> ReconOutcome:
    """The whole run in this process: begin → extract → gate → reconcile → ledger → report → finish.

    With ``buckets > 1`` both systems are read and reconciled bucket by bucket (less memory
    per step) and the results merged. Raises ClaimsyncError (the run is then marked failed).
    """
    run = _run_info(
        settings,
        as_of=as_of,
        run_id=run_id,
        triggered_by=triggered_by,
        full=full,
        buckets=buckets,
        window_start=window_start,
        window_end=window_end,
    )
    settings.require_urls("oa", "expense", "state")
    with _engine(settings, "state") as state:
        _begin(state, settings, run, buckets)
        with _failing_marks_run(state, run.run_id), _engine(settings, "oa") as oa, _engine(settings, "expense") as exp:
            partials = [
                _reconcile_one(settings, oa, exp, run, bucket=b, buckets=buckets, gate=gate) for b in range(buckets)
            ]
            merged = _merge(partials)
            ledger = record_reconciliation(state, run, merged, full=full, buckets=buckets)
            outcome = ReconOutcome(
                run_id=run.run_id,
                as_of=as_of,
                full=full,
                buckets=buckets,
                counts=merged.counts,
                amounts_cents=merged.amounts_cents,
                match_rate=merged.match_rate,
                ledger=ledger,
            )
            # The reconciliation is complete once the ledger holds it; the report is rendered from there.
            finish_run(state, run.run_id, "succeeded", outcome.to_dict())
            if out_dir is not None:
                files = render_run_report(state, run.run_id, out_dir, timezone=settings.timezone)
                outcome = replace(outcome, report=files)
                finish_run(state, run.run_id, "succeeded", {"report": files.to_dict()})
    return outcome


# --- `claimsync reconcile` ------------------------------------------------------------------


def reconcile_command(args: Any, settings: Settings) -> int:
    """``claimsync reconcile [--as-of T] [--out DIR] [--buckets N]``: run, report, print a summary.

    Exit 0 when the run succeeded (exceptions found are not a failure); ConfigError (2) for
    bad input; ClaimsyncError (1) when the run failed — each one line, via claimsync.cli.
    """
    import getpass
    import socket

    import psycopg2
    from sqlalchemy.exc import DBAPIError

    from claimsync.config import parse_time

    as_of = (
        parse_time(args.as_of, settings.tz, "--as-of")
        if args.as_of
        else datetime.now(settings.tz).replace(microsecond=0)
    )
    buckets = _check_buckets(settings.buckets if args.buckets is None else args.buckets)
    settings.require_urls("oa", "expense", "state")
    out_dir: Path = args.out or Path.cwd() / f"claimsync-report-{as_of:%Y-%m-%d}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the report folder {out_dir}: {exc.strerror or exc}") from None
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    try:
        from claimsync.quality_gates import source_gate

        outcome = run_reconciliation(
            settings,
            as_of=as_of,
            triggered_by=f"cli:{user}@{socket.gethostname()}",
            out_dir=out_dir,
            buckets=buckets,
            gate=source_gate(settings, force=bool(getattr(args, "force", False))),  # the data-quality gate
        )
    except (DBAPIError, psycopg2.Error) as exc:  # a source or the state DB refused a statement
        original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        raise ClaimsyncError(f"the reconciliation failed on a database error: {one_line(original)}") from None
    except OSError as exc:
        raise ClaimsyncError(f"the reconciliation failed writing its report: {exc}") from None
    for line in summary_lines(outcome):
        print(line)
    return 0


def summary_lines(outcome: ReconOutcome) -> list[str]:
    from claimsync.model import format_cents

    rate = "—" if outcome.match_rate is None else f"{outcome.match_rate * 100:.2f}%"
    ledger = outcome.ledger
    lines = [
        f"reconciled as of {outcome.as_of.isoformat()}  (run {outcome.run_id})",
        f"match rate {rate}; {outcome.exception_count} exceptions "
        f"({ledger.new} new, {ledger.reopened} reopened, {ledger.auto_resolved} resolved)",
    ]
    for code, count in sorted(outcome.counts.items(), key=lambda item: (-item[1], item[0])):
        if count:
            lines.append(f"  {code:24s} {count:7d}   {format_cents(outcome.amounts_cents.get(code, 0)):>16s}")
    if outcome.report is not None:
        lines.append(f"report: {outcome.report.html}")
        lines.append(f"        {outcome.report.xlsx}")
        lines.append(f"        {outcome.report.csv}")
    return lines
