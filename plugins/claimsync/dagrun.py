"""Run claimsync's DAGs once through Airflow's own CLI (``airflow dags test``), in a subprocess.

The demo uses this to show the real thing — the DAGs, not a shortcut — without the engine
importing Airflow: Airflow runs in its own process with a project-local AIRFLOW_HOME
(``.claimsync/airflow``, SQLite metadata) and the three connections passed as
``AIRFLOW_CONN_*`` variables, exactly as a local deployment would set them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from claimsync.errors import ClaimsyncError, ConfigError
from claimsync.resources import project_dir


@dataclass(frozen=True)
class DagRunResult:
    dag_id: str
    seconds: float
    log_file: Path


def airflow_connection(url: str) -> str:
    """A SQLAlchemy URL as an Airflow connection in JSON form (handles unix-socket hosts)."""
    parsed = make_url(url)
    socket_dir = parsed.query.get("host")
    host = socket_dir if isinstance(socket_dir, str) else parsed.host
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": host or "",
            "port": parsed.port,
            "login": parsed.username,
            "password": parsed.password,
            "schema": parsed.database,
        }
    )


def airflow_environment(home: Path, urls: dict[str, str], report_dir: Path) -> dict[str, str]:
    dags = project_dir() / "dags"
    if not dags.is_dir():
        raise ConfigError(f"no dags/ folder next to the engine ({dags}): run the demo from a claimsync checkout")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(project_dir() / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "CLAIMSYNC_REPORT_DIR": str(report_dir),
        "CLAIMSYNC_TASK_RETRIES": "0",  # a one-off run: fail fast and show the log, no backoff waits
    }
    for system, url in urls.items():
        env[f"AIRFLOW_CONN_CLAIMSYNC_{system.upper()}"] = airflow_connection(url)
    for system in urls:  # the DAGs must take their databases from the connections, nowhere else
        env.pop(f"CLAIMSYNC_{system.upper()}_URL", None)
    return env


def run_dags_once(
    runs: list[tuple[str, dict[str, object]]], *, logical_date: datetime, urls: dict[str, str], report_dir: Path
) -> list[DagRunResult]:
    """``airflow dags test`` each (dag_id, conf) in order; stop at the first failure with its log file."""
    import time

    home = project_dir() / ".claimsync" / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = airflow_environment(home, urls, report_dir)
    airflow = str(Path(sys.executable).parent / "airflow")
    if not (home / ".migrated").is_file():
        _airflow([airflow, "db", "migrate"], env, home / "db-migrate.log", "airflow db migrate")
        (home / ".migrated").touch()
    results = []
    for dag_id, conf in runs:
        log_file = home / f"{dag_id}.log"
        start = time.perf_counter()
        _airflow(
            [airflow, "dags", "test", dag_id, logical_date.isoformat(), "-c", json.dumps(conf)],
            env,
            log_file,
            f"DAG {dag_id}",
        )
        results.append(DagRunResult(dag_id, time.perf_counter() - start, log_file))
    return results


def _airflow(command: list[str], env: dict[str, str], log_file: Path, what: str) -> None:
    with log_file.open("w", encoding="utf-8") as log:
        result = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:  # `airflow dags test` exits non-zero when the run failed
        raise ClaimsyncError(f"{what} failed; its output is in {log_file}")
