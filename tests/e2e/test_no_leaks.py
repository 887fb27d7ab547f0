"""Secrets and personal data never leak: a planted password and planted personal data, searched everywhere.

The three databases belong to a login role with a known, distinctive password; the Airflow
connections (``AIRFLOW_CONN_CLAIMSYNC_*``) carry it. The demo data gets a known bank account
(every payment's ``payee_account``), and one employee a known mobile (which the org sync
must copy to expense ``staff.cellphone``) and ID number (``certificatenum``). Then the DAGs
run through ``dag.test()``: a claim sync that cannot reach its expense database, an org sync
and a claim sync that succeed, and a bucketed reconciliation with its report; and in a real
Airflow (api-server, scheduler, dag-processor) an org sync whose write the expense database
rejects with a constraint error that quotes the whole row, cellphone included.

Neither the password nor the clear account, mobile or ID number may then appear in the task
logs (everything the tasks printed or logged; the real Airflow's log files under
AIRFLOW_HOME/logs and the log its UI shows through the REST API), in
Airflow's metadata DB (XCom, rendered fields, the event log …), in the report files (HTML,
CSV, and the XML inside the XLSX), or anywhere in the state DB — the quarantine, the ledger
and its details, run summaries and errors — with one exception by design: the before- and
after-images of the planned ``staff.cellphone`` write hold the mobile it writes (a revert
and the compare-and-set need the value; the state DB is as sensitive as the targets).

Also: configurable identifiers set to injection strings stop ``claimsync reconcile`` and
``claimsync sync`` with exit code 2 before any connection is opened.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import json
import logging
import os
import sqlite3
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from claimsync.config import Settings
from claimsync.db import create_engine
from claimsync.pgserver import PgServer
from tests.e2e.conftest import DAGS_FOLDER

pytestmark = pytest.mark.slow

AS_OF = datetime(2026, 3, 31, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
UTC = ZoneInfo("UTC")
PASSWORD = "Cs-leak@7Qz9/wT4:pX2%e"  # URL-special characters on purpose: quoted in every URL form
ACCOUNT = "6222024402012345678"
MOBILE = "13957246810"
OLD_MOBILE = "13800000000"
ID_NUMBER = "11010519880715563X"
SECRETS = {"password": PASSWORD, "account": ACCOUNT, "mobile": MOBILE, "id number": ID_NUMBER}


def needles() -> dict[str, list[bytes]]:
    """Each secret in every form it could be written in (raw, URL-quoted, form-quoted)."""
    forms = {name: {value, quote(value, safe=""), quote_plus(value)} for name, value in SECRETS.items()}
    forms["id number"].add(ID_NUMBER.lower())
    return {name: sorted(v.encode() for v in values) for name, values in forms.items()}


def leaks(data: bytes, *, ignore: tuple[str, ...] = ()) -> list[str]:
    return [name for name, forms in needles().items() if name not in ignore and any(f in data for f in forms)]


def scram_accepts(verifier: str, password: str) -> bool:
    """Does a PostgreSQL SCRAM-SHA-256 verifier (pg_authid.rolpassword) accept ``password``?"""
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return (
        method == "SCRAM-SHA-256"
        and hashlib.sha256(client_key).digest() == stored_key
        and hmac.new(salted, b"Server Key", "sha256").digest() == server_key
    )


@dataclass
class Planted:
    role: str
    names: dict[str, str]  # system → database
    server: PgServer

    def url(self, system: str, *, database: str | None = None) -> str:
        """The connection as the role, with its password: what a deployment puts in AIRFLOW_CONN_*."""
        name = database or self.names[system]
        return f"postgresql://{quote(self.role, safe='')}:{quote(PASSWORD, safe='')}@127.0.0.1:5432/{name}"

    def admin(self, system: str) -> sa.Engine:
        return create_engine(self.server.url(self.names[system]), system)


def _tcp_server(pg_server: PgServer) -> None:
    """The connections log in with a password over TCP (the server in CI and here: 127.0.0.1:5432)."""
    url = sa.engine.make_url(pg_server.admin_url)
    assert url.host == "127.0.0.1", "set CLAIMSYNC_TEST_PG_URL=postgresql://postgres@127.0.0.1:5432/postgres"
    assert (url.port or 5432) == 5432


@pytest.fixture(scope="module")
def planted(pg_server: PgServer) -> Iterator[Planted]:
    """A role with PASSWORD owning fresh OA, expense and state databases filled with demo data and the secrets."""
    from claimsync.demo import generate
    from claimsync.refschema import create_reference_schema

    _tcp_server(pg_server)
    role = f"cs_leak_{os.getpid()}"
    names = {system: f"cs_leak{os.getpid()}_{system}" for system in ("oa", "expense", "state")}
    admin = create_engine(pg_server.admin_url, "admin", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        conn.execute(sa.text("SET password_encryption = 'scram-sha-256'"))
        conn.execute(sa.text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{PASSWORD}'"))
    for name in names.values():
        pg_server.create_database(name, recreate=True)
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" OWNER TO "{role}"'))
    made = Planted(role, names, pg_server)
    try:
        oa, expense = create_engine(made.url("oa"), "OA"), create_engine(made.url("expense"), "expense")
        try:
            create_reference_schema(oa, "oa")
            create_reference_schema(expense, "expense")
            generate(oa, expense, scale=150, seed=7, as_of=AS_OF, settings=Settings())
            with oa.begin() as conn:
                employee = conn.execute(
                    sa.text("SELECT workcode FROM ecology.hrmresource WHERE status <= 3 ORDER BY id LIMIT 1")
                ).scalar_one()
                conn.execute(
                    sa.text("UPDATE ecology.hrmresource SET mobile = :m, certificatenum = :c WHERE workcode = :w"),
                    {"m": MOBILE, "c": ID_NUMBER, "w": employee},
                )
            with expense.begin() as conn:
                conn.execute(sa.text("UPDATE ekb.staff SET cellphone = :m WHERE code = :w"),
                             {"m": OLD_MOBILE, "w": employee})  # fmt: skip
                assert conn.execute(sa.text("UPDATE ekb.payment SET payee_account = :a"), {"a": ACCOUNT}).rowcount
        finally:
            oa.dispose()
            expense.dispose()
        yield made
    finally:
        for name in names.values():
            pg_server.drop_database(name)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def test_the_planted_password_is_the_roles_real_password(planted: Planted) -> None:
    """The server here trusts 127.0.0.1, so check the password against the role's SCRAM verifier."""
    admin = create_engine(planted.server.admin_url, "admin")
    try:
        with admin.connect() as conn:
            verifier = conn.execute(
                sa.text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": planted.role}
            ).scalar_one()
    finally:
        admin.dispose()
    assert scram_accepts(verifier, PASSWORD)
    assert not scram_accepts(verifier, PASSWORD + "x")


