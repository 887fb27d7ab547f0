"""Alerts reach a DingTalk robot and a mailbox — local stubs standing in for both — through the DAGs'
own callbacks: a failed task names its DAG, run, task and a link; a reconciliation that finds new
critical exceptions says how many of each; neither leaks a password or a bank account."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.conftest import DEMO_AS_OF, DemoSources, airflow_conn_uri

pytestmark = pytest.mark.slow

SECRET_PASSWORD = "S3cret-alert-pw"
ACCOUNT = "6222021234567891234"
ROBOT_TOKEN = "robot-token-abc123"


class RobotStub(ThreadingHTTPServer):
    """A DingTalk custom robot: records every message, answers errcode 0."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.paths: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stub.paths.append(self.path)
                stub.messages.append(json.loads(body))
                reply = b'{"errcode": 0, "errmsg": "ok"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def robot() -> Iterator[RobotStub]:
    server = RobotStub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def mailbox() -> Iterator[tuple[int, list[bytes]]]:
    from aiosmtpd.controller import Controller

    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.content)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, received
    controller.stop()


@pytest.fixture
def alert_env(monkeypatch: pytest.MonkeyPatch, robot: RobotStub, mailbox: tuple[int, list[bytes]]) -> None:
    port, _ = mailbox
    monkeypatch.setenv("CLAIMSYNC_ALERT_CHANNELS", "dingding,email")
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLAIMSYNC_DINGDING",
        json.dumps({"conn_type": "dingding", "host": f"http://127.0.0.1:{robot.server_port}", "password": ROBOT_TOKEN}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 1, "timeout": 10},
            }
        ),
    )
    monkeypatch.setenv("CLAIMSYNC_ALERT_EMAIL_TO", "finance@example.com")
    monkeypatch.setenv("CLAIMSYNC_UI_BASE_URL", "http://airflow.example.internal:8080")


def _mail_text(raw: bytes) -> tuple[str, str]:
    message = message_from_bytes(raw)
    subject = str(make_header(decode_header(message["Subject"])))
    parts = [p for p in message.walk() if p.get_content_maintype() == "text"]
    body = "".join(p.get_payload(decode=True).decode(p.get_content_charset() or "utf-8") for p in parts)
    return subject, body


PROBE_DAG = """
from datetime import datetime
from zoneinfo import ZoneInfo

from airflow.sdk import dag, task

from _claimsync_common import DEFAULT_ARGS, on_task_failure


@dag(
    dag_id="claimsync_alert_probe",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai")),
    default_args={**DEFAULT_ARGS, "retries": 0, "on_failure_callback": on_task_failure},
)
def claimsync_alert_probe():
    @task
    def apply_expense():
        raise RuntimeError(
            "could not reach postgresql://writer:%(password)s@db.internal/expense while paying %(account)s"
        )

    apply_expense()


claimsync_alert_probe()
"""


def _probe_dag(folder: Path) -> Any:
    """A one-task DAG using the claimsync failure callback, registered in the metadata DB like a parsed file."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    (folder / "claimsync_alert_probe.py").write_text(PROBE_DAG % {"password": SECRET_PASSWORD, "account": ACCOUNT})
    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.dags["claimsync_alert_probe"]


def test_a_failed_task_alerts_both_channels_without_secrets(
    airflow_home: Path, alert_env: None, robot: RobotStub, mailbox: tuple[int, list[bytes]], tmp_path: Path
) -> None:
    probe = _probe_dag(tmp_path)
    dag_run = probe.test(run_after=datetime(2026, 3, 31, 4, 0, tzinfo=ZoneInfo("UTC")))
    assert "failed" in str(dag_run.state).lower()

    assert robot.paths == [f"/robot/send?access_token={ROBOT_TOKEN}"]
    message = robot.messages[0]
    assert message["msgtype"] == "markdown"
    text = message["markdown"]["text"]
    assert message["markdown"]["title"] == "[claimsync] claimsync_alert_probe failed"
    for expected in (
        dag_run.run_id,
        "`apply_expense`",
        "http://airflow.example.internal:8080/dags/claimsync_alert_probe/runs/",
    ):
        assert expected in text
    assert "6222 **** **** 1234" in text

    _, received = mailbox
    assert len(received) == 1
    subject, body = _mail_text(received[0])
    assert subject == "[claimsync] claimsync_alert_probe failed"
    assert dag_run.run_id in body
    for leaked in (SECRET_PASSWORD, ACCOUNT, ROBOT_TOKEN):
        assert leaked not in text
        assert leaked.encode() not in received[0]


@pytest.mark.usefixtures("airflow_home", "alert_env")
def test_new_critical_exceptions_alert_once(
    robot: RobotStub, demo_sources: DemoSources, pg_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from claimsync.rules import ExceptionCode, Severity

    bag = DagBag(dag_folder=str(Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / "claimsync_reconcile.py"))
    reconcile = bag.dags["claimsync_reconcile"]
    state_name = f"cs_alert_state_{os.getpid()}"
    state_url = pg_server.create_database(state_name, recreate=True)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_CLAIMSYNC_OA", airflow_conn_uri(demo_sources.databases.oa_url))
        monkeypatch.setenv("AIRFLOW_CONN_CLAIMSYNC_EXPENSE", airflow_conn_uri(demo_sources.databases.expense_url))
        monkeypatch.setenv("AIRFLOW_CONN_CLAIMSYNC_STATE", airflow_conn_uri(state_url))
        monkeypatch.setenv("CLAIMSYNC_REPORT_DIR", str(tmp_path))
        conf = {"as_of": DEMO_AS_OF.isoformat(), "full": True, "buckets": 1}
        first = datetime(2026, 3, 29, 16, 0, tzinfo=ZoneInfo("UTC"))
        reconcile.test(logical_date=first, run_after=first, run_conf=conf)

        key: Any = demo_sources.key
        critical = {c.value for c in ExceptionCode if c.severity is Severity.CRITICAL}
        expected = {code: len(keys) for code, keys in key.exceptions.items() if code in critical and keys}
        assert len(robot.messages) == 1, robot.messages
        text = robot.messages[0]["markdown"]["text"]
        for code, count in expected.items():
            assert f"`{code}`: {count} (¥" in text
        assert "amount_mismatch" not in text  # high, not critical
        assert "/recon/runs/" in text

        second = datetime(2026, 3, 30, 16, 0, tzinfo=ZoneInfo("UTC"))
        reconcile.test(logical_date=second, run_after=second, run_conf=conf)
        assert len(robot.messages) == 1  # nothing new the next day: no second alert
    finally:
        pg_server.drop_database(state_name)
