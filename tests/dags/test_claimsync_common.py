"""The DAG-side helpers: connection → SQLAlchemy URL, connection ids, the run's as-of and report folder."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.dags.conftest import DAGS_FOLDER

sys.path.append(str(DAGS_FOLDER))  # as Airflow's bundle loader does
import _claimsync_common as common

SH = ZoneInfo("Asia/Shanghai")


def connection(uri: str, conn_id: str = "claimsync_oa") -> Any:
    from airflow.sdk import Connection

    return Connection(conn_id=conn_id, uri=uri)


@pytest.mark.parametrize(
    ("uri", "url"),
    [
        (
            "postgresql://claimsync:s3cr%40t@db.example:6432/oa",
            "postgresql+psycopg2://claimsync:s3cr%40t@db.example:6432/oa",
        ),
        ("postgres://reader@127.0.0.1/expense", "postgresql+psycopg2://reader@127.0.0.1/expense"),
        (
            "postgresql://u:p@h:5432/state?sslmode=require&connect_timeout=5&cursor=ignored",
            "postgresql+psycopg2://u:p@h:5432/state?connect_timeout=5&sslmode=require",
        ),
    ],
)
def test_an_airflow_connection_becomes_a_sqlalchemy_url(uri: str, url: str) -> None:
    assert common.sqlalchemy_url(connection(uri)) == url


def test_a_unix_socket_directory_host_becomes_the_host_query_parameter() -> None:
    from airflow.sdk import Connection

    conn = Connection(
        conn_id="claimsync_oa", conn_type="postgres", host="/tmp/claimsync pg", login="postgres", schema="oa", port=5432
    )
    assert common.sqlalchemy_url(conn) == "postgresql+psycopg2://postgres@/oa?host=%2Ftmp%2Fclaimsync%20pg"


def test_the_url_works_with_claimsync() -> None:
    from claimsync.db import normalize_url

    parsed = normalize_url(common.sqlalchemy_url(connection("postgresql://u:p%2Fq@h:5/db")))
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == ("u", "p/q", "h", 5, "db")


def test_a_non_database_connection_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="connection 'claimsync_oa' has type 'http'"):
        common.sqlalchemy_url(connection("http://example.com"))


def test_connection_ids_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAIMSYNC_OA_CONN_ID", raising=False)
    assert common.conn_id("oa") == "claimsync_oa"
    monkeypatch.setenv("CLAIMSYNC_OA_CONN_ID", "finance_oa")
    assert common.conn_id("oa") == "finance_oa"
    assert common.conn_id("state") == "claimsync_state"


def test_connections_resolve_from_airflow_conn_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for system in ("oa", "expense", "state"):
        monkeypatch.delenv(f"CLAIMSYNC_{system.upper()}_CONN_ID", raising=False)
        monkeypatch.setenv(f"AIRFLOW_CONN_CLAIMSYNC_{system.upper()}", f"postgresql://u@h/{system}db")
    settings = common.claimsync_settings()
    assert settings.oa_url == "postgresql+psycopg2://u@h/oadb"
    assert settings.state_url == "postgresql+psycopg2://u@h/statedb"


def context(**values: Any) -> dict[str, Any]:
    dag_run = SimpleNamespace(run_after=datetime(2026, 4, 1, 9, 30, tzinfo=SH), run_type="manual")
    return {"dag_run": dag_run, "dag": SimpleNamespace(dag_id="claimsync_reconcile"), **values}


def test_as_of_comes_from_the_param_then_the_interval_then_the_run_never_the_clock() -> None:
    end = datetime(2026, 3, 31, 16, 0, tzinfo=ZoneInfo("UTC"))
    logical = datetime(2026, 3, 30, 16, 0, tzinfo=ZoneInfo("UTC"))
    assert common.run_as_of(context(data_interval_end=end, logical_date=logical), "2026-03-01") == datetime(
        2026, 3, 1, tzinfo=SH
    )
    assert common.run_as_of(context(data_interval_end=end, logical_date=logical)) == end
    assert common.run_as_of(context(data_interval_end=None, logical_date=logical)) == logical
    assert common.run_as_of(context(data_interval_end=None, logical_date=None)) == datetime(
        2026, 4, 1, 9, 30, tzinfo=SH
    )


def test_a_bad_as_of_param_is_one_clear_error() -> None:
    from claimsync.errors import ConfigError

    with pytest.raises(ConfigError, match="the as_of param must be ISO 8601"):
        common.run_as_of(context(), "tomorrow")


def test_report_folder_is_per_run_and_safe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLAIMSYNC_REPORT_DIR", str(tmp_path))
    folder = common.report_dir("scheduled__2026-03-31T16:00:00+00:00/../x")
    assert folder.parent == tmp_path
    assert folder.name == "scheduled__2026-03-31T16_00_00+00_00_.._x"


def test_triggered_by_names_the_dag_the_run_type_and_the_user() -> None:
    ctx = context()
    ctx["dag_run"].triggering_user_name = "finance.li"
    assert common.triggered_by(ctx) == "airflow:claimsync_reconcile:manual:finance.li"


def test_exception_count_for_the_failure_alert_comes_from_xcom() -> None:
    class TI:
        def __init__(self, values: dict[str, Any]) -> None:
            self.values = values

        def xcom_pull(self, task_ids: str) -> Any:
            return self.values.get(task_ids)

    assert common.exceptions_found({"ti": TI({"publish.record_ledger": {"found": 12}})}) == 12
    buckets = [{"exceptions": 3}, {"exceptions": 4}]
    assert common.exceptions_found({"ti": TI({"reconcile.reconcile_bucket": buckets})}) == 7
    assert common.exceptions_found({"ti": TI({})}) is None
    assert json.dumps(common.DEFAULT_ARGS, default=str)  # plain values only
