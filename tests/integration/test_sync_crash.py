"""Crash safety: a sync process killed with SIGKILL at any point, then rerun, ends exactly as a run
that never crashed — both systems equal, one audit row per applied change, nothing lost or doubled.

Each trial clones the same demo data, starts a full sync of both flows (``run_sync``, what
``claimsync sync all --full`` runs) in a child process with small batches (many
transactions) and SIGKILLs it:

- **inside a target transaction**: the test holds a row lock on a record the plan updates,
  waits until the sync's UPDATE is blocked on it (pg_stat_activity), kills, releases;
- **between apply and confirm**: the test locks the audit rows of the last OA batch in the
  state DB; the sync commits that batch on OA, blocks confirming it, and is killed;
- **at a random point of the apply phase** (after a random number of confirmed batches: between
  batches, inside one, or confirming).

The rerun is either a new run (it finishes the dead run's unconfirmed batches first) or the
same run id again (a retried DAG task). Either way the result must equal the no-crash run.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

import pytest
import sqlalchemy as sa

from claimsync.pgserver import PgServer
from claimsync.sync import run_sync
from tests.integration.sync_support import (
    AS_OF,
    Clone,
    Snapshot,
    Template,
    audit,
    clone,
    drop_template,
    make_template,
    rows,
    scalar,
    snapshot,
)

pytestmark = pytest.mark.slow

TRIALS = 24
BATCH_SIZE = "4"


@dataclass
class Reference:
    snapshot: Snapshot
    applied: Counter[tuple[str, str, str]]
    updates: list[tuple[str, str, str]]  # (target, table, record key) of planned updates


@pytest.fixture(scope="module")
def template(pg_server: PgServer) -> Iterator[Template]:
    made = make_template(pg_server, scale=400, seed=4242)
    yield made
    drop_template(made)


@pytest.fixture(scope="module")
def reference(template: Template) -> Reference:
    """The no-crash result: one uninterrupted sync of the same data."""
    systems = clone(template)
    try:
        outcome = run_sync(systems.settings, "all", full=True, as_of=AS_OF)
        assert outcome.written > 30  # enough writes for many batches
        applied = Counter((r.target, r.table_name, r.record_key) for r in audit(systems) if r.status == "applied")
        updates = [
            (r.target, r.table_name, r.record_key)
            for r in audit(systems)
            if r.status == "applied" and r.operation == "update"
        ]
        return Reference(snapshot(systems, runs=False), applied, updates)
    finally:
        systems.drop()


def _sync(oa_url: str, expense_url: str, state_url: str) -> None:
    """The child process: one full sync of both flows, as ``claimsync sync all --full`` runs it
    (the data-quality gates, tested on their own, are left out: the kill must land in the sync)."""
    from claimsync.config import Settings
    from claimsync.sync import run_sync

    os.environ["CLAIMSYNC_BATCH_SIZE"] = BATCH_SIZE
    run_sync(Settings(oa_url=oa_url, expense_url=expense_url, state_url=state_url), "all", full=True,
             triggered_by="crash-trial")  # fmt: skip


# Children fork from a server that has imported claimsync once (and started no threads), so a
# trial does not pay the interpreter start and imports again: the kill lands in the sync itself.
_FORKSERVER = multiprocessing.get_context("forkserver")
_FORKSERVER.set_forkserver_preload(["claimsync.sync", "claimsync.extract", "claimsync.reconcile", "claimsync.plan"])


def _start(systems: Clone) -> BaseProcess:
    settings = systems.settings
    proc = _FORKSERVER.Process(
        target=_sync, args=(str(settings.oa_url), str(settings.expense_url), str(settings.state_url))
    )
    proc.start()
    return proc


def _wait_until(predicate: Any, proc: BaseProcess, timeout: float = 60.0) -> bool:
    """Poll ``predicate`` until true; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if not proc.is_alive():
            return False
        time.sleep(0.005)
    raise AssertionError("timed out waiting for the sync process")


def _blocked_on_lock(engine: sa.Engine, database: str) -> bool:
    return bool(
        scalar(
            engine,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND wait_event_type = 'Lock'",
            d=database,
        )
    )


def _plan_stored(state: sa.Engine) -> bool:
    try:
        return bool(scalar(state, "SELECT count(*) FROM claimsync.write_batch"))
    except sa.exc.ProgrammingError:  # the state schema is not created yet
        return False


def _confirmed_batches(state: sa.Engine) -> int:
    return int(scalar(state, "SELECT count(*) FROM claimsync.write_batch WHERE status = 'confirmed'"))


def _kill(proc: BaseProcess) -> bool:
    """SIGKILL; True if the process was still running (a real crash)."""
    if not proc.is_alive():
        proc.join()
        assert proc.exitcode == 0, f"the sync failed on its own (exit {proc.exitcode})"
        return False
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    return True


def _lock_row(engine: sa.Engine, target: str, table: str, key: str) -> sa.Connection:
    """Open a transaction holding a row lock on the record a planned update will change."""
    conn = engine.connect()
    conn.begin()
    if target == "oa":
        form = "ecology.formtable_main_38"
        conn.execute(sa.text(f"SELECT 1 FROM {form} WHERE requestid = :k FOR UPDATE"), {"k": int(key)})
    else:
        conn.execute(sa.text(f'SELECT 1 FROM ekb."{table}" WHERE code = :k FOR UPDATE'), {"k": key})
    return conn


