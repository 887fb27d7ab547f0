"""What claimsync's DAG files share: connection ids, connection → SQLAlchemy URL, the run's as-of.

Light on purpose: the scheduler and the DAG processor import this module whenever they
parse a DAG file, so it imports nothing heavy at module level (no claimsync engine, no
pandas, no SQLAlchemy) and touches no database, connection or Variable. Everything that
does happens inside the functions, which only tasks and callbacks call.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from claimsync.config import Settings

# Connection ids are configuration: CLAIMSYNC_<SYSTEM>_CONN_ID, else these defaults.
DEFAULT_CONN_IDS = {"oa": "claimsync_oa", "expense": "claimsync_expense", "state": "claimsync_state"}

# Airflow connection type → SQLAlchemy driver name. claimsync reads PostgreSQL through psycopg2.
_DRIVERS = {
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mssql": "mssql+pyodbc",
    "oracle": "oracle+oracledb",
    "sqlite": "sqlite",
}
# Connection extras that are libpq options, passed on as URL query parameters.
_PASSED_EXTRAS = frozenset({"sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "options",
                            "application_name", "target_session_attrs", "keepalives", "keepalives_idle"})  # fmt: skip

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "claimsync",
    # Operators may lower this for one-off runs (the demo sets 0); deployments keep the default.
    "retries": int(os.environ.get("CLAIMSYNC_TASK_RETRIES", "2")),
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
}


def conn_id(system: str) -> str:
    """The Airflow connection id of ``system`` (oa, expense, state)."""
    return os.environ.get(f"CLAIMSYNC_{system.upper()}_CONN_ID", "").strip() or DEFAULT_CONN_IDS[system]


def sqlalchemy_url(conn: Any) -> str:
    """An Airflow Connection as a SQLAlchemy URL string (password included: never log it)."""
    conn_type = (conn.conn_type or "").lower()
    driver = _DRIVERS.get(conn_type)
    if driver is None:
        raise ValueError(
            f"connection {conn.conn_id!r} has type {conn.conn_type!r}; claimsync needs a database "
            f"connection ({', '.join(sorted(_DRIVERS))})"
        )
    auth = ""
    if conn.login:
        auth = quote(conn.login, safe="")
        if conn.password:
            auth += ":" + quote(conn.password, safe="")
        auth += "@"
    host = conn.host or ""
    port = f":{conn.port}" if conn.port else ""
    database = f"/{quote(conn.schema, safe='')}" if conn.schema else "/"
    extras = {k: v for k, v in (conn.extra_dejson or {}).items() if k in _PASSED_EXTRAS and v is not None}
    if host.startswith("/"):  # a unix-socket directory (libpq's host=/path), e.g. the embedded demo server
        extras["host"], host, port = host, "", ""
    query = "&".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in sorted(extras.items()))
    return f"{driver}://{auth}{host}{port}{database}" + (f"?{query}" if query else "")


def connection_url(system: str) -> str:
    """Resolve ``system``'s Airflow connection to a SQLAlchemy URL (task time only)."""
    from airflow.sdk import Connection

    return sqlalchemy_url(Connection.get(conn_id(system)))


def claimsync_settings() -> Settings:
    """claimsync's Settings from the environment, with URLs from the Airflow connections."""
    from claimsync.config import Settings

    return Settings.from_env().with_urls(
        oa_url=connection_url("oa"), expense_url=connection_url("expense"), state_url=connection_url("state")
    )


def run_as_of(context: Any, explicit: str | None = None) -> datetime:
    """The reconciliation time of a run: the ``as_of`` param, else the run's data interval end,
    else its logical date, else when the run was created (a manual run without a date).

    Never the wall clock: rerunning a task sees the same as-of.
    """
    if explicit:
        from claimsync.config import Settings, parse_time

        return parse_time(explicit, Settings.from_env().tz, "the as_of param")
    for key in ("data_interval_end", "logical_date"):
        value = context.get(key)
        if value is not None:
            return _plain_datetime(value)
    return _plain_datetime(context["dag_run"].run_after)


def run_window(context: Any) -> tuple[datetime | None, datetime | None]:
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    return (None if start is None else _plain_datetime(start), None if end is None else _plain_datetime(end))


def _plain_datetime(value: Any) -> datetime:
    """pendulum DateTime → a plain tz-aware datetime (what psycopg2 and claimsync expect)."""
    return datetime.fromisoformat(value.isoformat())


def report_dir(run_id: str) -> Path:
    """Where a run's report files go: $CLAIMSYNC_REPORT_DIR/<run id>, default $AIRFLOW_HOME/claimsync-reports."""
    base = os.environ.get("CLAIMSYNC_REPORT_DIR") or os.path.join(
        os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "claimsync-reports"
    )
    return Path(base) / re.sub(r"[^A-Za-z0-9_.+-]", "_", run_id)


def triggered_by(context: Any) -> str:
    """Who/what started the run, for the report header: 'airflow:<dag>:<run type>[:<user>]'."""
    dag_run = context["dag_run"]
    run_type = getattr(dag_run, "run_type", None)
    who = getattr(dag_run, "triggering_user_name", None)
    parts = ["airflow", context["dag"].dag_id, str(getattr(run_type, "value", run_type) or "run")]
    if who:
        parts.append(str(who))
    return ":".join(parts)


def on_task_failure(context: Any) -> None:
    """Failure callback: alert (log, and DingTalk/e-mail when configured) naming the DAG, the run,
    the failed task, its error and the number of exceptions the run had found.

    Never raises (a failing callback would hide the task's own error).
    """
    import logging

    try:
        from _claimsync_alerts import alert_run_failed

        alert_run_failed(context, exceptions_found(context))
    except Exception:  # a callback must not fail the failure handling
        logging.getLogger("claimsync").exception("claimsync: the failure callback itself failed")


def exceptions_found(context: Any) -> int | None:
    """The run's exception count from XCom: the ledger task's, else the sum over the buckets."""
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        return None
    try:
        recorded = ti.xcom_pull(task_ids="publish.record_ledger")
        if isinstance(recorded, dict) and "found" in recorded:
            return int(recorded["found"])
        buckets = ti.xcom_pull(task_ids="reconcile.reconcile_bucket")
        if buckets:
            summaries = [buckets] if isinstance(buckets, dict) else list(buckets)
            return sum(int(s.get("exceptions", 0)) for s in summaries if isinstance(s, dict))
    except Exception:  # XCom unavailable (e.g. the failure came before any task ran)
        return None
    return None
