"""claimsync_reconcile scaled out on CeleryExecutor: Redis broker, two ``airflow celery worker`` processes.

A real api-server, scheduler and dag-processor with CeleryExecutor (broker: the Redis on
127.0.0.1:6379; result backend: the PostgreSQL metadata DB) and two workers, each with one
slot and its own name (``--celery-hostname``, and the name it reports as the task
instances' ``hostname``). The reconcile DAG is triggered through the REST API with
``buckets=4`` (the param's default, from ``CLAIMSYNC_BUCKETS``, as a scheduled run would
get it): the four mapped bucket tasks must have run on both workers, and the run's
ledger and ``exceptions.csv`` must equal a single-process ``claimsync reconcile`` of the
same data. While two buckets run, the test holds their results' table so that neither can
finish first: which worker takes which task is Celery's choice, so only overlap proves both work.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from claimsync.db import create_engine
from claimsync.pgserver import PgServer
from tests.e2e.airflow_processes import Airflow, CeleryWorkers, airflow_conn_uri, running_airflow
from tests.e2e.conftest import DEMO_AS_OF, DemoSources

pytestmark = pytest.mark.slow

DAG_ID = "claimsync_reconcile"
BUCKETS = 4
WORKERS = ("worker-a", "worker-b")
# The broker: the machine's Redis (CI runs one too); a queue of this run's own keeps other tests' workers out.
REDIS_URL = os.environ.get("CLAIMSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def redis_answers(url: str) -> bool:
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 6379)), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def state_dbs(pg_server: PgServer) -> Iterator[dict[str, str]]:
    """Empty state DBs: one for the Airflow run, one for the single-process CLI run."""
    names = {who: f"cs_celery{os.getpid()}_{who}_state" for who in ("airflow", "cli")}
    urls = {who: pg_server.create_database(name, recreate=True) for who, name in names.items()}
    yield urls
    for name in names.values():
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def airflow(
    pg_server: PgServer,
    demo_sources: DemoSources,
    state_dbs: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Airflow]:
    if not redis_answers(REDIS_URL):
        message = f"no Redis at {REDIS_URL}: the Celery test needs one (start redis-server)"
        if os.environ.get("CI"):  # CI machines run Redis: there a missing one is a failure, not a skip
            pytest.fail(message)
        pytest.skip(message)
    metadata = f"cs_celery{os.getpid()}_airflow"
    metadata_url = pg_server.create_database(metadata, recreate=True)
    home = tmp_path_factory.mktemp("airflow_celery")
    dbs = demo_sources.databases
    celery = CeleryWorkers(
        broker_url=REDIS_URL,
        result_backend="db+" + metadata_url,
        queue=f"claimsync-test-{os.getpid()}",
        names=WORKERS,
        concurrency=1,
    )
    extra_env = {
        "AIRFLOW_CONN_CLAIMSYNC_OA": airflow_conn_uri(dbs.oa_url),
        "AIRFLOW_CONN_CLAIMSYNC_EXPENSE": airflow_conn_uri(dbs.expense_url),
        "AIRFLOW_CONN_CLAIMSYNC_STATE": airflow_conn_uri(state_dbs["airflow"]),
        "CLAIMSYNC_REPORT_DIR": str(home / "reports"),
        "CLAIMSYNC_BUCKETS": str(BUCKETS),  # the buckets param's default: scheduled runs scale out too
    }
    try:
        with running_airflow(home, metadata_url, extra_env=extra_env, celery=celery) as running:
            running.wait_for_dag(DAG_ID)
            yield running
    finally:
        pg_server.drop_database(metadata)
        forget_queue(celery.queue)


def forget_queue(queue: str) -> None:
    """Remove what Celery left in Redis for this run's own queue (its list and kombu's binding set)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"*{queue}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def hold_buckets_until_running(
    airflow: Airflow, state_url: str, run_id: str, *, together: int, timeout: float = 240
) -> dict[int, str]:
    """Keep the run's bucket tasks from finishing until ``together`` of them run at the same time.

    Once ``open_run`` has created the run, a SHARE lock on ``claimsync.recon_bucket_result`` makes
    each bucket task wait at storing its result, so it keeps its worker's slot. The lock is released
    as soon as ``together`` bucket tasks are running (or the wait fails); returns {map_index: hostname}
    of the running ones.
    """
    deadline = time.monotonic() + timeout

    def buckets() -> list[dict[str, Any]]:
        return [ti for ti in airflow.task_instances(DAG_ID, run_id) if ti["task_id"] == "reconcile.reconcile_bucket"]

    while airflow.task_states(DAG_ID, run_id).get("prepare.open_run") != "success":
        airflow.check_alive()
        assert time.monotonic() < deadline, f"open_run did not succeed: {airflow.task_states(DAG_ID, run_id)}"
        time.sleep(0.5)
    engine = create_engine(state_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("LOCK TABLE claimsync.recon_bucket_result IN SHARE MODE"))
            stored = conn.execute(
                sa.text("SELECT count(*) FROM claimsync.recon_bucket_result WHERE run_id = :r"), {"r": run_id}
            ).scalar_one()
            assert stored == 0, "a bucket finished before the test could hold the buckets open"
            while True:
                airflow.check_alive()
                running = {ti["map_index"]: ti["hostname"] for ti in buckets() if ti["state"] == "running"}
                if len(running) >= together:
                    return running
                assert time.monotonic() < deadline, (
                    f"{together} bucket tasks never ran at once: {airflow.task_states(DAG_ID, run_id)}\n"
                    f"{airflow.diagnostics()}"
                )
                time.sleep(0.5)
    finally:
        engine.dispose()  # the transaction has ended, so has the lock: the held buckets store their results


