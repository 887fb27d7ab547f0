"""The quality gate's state: claimsync.quarantine and claimsync.validation_result (every SQL statement here).

Quarantine rows are keyed (source, entity, record_key, expectation). Storing a run's rows is
one COPY into a temporary table and one set-based upsert, so a rerun of the same run changes
nothing, a row seen again gets ``last_seen``/``last_run_id`` (and is reopened if it had been
released), and release is one UPDATE: an open row whose record was validated in this run (any
record of its entity in a full run) and did not fail that check again.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from claimsync.db import copy_in


@dataclass(frozen=True)
class QuarantineWrite:
    source: str
    entity: str
    record_key: str
    expectation: str
    reason: str
    offending: Mapping[str, Any]
    claim_key: str | None = None


@dataclass(frozen=True)
class QuarantineCounts:
    new: int
    seen_again: int
    released: int


@dataclass(frozen=True)
class RunScope:
    flow: str
    full_run: bool


def run_scope(engine: Engine, run_id: str) -> RunScope | None:
    """The run's flow and whether it extracts everything (a reconcile run always does)."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT flow, full_run FROM claimsync.sync_run WHERE run_id = :run_id"), {"run_id": run_id}
        ).first()
    if row is None:
        return None
    return RunScope(flow=row.flow, full_run=bool(row.full_run) or row.flow == "reconcile")


def previous_row_counts(engine: Engine, run_id: str, suites: Sequence[str], flow: str | None) -> dict[str, int]:
    """Rows per suite in the latest earlier full run of the same flow whose gate did not stop it.

    Only the same flow compares: a claim sync reads no employees, so an org run's counts say
    nothing about it. (Results stored without a run row — direct API use — compare with any flow.)
    """
    if not suites:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT DISTINCT ON (v.suite) v.suite, (v.statistics->>'rows')::bigint AS row_count"
                " FROM claimsync.validation_result v"
                " LEFT JOIN claimsync.sync_run r ON r.run_id = v.run_id"
                " WHERE v.suite = ANY(:suites) AND v.run_id <> :run_id"
                "   AND (r.flow IS NULL OR CAST(:flow AS text) IS NULL OR r.flow = :flow)"
                "   AND v.statistics->>'full_run' = 'true' AND coalesce(v.statistics->>'gate', '') <> 'stopped'"
                " ORDER BY v.suite, v.created_at DESC, v.id DESC"
            ),
            {"suites": list(suites), "run_id": run_id, "flow": flow},
        ).all()
    return {r.suite: int(r.row_count) for r in rows if r.row_count is not None}


def store_results(engine: Engine, run_id: str, results: Mapping[str, tuple[bool, Mapping[str, Any]]]) -> None:
    """One validation_result row per suite for the run (a rerun replaces it)."""
    if not results:
        return
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO claimsync.validation_result (run_id, suite, success, statistics)"
                " VALUES (:run_id, :suite, :success, CAST(:statistics AS jsonb))"
                " ON CONFLICT (run_id, suite) DO UPDATE SET success = EXCLUDED.success,"
                " statistics = EXCLUDED.statistics, created_at = now()"
            ),
            [
                {"run_id": run_id, "suite": suite, "success": success, "statistics": json.dumps(stats, default=str)}
                for suite, (success, stats) in results.items()
            ],
        )


def _csv(rows: Iterable[Sequence[Any]]) -> io.BytesIO:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    for row in rows:
        # Empty unquoted field = NULL for COPY; claimsync never stores an empty key or reason.
        writer.writerow(["" if v is None else v for v in row])
    return io.BytesIO(text.getvalue().encode("utf-8"))


def _load_temp(conn: Connection, table: str, columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]]) -> None:
    conn.execute(
        sa.text(f"CREATE TEMPORARY TABLE {table} ({', '.join(f'{c} {t}' for c, t in columns)}) ON COMMIT DROP")
    )
    copy_in(conn, "pg_temp", table, [c for c, _ in columns], _csv(rows))