def _crash(systems: Clone, kind: str, rng: random.Random, reference: Reference) -> bool:
    """Run the sync in a subprocess and kill it the way ``kind`` says; True if it was killed mid-run."""
    state = systems.engine("state")
    admin = systems.engine("state")
    engines = [state, admin]
    holder: sa.Connection | None = None
    try:
        if kind == "inside_target_transaction":
            target, table, key = rng.choice(reference.updates)
            engines.append(systems.engine(target))
            holder = _lock_row(engines[-1], target, table, key)
            proc = _start(systems)
            blocked = _wait_until(lambda: _blocked_on_lock(admin, systems.names[target]), proc)
            killed = _kill(proc)
            assert blocked
        elif kind == "between_apply_and_confirm":
            proc = _start(systems)
            _wait_until(lambda: _plan_stored(state), proc)
            holder = state.connect()
            holder.begin()
            # Lock the audit rows of the last OA batch: the sync reads and applies the batch, commits
            # it on OA, then blocks confirming it.
            locked = holder.execute(
                sa.text(
                    "SELECT w.id FROM claimsync.planned_write w WHERE w.target = 'oa' AND w.status = 'planned'"
                    " AND w.batch_no = (SELECT max(batch_no) FROM claimsync.write_batch WHERE target = 'oa')"
                    " FOR UPDATE"
                )
            ).all()
            assert locked, "the OA batches were confirmed before the test could lock one"
            blocked = _wait_until(lambda: _blocked_on_lock(admin, systems.names["state"]), proc)
            assert blocked
            # The sync is now waiting to confirm a batch it has committed on OA.
            killed = _kill(proc)
        else:
            # At a random point of the apply: once a random number of its batches are confirmed
            # (never all of the first plan's), after a random pause shorter than a batch. A point
            # in progress, not a wall-clock delay: a faster sync would slip past a fixed delay.
            proc = _start(systems)
            _wait_until(lambda: _plan_stored(state), proc)
            batches = int(scalar(state, "SELECT count(*) FROM claimsync.write_batch"))
            confirmed = rng.randrange(max(1, batches - 1))
            _wait_until(lambda: _confirmed_batches(state) >= confirmed, proc)
            time.sleep(rng.uniform(0.0, 0.01))
            killed = _kill(proc)
        return killed
    finally:
        if holder is not None:
            holder.rollback()
            holder.close()
        for engine in engines:
            engine.dispose()


def _wait_for_orphans(systems: Clone) -> None:
    """Let the killed process's server sessions end (a blocked one ends once its lock is free)."""
    admin = systems.engine("state")
    try:
        for _ in range(500):
            left = scalar(
                admin,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(:d) AND pid <> pg_backend_pid()",
                d=list(systems.names.values()),
            )
            if not left:
                return
            time.sleep(0.02)
    finally:
        admin.dispose()


def test_a_sync_killed_anywhere_and_rerun_equals_the_run_that_never_crashed(
    template: Template, reference: Reference
) -> None:
    rng = random.Random(20260331)
    kinds = ["inside_target_transaction", "between_apply_and_confirm", "random_during_apply"]
    killed_mid_run = 0
    recovered_rows = 0
    dropping: list[threading.Thread] = []
    for trial in range(TRIALS):
        kind = kinds[trial % len(kinds)]
        systems = clone(template)
        try:
            killed_mid_run += _crash(systems, kind, rng, reference)
            _wait_for_orphans(systems)
            state = systems.engine("state")
            dead = rows(state, "SELECT run_id FROM claimsync.sync_run")
            same_run = trial % 2 == 1
            if same_run:  # a retried DAG task: the same run id again
                outcome = run_sync(systems.settings, "all", full=True, as_of=AS_OF, run_id=dead[0].run_id)
            else:  # a new run: it finishes the dead run's unconfirmed batches, then plans the rest
                outcome = run_sync(systems.settings, "all", full=True, as_of=AS_OF)
            assert outcome.count("conflict") == 0, (trial, kind)

            context = f"trial {trial} ({kind}, {'same run' if same_run else 'new run'})"
            assert snapshot(systems, runs=False) == reference.snapshot, context
            applied = Counter((r.target, r.table_name, r.record_key) for r in audit(systems) if r.status == "applied")
            assert applied == reference.applied, context  # 0 lost, 0 duplicated, one audit row per change
            recovered_rows += int(
                scalar(
                    state,
                    "SELECT count(*) FROM claimsync.planned_write WHERE detail LIKE 'found at its after-image%'",
                )
            )
            if kind == "between_apply_and_confirm":
                # The killed batch was on OA but unconfirmed: the rerun recognised it, did not rewrite it.
                assert recovered_rows > 0, context
            if trial % 4 == 0:  # and running again writes nothing
                assert run_sync(systems.settings, "all", full=True, as_of=AS_OF).written == 0, context
            state.dispose()
        finally:
            dropping.append(threading.Thread(target=systems.drop))  # dropping is I/O: overlap it
            dropping[-1].start()
    for thread in dropping:
        thread.join()
    assert killed_mid_run == TRIALS  # every trial killed the sync mid-run (at least 20 asked)
