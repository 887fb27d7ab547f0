"""A real Airflow for end-to-end tests: api-server, scheduler, dag-processor (and Celery workers).

Not ``airflow standalone`` (SIGTERM orphans its children, STACK.md): every component is
started on its own, in its own session, and stopped by its process group when the test ends,
even when it failed. The metadata database is a PostgreSQL database on the test server
(several processes write to it at once). The REST API is used the way an operator's browser
or script uses it: a JWT from ``POST /auth/token`` with a SimpleAuthManager password, then
``/api/v2/...``.

    with running_airflow(home, metadata_url, extra_env={...}) as airflow:
        airflow.wait_for_dag("claimsync_claim_sync")
        run_id = airflow.trigger("claimsync_claim_sync", ...)
        airflow.wait_for_run("claimsync_claim_sync", run_id, {"success"})
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from claimsync.resources import project_dir

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
# The operator uses an "op" account (may clear, trigger and backfill; no admin rights).
OPERATOR = "operator"
USERS = f"admin:admin,{OPERATOR}:op"
AIRFLOW_BIN = Path(sys.executable).parent / "airflow"
DAGS_FOLDER = project_dir() / "dags"
PLUGINS_FOLDER = project_dir() / "plugins"
FINISHED = frozenset({"success", "failed"})


class AirflowError(AssertionError):
    """The test's Airflow misbehaved (a process died, an API call failed, a wait timed out)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_conn_uri(sqlalchemy_url: str, **query: str) -> str:
    """A SQLAlchemy URL as an AIRFLOW_CONN_* URI (plain postgresql:// scheme), extras as query parameters."""
    scheme, rest = sqlalchemy_url.split("://", 1)
    uri = f"{scheme.split('+')[0]}://{rest}"
    if query:
        uri += ("&" if "?" in uri else "?") + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    return uri