# --- the DAG runs --------------------------------------------------------------------------------


def load_dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER / f"{dag_id}.py"))
    assert bag.import_errors == {}
    dag = bag.dags[dag_id]
    for task in dag.tasks:
        task.retries = 0  # a failure fails now (production retries twice with a 2-minute backoff)
    return dag


def run(dag_id: str, day: int, conf: dict[str, Any]) -> Any:
    logical = datetime(2026, 3, day, 4, 0, tzinfo=UTC)
    return load_dag(dag_id).test(logical_date=logical, run_after=logical, run_conf=conf)


def state_of(dag_run: Any) -> str:
    return str(getattr(dag_run.state, "value", dag_run.state))


def run_all(planted: Planted, report_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Every DAG through dag.test(): a failing claim sync, then org sync, claim sync and reconcile.

    (The org sync whose write the expense database rejects runs in a real Airflow below.)
    """
    runs: dict[str, Any] = {}
    for name in ("CLAIMSYNC_OA_URL", "CLAIMSYNC_EXPENSE_URL", "CLAIMSYNC_STATE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLAIMSYNC_REPORT_DIR", str(report_dir))
    for system in ("oa", "expense", "state"):
        monkeypatch.setenv(f"AIRFLOW_CONN_CLAIMSYNC_{system.upper()}", planted.url(system))
    # A claim sync whose expense database does not exist: fails connecting, names the database.
    gone = planted.url("expense", database=f"{planted.names['expense']}_gone")
    monkeypatch.setenv("AIRFLOW_CONN_CLAIMSYNC_EXPENSE", gone)
    runs["claims_unreachable"] = run("claimsync_claim_sync", 20, {"full": True})
    monkeypatch.setenv("AIRFLOW_CONN_CLAIMSYNC_EXPENSE", planted.url("expense"))

    expense = planted.admin("expense")
    try:
        runs["org"] = run("claimsync_org_sync", 22, {"full": True})
        runs["claims"] = run("claimsync_claim_sync", 23, {"full": True})
        runs["reconcile"] = run("claimsync_reconcile", 24, {"as_of": AS_OF.isoformat(), "full": True, "buckets": 2})
        with expense.connect() as conn:
            runs["cellphone_written"] = conn.execute(
                sa.text("SELECT count(*) FROM ekb.staff WHERE cellphone = :m"), {"m": MOBILE}
            ).scalar_one()
    finally:
        expense.dispose()
    return runs


def airflow_metadata_leaks(airflow_home: Path) -> tuple[int, dict[str, list[str]]]:
    """XCom, rendered task fields, the event log, run conf …: every column of every table of the metadata DB."""
    db = sqlite3.connect(f"file:{airflow_home / 'airflow.db'}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        xcoms = db.execute(
            "SELECT count(*) FROM xcom WHERE dag_id IN ('claimsync_org_sync', 'claimsync_claim_sync',"
            " 'claimsync_reconcile')"
        ).fetchone()[0]
        found: dict[str, list[str]] = {}
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                data = b"\x00".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
                if hit := leaks(data):
                    found[table] = hit
    finally:
        db.close()
    return int(xcoms), found


def state_db_leaks(planted: Planted) -> tuple[dict[str, list[str]], list[Any], dict[str, str]]:
    """Every row of every claimsync table as text (quarantine, ledger, details, snapshots, summaries,
    errors, stages); the planned writes whose images hold the mobile; the runs' errors."""
    state = planted.admin("state")
    try:
        with state.connect() as conn:
            tables = conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'claimsync' ORDER BY 1")
            ).scalars()
            found: dict[str, list[str]] = {}
            for table in list(tables):
                for (text,) in conn.execute(sa.text(f'SELECT t::text FROM claimsync."{table}" t')):
                    if hit := leaks(text.encode(), ignore=("mobile",) if table == "planned_write" else ()):
                        found[table] = hit
            holding = conn.execute(
                sa.text(
                    "SELECT table_name, before_image, after_image FROM claimsync.planned_write"
                    " WHERE strpos(coalesce(before_image::text, '') || after_image::text, :m) > 0"
                ),
                {"m": MOBILE},
            ).all()
            errors = dict(
                conn.execute(sa.text("SELECT run_id, error FROM claimsync.sync_run WHERE error IS NOT NULL")).all()
            )
    finally:
        state.dispose()
    return found, list(holding), errors