def store_quarantine(
    engine: Engine,
    run_id: str,
    rows: Sequence[QuarantineWrite],
    *,
    validated: Iterable[tuple[str, str]],
    seen_keys: Mapping[tuple[str, str], Iterable[str]] | None,
) -> QuarantineCounts:
    """Upsert this run's quarantine rows and release the fixed ones, in one transaction.

    ``validated`` lists the (source, entity) frames this run validated; ``seen_keys`` the record
    keys each of them held (None in a full run: every open row of those entities not failing
    now is released — the record was fixed or is gone).
    """
    pairs = sorted({f"{s}/{e}" for s, e in validated})
    with engine.begin() as conn:
        _load_temp(
            conn,
            "quality_q_in",
            [("source", "text"), ("entity", "text"), ("record_key", "text"), ("expectation", "text"),
             ("reason", "text"), ("offending", "jsonb"), ("claim_key", "text")],
            (
                (r.source, r.entity, r.record_key, r.expectation, r.reason,
                 json.dumps(r.offending, ensure_ascii=False, default=str), r.claim_key)
                for r in rows
            ),
        )  # fmt: skip
        upserted = conn.execute(
            sa.text(
                "INSERT INTO claimsync.quarantine AS q (source, entity, record_key, expectation, reason, offending,"
                " claim_key, first_run_id, last_run_id, first_seen, last_seen)"
                " SELECT source, entity, record_key, expectation, reason, offending, claim_key, :run_id, :run_id,"
                " now(), now() FROM quality_q_in"
                " ON CONFLICT (source, entity, record_key, expectation) DO UPDATE SET"
                "   reason = EXCLUDED.reason, offending = EXCLUDED.offending, claim_key = EXCLUDED.claim_key,"
                "   seen_runs = q.seen_runs + CASE WHEN q.last_run_id = EXCLUDED.last_run_id THEN 0 ELSE 1 END,"
                "   last_run_id = EXCLUDED.last_run_id, last_seen = EXCLUDED.last_seen,"
                "   released_at = NULL, released_run_id = NULL"
                " RETURNING (xmax = 0) AS inserted"
            ),
            {"run_id": run_id},
        ).scalars()
        inserted = list(upserted)
        if seen_keys is None:
            seen_filter = ""
        else:
            _load_temp(
                conn,
                "quality_seen",
                [("source", "text"), ("entity", "text"), ("record_key", "text")],
                ((s, e, k) for (s, e), keys in seen_keys.items() for k in keys),
            )
            seen_filter = (
                " AND EXISTS (SELECT 1 FROM quality_seen s WHERE s.source = q.source AND s.entity = q.entity"
                " AND s.record_key = q.record_key)"
            )
        released = conn.execute(
            sa.text(
                "UPDATE claimsync.quarantine AS q SET released_at = now(), released_run_id = :run_id"
                " WHERE q.released_at IS NULL AND (q.source || '/' || q.entity) = ANY(:pairs)"
                " AND NOT EXISTS (SELECT 1 FROM quality_q_in i WHERE i.source = q.source AND i.entity = q.entity"
                "   AND i.record_key = q.record_key AND i.expectation = q.expectation)" + seen_filter
            ),
            {"run_id": run_id, "pairs": pairs},
        ).rowcount
    return QuarantineCounts(new=sum(inserted), seen_again=len(inserted) - sum(inserted), released=int(released or 0))


@dataclass(frozen=True)
class SuiteSummary:
    suite: str
    success: bool
    statistics: Mapping[str, Any]


@dataclass(frozen=True)
class ValidationSummary:
    """A run's data-quality results, for the report: per suite, and the quarantine's state."""

    run_id: str
    suites: tuple[SuiteSummary, ...]
    quarantined_open: int  # records in quarantine now (all runs)
    quarantined_in_run: int  # quarantine rows this run saw (new or again)
    new_in_run: int
    released_in_run: int
    by_expectation: Mapping[str, int] = field(default_factory=dict)  # this run's rows per failed check
    gate: str = "passed"  # passed | forced | stopped | not validated

    @property
    def success(self) -> bool:
        return all(s.success for s in self.suites)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validation_summary(engine: Engine, run_id: str) -> ValidationSummary:
    with engine.connect() as conn:
        suites = conn.execute(
            sa.text(
                "SELECT suite, success, statistics FROM claimsync.validation_result"
                " WHERE run_id = :run_id ORDER BY suite"
            ),
            {"run_id": run_id},
        ).all()
        counts = conn.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE released_at IS NULL) AS open,"
                " count(*) FILTER (WHERE last_run_id = :run_id) AS in_run,"
                " count(*) FILTER (WHERE first_run_id = :run_id) AS new_in_run,"
                " count(*) FILTER (WHERE released_run_id = :run_id) AS released_in_run"
                " FROM claimsync.quarantine"
            ),
            {"run_id": run_id},
        ).one()
        by_expectation = conn.execute(
            sa.text(
                "SELECT expectation, count(*) AS n FROM claimsync.quarantine WHERE last_run_id = :run_id"
                " GROUP BY expectation ORDER BY n DESC, expectation"
            ),
            {"run_id": run_id},
        ).all()
    gates = {str((r.statistics or {}).get("gate", "passed")) for r in suites}
    gate = "not validated" if not suites else next((g for g in ("stopped", "forced") if g in gates), "passed")
    return ValidationSummary(
        run_id=run_id,
        suites=tuple(SuiteSummary(r.suite, bool(r.success), dict(r.statistics or {})) for r in suites),
        quarantined_open=int(counts.open),
        quarantined_in_run=int(counts.in_run),
        new_in_run=int(counts.new_in_run),
        released_in_run=int(counts.released_in_run),
        by_expectation={r.expectation: int(r.n) for r in by_expectation},
        gate=gate,
    )
