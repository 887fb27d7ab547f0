"""Run bookkeeping in the state schema (claimsync.sync_run) and the per-flow advisory lock."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from claimsync.errors import ClaimsyncError


@dataclass(frozen=True)
class RunInfo:
    """Who and what a run is; ``run_id`` is Airflow's run id, or one the CLI makes."""

    run_id: str
    flow: str  # org | claims | reconcile
    as_of: datetime
    triggered_by: str
    config_version: str
    window_start: datetime | None = None
    window_end: datetime | None = None
    full_run: bool = False
    dry_run: bool = False
    forced: bool = False


def cli_run_id(flow: str, as_of: datetime) -> str:
    """A run id for runs started from the CLI: readable and unique per flow and instant."""
    return f"cli__{flow}__{as_of.isoformat(timespec='seconds')}"


def begin_run(engine: Engine, info: RunInfo) -> None:
    """Record the run (a rerun of the same run id reopens its row; nothing is duplicated)."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO claimsync.sync_run (run_id, flow, status, window_start, window_end, as_of, full_run,"
                " dry_run, forced, triggered_by, config_version)"
                " VALUES (:run_id, :flow, 'running', :window_start, :window_end, :as_of, :full_run, :dry_run,"
                " :forced, :triggered_by, :config_version)"
                " ON CONFLICT (run_id) DO UPDATE SET status = 'running', error = NULL, finished_at = NULL,"
                " forced = EXCLUDED.forced, dry_run = EXCLUDED.dry_run"
            ),
            {
                "run_id": info.run_id,
                "flow": info.flow,
                "window_start": info.window_start,
                "window_end": info.window_end,
                "as_of": info.as_of,
                "full_run": info.full_run,
                "dry_run": info.dry_run,
                "forced": info.forced,
                "triggered_by": info.triggered_by,
                "config_version": info.config_version,
            },
        )


def finish_run(
    engine: Engine, run_id: str, status: str, summary: Mapping[str, Any] | None = None, error: str | None = None
) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE claimsync.sync_run SET status = :status, finished_at = now(),"
                " summary = summary || CAST(:summary AS jsonb), error = :error WHERE run_id = :run_id"
            ),
            {"status": status, "summary": json.dumps(summary or {}, default=str), "error": error, "run_id": run_id},
        )


def read_run(engine: Engine, run_id: str) -> tuple[RunInfo, dict[str, Any]] | None:
    """The run's row as RunInfo plus its summary, or None when there is no such run."""
    with engine.connect() as conn:
        row = (
            conn.execute(sa.text("SELECT * FROM claimsync.sync_run WHERE run_id = :r"), {"r": run_id})
            .mappings()
            .one_or_none()
        )
    if row is None:
        return None
    info = RunInfo(
        run_id=row["run_id"],
        flow=row["flow"],
        as_of=row["as_of"],
        triggered_by=row["triggered_by"],
        config_version=row["config_version"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        full_run=row["full_run"],
        dry_run=row["dry_run"],
        forced=row["forced"],
    )
    return info, dict(row["summary"] or {})


def _lock_key(flow: str) -> int:
    """A stable signed 64-bit advisory-lock key per flow."""
    digest = hashlib.sha256(f"claimsync:{flow}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class FlowBusy(ClaimsyncError):
    """Another copy of the same flow holds the lock; this one exits cleanly without writing."""


@contextmanager
def flow_lock(engine: Engine, flow: str, *, wait: bool = False) -> Iterator[Connection]:
    """Hold the flow's session-level advisory lock in the state DB for the block.

    ``wait=False`` raises FlowBusy at once when another copy runs; ``wait=True`` blocks.
    The lock is tied to the connection: a killed process releases it with its session.
    """
    key = _lock_key(flow)
    with engine.connect() as conn:
        if wait:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        elif not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            raise FlowBusy(f"another {flow} run holds the lock; this copy exits without writing")
        conn.commit()
        try:
            yield conn
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