def test_no_password_account_mobile_or_id_number_leaks(  # noqa: PLR0917 (fixtures)
    planted: Planted,
    airflow_home: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    report_dir = tmp_path / "reports"
    runs = run_all(planted, report_dir, monkeypatch)
    captured = capfd.readouterr()
    output = (captured.out + captured.err + caplog.text).encode()

    # The scenario is real: the failures failed where meant, the rest succeeded and moved the secrets.
    assert state_of(runs["claims_unreachable"]) == "failed"
    for name in ("org", "claims", "reconcile"):
        errors = [line[:400] for line in output.splitlines() if b'"level":"error"' in line or b"ERROR" in line]
        assert state_of(runs[name]) == "success", (name, errors[-6:])
    assert runs["cellphone_written"] == 1  # the org sync wrote the planted mobile to expense
    assert b"_gone" in output  # and the unreachable database named

    # Task logs: dag.test() logs to the console (log files: the real Airflow test below).
    assert leaks(output) == [], [line for line in output.splitlines() if leaks(line)][:5]

    # XCom and the rest of Airflow's metadata DB.
    xcoms, in_metadata = airflow_metadata_leaks(airflow_home)
    assert xcoms > 10  # the runs' XComs are there to be searched
    assert in_metadata == {}

    # The report files: HTML, CSV and every XML part of the XLSX.
    (folder,) = [p for p in report_dir.iterdir() if p.is_dir()]
    assert sorted(p.name for p in folder.iterdir()) == ["exceptions.csv", "report.html", "report.xlsx"]
    # The report does cover claims paid to the planted account (it shows them without the account).
    expense = planted.admin("expense")
    try:
        with expense.connect() as conn:
            paid = set(
                conn.execute(
                    sa.text(
                        "SELECT f.code FROM ekb.flow f JOIN ekb.payment p ON p.flow_id = f.id"
                        " WHERE p.payee_account = :a"
                    ),
                    {"a": ACCOUNT},
                ).scalars()
            )
    finally:
        expense.dispose()
    with (folder / "exceptions.csv").open(encoding="utf-8", newline="") as handle:
        reported = {row["claim_code"] for row in csv.DictReader(handle)}
    assert paid & reported
    for name in ("exceptions.csv", "report.html"):
        assert leaks((folder / name).read_bytes()) == [], name
    with zipfile.ZipFile(folder / "report.xlsx") as xlsx:
        in_xlsx = {m: hit for m in xlsx.namelist() if (hit := leaks(xlsx.read(m)))}
    assert in_xlsx == {}

    # The state DB: nothing, except the mobile in the cellphone images of the staff write.
    in_state, holding, _ = state_db_leaks(planted)
    assert in_state == {}
    assert holding, "the org sync planned the planted mobile"
    for table_name, before, after in holding:
        assert table_name == "staff"
        images = {**(before or {}), **after}
        assert MOBILE not in str({k: v for k, v in images.items() if k != "cellphone"})

    # The tasks logged in as the planted role (so its password was in every connection they made).
    state = planted.admin("state")
    try:
        with state.connect() as conn:
            owner = conn.execute(
                sa.text("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'claimsync'")
            ).scalar_one()
    finally:
        state.dispose()
    assert owner == planted.role


NO_RETRIES = '''"""Cluster policy of the leak test: a failing task fails at once."""


def task_policy(task):
    task.retries = 0
'''


def test_no_secret_in_a_real_airflows_log_files_and_log_api(
    planted: Planted, pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """dag.test() logs to the console; a deployed Airflow writes task log files and serves them to the UI.

    The rejected org sync once more, in a real Airflow (LocalExecutor): its log files under
    AIRFLOW_HOME/logs, the components' own output and the log the UI shows (REST API) hold none
    of the secrets, though they do report the rejection.
    """
    from tests.e2e.airflow_processes import running_airflow

    dag_id = "claimsync_org_sync"
    expense = planted.admin("expense")
    try:
        with expense.begin() as conn:
            conn.execute(sa.text("UPDATE ekb.staff SET cellphone = :old WHERE cellphone = :m"),
                         {"old": OLD_MOBILE, "m": MOBILE})  # fmt: skip
            conn.execute(
                sa.text(
                    "ALTER TABLE ekb.staff ADD CONSTRAINT staff_cellphone_unchecked"
                    f" CHECK (cellphone IS DISTINCT FROM '{MOBILE}') NOT VALID"
                )
            )
        metadata = f"cs_leak{os.getpid()}_airflow"
        metadata_url = pg_server.create_database(metadata, recreate=True)
        home = tmp_path_factory.mktemp("airflow_leak")
        extra_env = {f"AIRFLOW_CONN_CLAIMSYNC_{s.upper()}": planted.url(s) for s in ("oa", "expense", "state")}
        try:
            with running_airflow(home, metadata_url, extra_env=extra_env, local_settings=NO_RETRIES) as airflow:
                airflow.wait_for_dag(dag_id)
                end = datetime(2026, 3, 25, 4, 0, tzinfo=UTC)
                run_id = airflow.trigger(dag_id, interval=(end - timedelta(hours=1), end), conf={"full": True})
                assert airflow.wait_for_run(dag_id, run_id, {"failed"}) == "failed"
                failed = [ti for ti in airflow.task_instances(dag_id, run_id) if ti["state"] == "failed"]
                assert [ti["task_id"] for ti in failed] == ["apply.apply_expense"]
                shown = json.dumps(
                    airflow.call(
                        "GET",
                        f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/"
                        f"apply.apply_expense/logs/{failed[0]['try_number']}?full_content=true",
                    ),
                    ensure_ascii=False,
                ).encode()
                assert b"staff_cellphone_unchecked" in shown  # the operator sees why
                assert leaks(shown) == []
            in_state, _, errors = state_db_leaks(planted)
            assert in_state == {}
            assert "staff_cellphone_unchecked" in errors[f"{dag_id}__{run_id}"]  # the run's error, masked
            files = [p for p in home.rglob("*") if p.is_file() and p.suffix == ".log"]
            task_logs = [p for p in files if "dag_id=" in str(p)]
            assert len(task_logs) >= 5  # one per task that ran
            assert any(b"staff_cellphone_unchecked" in p.read_bytes() for p in task_logs)
            assert {str(p.relative_to(home)): hit for p in files if (hit := leaks(p.read_bytes()))} == {}
        finally:
            pg_server.drop_database(metadata)
    finally:
        with expense.begin() as conn:
            conn.execute(sa.text("ALTER TABLE ekb.staff DROP CONSTRAINT IF EXISTS staff_cellphone_unchecked"))
        expense.dispose()


# --- hostile identifiers ------------------------------------------------------------------------

HOSTILE = {
    "CLAIMSYNC_OA_FORM_TABLE": 'formtable_main_38"; DROP TABLE ecology.canary; --',
    "CLAIMSYNC_OA_SCHEMA": "ecology; DROP TABLE ecology.canary",
    "CLAIMSYNC_OA_FORM_LINES_TABLE": "x') OR 1=1; DROP TABLE ecology.canary --",
    "CLAIMSYNC_EXPENSE_SCHEMA": 'ekb"."flow"; DROP TABLE ekb.canary; --',
    "CLAIMSYNC_OA_WORKFLOW_ID": "38 OR 1=1; DROP TABLE ecology.canary",
}


def _activity(server: PgServer, names: list[str]) -> dict[str, tuple[int, int]]:
    """Per database: (sessions ever opened, transactions ever ended), from pg_stat_database."""
    time.sleep(1.5)  # backends report their counters when they end, at most a second late
    admin = create_engine(server.admin_url, "admin")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            found = conn.execute(
                sa.text(
                    "SELECT datname, sessions, xact_commit + xact_rollback FROM pg_stat_database"
                    " WHERE datname = ANY(:n)"
                ),
                {"n": names},
            ).all()
    finally:
        admin.dispose()
    return {r[0]: (int(r[1]), int(r[2])) for r in found}


def canaries(planted: Planted, *, create: bool = False) -> list[bool]:
    """Whether ecology.canary (OA) and ekb.canary (expense) exist; ``create`` makes them first."""
    found = []
    for system, table in (("oa", "ecology.canary"), ("expense", "ekb.canary")):
        engine = planted.admin(system)
        try:
            with engine.begin() as conn:
                if create:
                    conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {table} (id int)"))
                found.append(conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": table}).scalar() is not None)
        finally:
            engine.dispose()  # closed sessions report their counters (pg_stat_database) right away
    return found


def test_hostile_identifiers_stop_reconcile_and_sync_before_any_connection(
    planted: Planted, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from claimsync.cli import main

    assert canaries(planted, create=True) == [True, True]
    databases = list(planted.names.values())
    for name in list(os.environ):
        if name.startswith("CLAIMSYNC_"):
            monkeypatch.delenv(name)
    for system in ("oa", "expense", "state"):
        monkeypatch.setenv(f"CLAIMSYNC_{system.upper()}_URL", planted.url(system))
    commands = {
        "reconcile": ["reconcile", "--as-of", AS_OF.isoformat(), "--out", str(tmp_path / "r")],
        "sync": ["sync", "claims", "--full"],
    }
    before = _activity(planted.server, databases)
    for variable, value in HOSTILE.items():
        for name, args in commands.items():
            with monkeypatch.context() as env:
                env.setenv(variable, value)
                assert main(args) == 2, (variable, name)
            err = capsys.readouterr().err
            assert err.startswith(f"claimsync: {variable} must be"), err
            assert err.count("\n") == 1, err  # one line, no traceback
    assert _activity(planted.server, databases) == before  # no session, no statement, in any database
    assert canaries(planted) == [True, True]

    # The measurement does see a command that connects: a dry run of the same sync, configured sanely.
    assert main(["sync", "claims", "--full", "--dry-run"]) == 0
    after = _activity(planted.server, databases)
    assert all(after[d] > before[d] for d in databases), (before, after)