def ledger(state_url: str) -> list[tuple[Any, ...]]:
    engine = create_engine(state_url)
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    sa.text(
                        "SELECT code, business_key, severity, status, oa_amount, expense_amount, amount_impact,"
                        " currency, first_seen, last_seen, detail FROM claimsync.recon_exception"
                        " ORDER BY code, business_key"
                    )
                )
            ]
    finally:
        engine.dispose()


def run_stats(state_url: str) -> tuple[Any, ...]:
    engine = create_engine(state_url)
    try:
        with engine.connect() as conn:
            return tuple(conn.execute(sa.text("SELECT buckets, exception_count FROM claimsync.recon_run_stats")).one())
    finally:
        engine.dispose()


def test_four_buckets_on_two_celery_workers_equal_the_single_process_run(
    airflow: Airflow, demo_sources: DemoSources, state_dbs: dict[str, str], tmp_path: Path
) -> None:
    # The single-process result: `claimsync reconcile`, the CLI entry point, same data, same as-of.
    dbs = demo_sources.databases
    cli_out = tmp_path / "cli"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAIMSYNC_", "AIRFLOW"))}
    command = ["reconcile", "--as-of", DEMO_AS_OF.isoformat(), "--out", str(cli_out)]
    command += ["--oa-url", dbs.oa_url, "--expense-url", dbs.expense_url, "--state-url", state_dbs["cli"]]
    done = subprocess.run(
        [sys.executable, "-m", "claimsync", *command], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]

    # The same reconciliation as four mapped tasks over two Celery workers, triggered as an operator
    # would; `buckets` is left to its default, which CLAIMSYNC_BUCKETS set (as for a scheduled run).
    params = airflow.dag_details(DAG_ID)["params"]
    assert params["buckets"]["value"] == BUCKETS, params["buckets"]
    run_id = airflow.trigger(
        DAG_ID, interval=(DEMO_AS_OF - timedelta(days=1), DEMO_AS_OF), conf={"as_of": DEMO_AS_OF.isoformat()}
    )
    # Celery hands a task to whichever worker is free; demo-sized buckets take seconds, so one worker
    # can drain all four before the other gets one (seen in CI). Hold the buckets open until two
    # run at once: with one slot per worker, that is one on each.
    running = hold_buckets_until_running(airflow, state_dbs["airflow"], run_id, together=2)
    assert sorted(running.values()) == sorted(WORKERS), running
    assert airflow.wait_for_run(DAG_ID, run_id, {"success"}, timeout=300) == "success"
    tis = airflow.task_instances(DAG_ID, run_id)
    buckets = [ti for ti in tis if ti["task_id"] == "reconcile.reconcile_bucket"]
    assert sorted(ti["map_index"] for ti in buckets) == list(range(BUCKETS))
    assert {ti["state"] for ti in tis} == {"success"}
    assert {ti["hostname"] for ti in buckets} == set(WORKERS), [(ti["map_index"], ti["hostname"]) for ti in buckets]
    assert {ti["hostname"] for ti in tis} <= set(WORKERS)  # nothing ran in the scheduler

    # Same ledger, same exceptions.csv, byte for byte; only the bucket count differs.
    assert ledger(state_dbs["airflow"]) == ledger(state_dbs["cli"])
    assert len(ledger(state_dbs["cli"])) == sum(demo_sources.key.counts().values())  # type: ignore[attr-defined]
    assert run_stats(state_dbs["airflow"]) == (BUCKETS, run_stats(state_dbs["cli"])[1])
    reports = Path(airflow.env["CLAIMSYNC_REPORT_DIR"])
    (airflow_csv,) = reports.glob("*/exceptions.csv")
    assert airflow_csv.read_bytes() == (cli_out / "exceptions.csv").read_bytes()