@dataclass
class CeleryWorkers:
    """CeleryExecutor with ``names`` workers (``--celery-hostname``), each ``concurrency`` slots."""

    broker_url: str
    result_backend: str
    queue: str
    names: Sequence[str] = ("worker-a", "worker-b")
    concurrency: int = 1


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class Airflow:
    """The running components and a small REST client (as the ``operator`` user)."""

    home: Path
    env: dict[str, str]
    base_url: str
    processes: list[Process] = field(default_factory=list)
    _token: str | None = None

    # --- processes ------------------------------------------------------------------------

    def start(self, name: str, args: Sequence[str], extra_env: Mapping[str, str] | None = None) -> Process:
        logs = self.home / "process-logs"
        logs.mkdir(exist_ok=True)
        log = logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(AIRFLOW_BIN), *args],
                env={**self.env, **(extra_env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped with everything it forked
                cwd=self.home,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def check_alive(self) -> None:
        for process in self.processes:
            if process.popen.poll() is not None:
                raise AirflowError(
                    f"airflow {process.name} exited with {process.popen.returncode}\n{self.diagnostics()}"
                )

    def stop(self) -> None:
        """SIGTERM every component's process group at once, then SIGKILL whatever is left after a grace period."""
        stop_groups([p.popen for p in self.processes])
        self.processes.clear()

    def diagnostics(self, chars: int = 2500) -> str:
        parts = []
        for process in self.processes:
            text = process.log.read_text(errors="replace") if process.log.exists() else ""
            parts.append(f"--- {process.name} (last {chars} chars) ---\n{text[-chars:]}")
        return "\n".join(parts)

    def wait_for_log(self, name: str, needle: str, timeout: float = 120) -> None:
        """Wait until component ``name`` wrote ``needle`` to its output (e.g. a Celery worker's 'ready.')."""
        process = next(p for p in self.processes if p.name == name)
        deadline = time.monotonic() + timeout
        while needle not in process.log.read_text(errors="replace"):
            self.check_alive()
            if time.monotonic() > deadline:
                raise AirflowError(f"{name} did not log {needle!r} within {timeout:.0f} s\n{self.diagnostics()}")
            time.sleep(0.5)

    # --- REST API --------------------------------------------------------------------------

    def passwords(self) -> dict[str, str]:
        data: dict[str, str] = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        return data

    def token(self, user: str = OPERATOR) -> str:
        """A JWT for ``user`` from POST /auth/token, as the UI's login does."""
        body = {"username": user, "password": self.passwords()[user]}
        reply = self.call("POST", "/auth/token", body, authenticated=False, expect=(200, 201))
        return str(reply["access_token"])

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        authenticated: bool = True,
        expect: Sequence[int] = (200,),
    ) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if authenticated:
            self._token = self._token or self.token()
            headers["Authorization"] = f"Bearer {self._token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        if status not in expect:
            raise AirflowError(f"{method} {path} answered {status}: {payload[:2000]!r}")
        return json.loads(payload) if payload else None

    def wait_healthy(self, timeout: float = 240) -> None:
        """Until the api-server answers and reports a healthy scheduler and dag-processor."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            self.check_alive()
            try:
                last = self.call("GET", "/api/v2/monitor/health", authenticated=False)
                statuses = [last["metadatabase"]["status"], last["scheduler"]["status"]]
                statuses.append((last.get("dag_processor") or {}).get("status"))
                if all(s == "healthy" for s in statuses):
                    return
            except (OSError, AirflowError, KeyError, TypeError) as exc:
                last = exc
            if time.monotonic() > deadline:
                raise AirflowError(f"Airflow not healthy after {timeout:.0f} s: {last}\n{self.diagnostics()}")
            time.sleep(1)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict[str, Any]:
        """Until the dag-processor has parsed ``dag_id``; then unpause it (runs of paused DAGs never start)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                dag: dict[str, Any] = self.call("GET", f"/api/v2/dags/{dag_id}")
                break
            except AirflowError:
                if time.monotonic() > deadline:
                    errors = self.call("GET", "/api/v2/importErrors")
                    raise AirflowError(f"{dag_id} not parsed after {timeout:.0f} s; import errors: {errors}") from None
                time.sleep(1)
        if dag.get("is_paused"):
            dag = self.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        return dag

    def dag_details(self, dag_id: str) -> dict[str, Any]:
        details: dict[str, Any] = self.call("GET", f"/api/v2/dags/{dag_id}/details")
        return details

    def trigger(
        self,
        dag_id: str,
        *,
        interval: tuple[datetime, datetime],
        conf: Mapping[str, Any] | None = None,
        run_id: str | None = None,
    ) -> str:
        """Trigger a run with the given data interval (its logical date is the interval's start)."""
        start, end = interval
        body: dict[str, Any] = {
            "logical_date": start.isoformat(),
            "data_interval_start": start.isoformat(),
            "data_interval_end": end.isoformat(),
            "conf": dict(conf or {}),
        }
        if run_id:
            body["dag_run_id"] = run_id
        reply = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
        return str(reply["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        reply: dict[str, Any] = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
        return reply

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        reply = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=logical_date&limit=100")
        return list(reply["dag_runs"])

    def wait_for_run(
        self, dag_id: str, run_id: str, states: frozenset[str] | set[str] = FINISHED, timeout: float = 240
    ) -> str:
        """Until the run is in one of ``states``; its state. A run that ends in another state fails the test."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            state = str(self.run(dag_id, run_id)["state"])
            if state in states:
                return state
            if state in FINISHED:
                raise AirflowError(
                    f"{dag_id} {run_id} ended {state}, expected {sorted(states)}: "
                    f"{self.task_states(dag_id, run_id)}\n{self.task_log_tails(dag_id, run_id)}"
                )
            if time.monotonic() > deadline:
                raise AirflowError(
                    f"{dag_id} {run_id} still {state} after {timeout:.0f} s: {self.task_states(dag_id, run_id)}\n"
                    f"{self.diagnostics()}"
                )
            time.sleep(1)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        reply = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances?limit=100")
        return list(reply["task_instances"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {
            ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"]
            for ti in self.task_instances(dag_id, run_id)
        }

    def task_log_tails(self, dag_id: str, run_id: str, chars: int = 1500) -> str:
        """The end of the log files of the run's failed tasks (for a failure message)."""
        parts = []
        for path in sorted((self.home / "logs").glob(f"dag_id={dag_id}/run_id={run_id}/**/*.log")):
            text = path.read_text(errors="replace")
            if '"level":"error"' in text or "ERROR" in text:
                parts.append(f"--- {path.relative_to(self.home)} ---\n{text[-chars:]}")
        return "\n".join(parts[-3:])

    def clear(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Sequence[str] | None,
        *,
        downstream: bool = True,
        dry_run: bool = False,
    ) -> list[dict[str, Any]]:
        """What the UI's "Clear" does: POST clearTaskInstances for one run; the cleared (or would-be) TIs."""
        body: dict[str, Any] = {
            "dry_run": dry_run,
            "dag_run_id": run_id,
            "only_failed": False,
            "include_downstream": downstream,
            "reset_dag_runs": True,
        }
        if task_ids is not None:
            body["task_ids"] = list(task_ids)
        reply = self.call("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", body)
        return list(reply["task_instances"])

    def backfill(
        self,
        dag_id: str,
        from_date: datetime,
        to_date: datetime,
        *,
        conf: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        reprocess: str = "none",
    ) -> dict[str, Any]:
        """POST /api/v2/backfills (one run at a time, oldest first), or its dry run."""
        body = {
            "dag_id": dag_id,
            "from_date": from_date.isoformat(),
            "to_date": to_date.isoformat(),
            "run_backwards": False,
            "dag_run_conf": dict(conf or {}),
            "reprocess_behavior": reprocess,
            "max_active_runs": 1,
        }
        reply: dict[str, Any] = self.call("POST", "/api/v2/backfills" + ("/dry_run" if dry_run else ""), body)
        return reply


def stop_groups(popens: Sequence[subprocess.Popen[bytes]], grace: float = 15) -> None:
    """Stop the process groups led by ``popens`` (each started with start_new_session): TERM, then KILL.

    Only these groups are signalled, by their ids: task runners, uvicorn and Celery pool
    processes are in their leader's group, so nothing the test started outlives it.
    """
    for popen in popens:
        with suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for popen in popens:
        with suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
    for popen in popens:
        # Children may outlive their leader (or the leader ignored TERM): kill the rest of the group.
        for _ in range(50):
            try:
                os.killpg(popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        if popen.poll() is None:
            popen.wait(timeout=10)


def airflow_env(
    home: Path, metadata_url: str, port: int, *, executor: str, extra_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment every component gets: a fresh AIRFLOW_HOME, none of the caller's AIRFLOW_/CLAIMSYNC_."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CLAIMSYNC_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__SECRET_KEY": os.urandom(16).hex(),
            "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(16).hex(),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            # Only runs the test asks for: no scheduled runs of "now" (the demo data is in March 2026).
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        }
    )
    env.update(extra_env or {})
    return env


@contextmanager
def running_airflow(
    home: Path,
    metadata_url: str,
    *,
    extra_env: Mapping[str, str] | None = None,
    celery: CeleryWorkers | None = None,
    local_settings: str | None = None,
) -> Iterator[Airflow]:
    """Migrate ``metadata_url``, start the components, wait until healthy; stop them all on exit.

    ``local_settings`` becomes $AIRFLOW_HOME/config/airflow_local_settings.py (cluster policies).
    """
    home.mkdir(parents=True, exist_ok=True)
    if local_settings is not None:
        (home / "config").mkdir(exist_ok=True)
        (home / "config" / "airflow_local_settings.py").write_text(local_settings, encoding="utf-8")
    port = free_port()
    executor = "CeleryExecutor" if celery else "LocalExecutor"
    env = airflow_env(home, metadata_url, port, executor=executor, extra_env=extra_env)
    if celery is not None:
        env.update(
            {
                "AIRFLOW__CELERY__BROKER_URL": celery.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": celery.result_backend,
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(celery.concurrency),
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": celery.queue,
            }
        )
    migrate = subprocess.run(
        [str(AIRFLOW_BIN), "db", "migrate"], env=env, capture_output=True, text=True, check=False, timeout=600
    )
    if migrate.returncode != 0:
        raise AirflowError(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}")
    airflow = Airflow(home, env, f"http://127.0.0.1:{port}")
    try:
        airflow.start("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"])
        airflow.start("dag-processor", ["dag-processor"])
        airflow.start("scheduler", ["scheduler"])
        if celery is not None:
            (home / "config").mkdir(exist_ok=True)
            (home / "config" / "claimsync_test_hostname.py").write_text(
                '"""The test\'s Celery workers name themselves (two workers share this machine)."""\n\n'
                "import os\n\n\ndef worker_name() -> str:\n"
                '    return os.environ["CLAIMSYNC_TEST_WORKER_NAME"]\n',
                encoding="utf-8",
            )
            for name in celery.names:
                airflow.start(
                    name,
                    [
                        "celery",
                        "worker",
                        "--celery-hostname",
                        f"{name}@%h",
                        "--concurrency",
                        str(celery.concurrency),
                        "--queues",
                        celery.queue,
                        "--pid",
                        str(home / f"{name}.pid"),  # two workers share AIRFLOW_HOME: one pid file each
                        "--skip-serve-logs",
                    ],
                    # Two workers on one machine: each reports its own name as the task instances' hostname.
                    extra_env={
                        "CLAIMSYNC_TEST_WORKER_NAME": name,
                        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "claimsync_test_hostname.worker_name",
                        "PYTHONPATH": os.pathsep.join(filter(None, [str(home / "config"), env.get("PYTHONPATH")])),
                    },
                )
        airflow.wait_healthy()
        if celery is not None:
            for name in celery.names:
                airflow.wait_for_log(name, "ready.")
        yield airflow
    finally:
        airflow.stop()
