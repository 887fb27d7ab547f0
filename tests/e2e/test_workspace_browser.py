"""Finance's workspace in the real Airflow UI, driven by headless Chromium.

Starts a real ``airflow api-server`` (own AIRFLOW_HOME, SQLite metadata DB migrated with
``airflow db migrate``, the project's plugins/ folder, SimpleAuthManager with three users)
against real PostgreSQL: the demo OA and expense systems (claimsync.demo) reconciled on three
days by the real pipeline (claimsync.pipeline.run_reconciliation, Airflow-style run ids), then
drives Debian's chromium through what finance does: log in, open the runs,
open a run, filter, open an exception, acknowledge it, sign off as preparer, and as a
second user sign off as reviewer. The same actions without login, as a viewer, or without
the CSRF token are refused. Screenshots go to artifacts/workspace/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from claimsync.config import Settings
from claimsync.demo import generate
from claimsync.pgserver import PgServer
from claimsync.pipeline import run_reconciliation
from claimsync.refschema import create_reference_schema
from claimsync.resources import project_dir
from tests.conftest import Databases, make_databases

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USERS = "alice:admin,bob:op,victor:viewer"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
ARTIFACTS = project_dir() / "artifacts" / "workspace"
AS_OF = datetime(2026, 3, 31, 18, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
DEMO_SCALE, DEMO_SEED = 400, 20260331
# Run ids as Airflow makes them for the daily claimsync_reconcile DAG (':' and '+' included).
RUN_IDS = [f"scheduled__2026-03-{day}T10:00:00+00:00" for day in (29, 30, 31)]


def chromium_or_skip() -> Path:
    """Debian's chromium; installed with apt-get when missing and we may (root), else a clear skip."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "chromium", "fonts-noto-cjk"],
            env=env,
            capture_output=True,
            check=False,
            timeout=900,
        )
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed and cannot be installed here (apt-get install -y chromium)")
    return CHROMIUM


@dataclass
class Airflow:
    base_url: str
    passwords: dict[str, str]
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _plain_url(url: str) -> str:
    """An Airflow connection URI: postgresql://…, without SQLAlchemy's driver suffix."""
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


@pytest.fixture(scope="module")
def dbs(pg_server: PgServer) -> Iterator[Databases]:
    """Demo OA and expense data, reconciled on three days: the state DB holds a real ledger."""
    databases, names = make_databases(pg_server)
    oa, expense = databases.engine("oa"), databases.engine("expense")
    try:
        create_reference_schema(oa, "oa", recreate=True)
        create_reference_schema(expense, "expense", recreate=True)
        generate(oa, expense, scale=DEMO_SCALE, seed=DEMO_SEED, as_of=AS_OF, settings=Settings())
    finally:
        oa.dispose()
        expense.dispose()
    settings = Settings().with_urls(databases.oa_url, databases.expense_url, databases.state_url)
    for days_before, run_id in zip((2, 1, 0), RUN_IDS, strict=True):
        run_reconciliation(settings, as_of=AS_OF - timedelta(days=days_before), run_id=run_id, triggered_by="scheduler")
    yield databases
    for name in names:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def airflow(dbs: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    home = tmp_path_factory.mktemp("airflow_home")
    (home / "dags").mkdir()
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CLAIMSYNC_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(project_dir() / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__API__SECRET_KEY": os.urandom(16).hex(),
            "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(16).hex(),
            "AIRFLOW_CONN_CLAIMSYNC_STATE": _plain_url(dbs.state_url),
            "AIRFLOW_CONN_CLAIMSYNC_OA": _plain_url(dbs.oa_url),
            "AIRFLOW_CONN_CLAIMSYNC_EXPENSE": _plain_url(dbs.expense_url),
            "CLAIMSYNC_OA_DOC_URL": "https://oa.example.com/workflow/request/ViewRequest.jsp?requestid={request_id}",
            "CLAIMSYNC_EXPENSE_DOC_URL": "https://expense.example.com/flow/{claim_code}",
        }
    )
    migrate = subprocess.run(
        [str(bin_dir / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True, check=False, timeout=300
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    port = _free_port()
    log = home / "api-server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(bin_dir / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                pytest.fail(f"airflow api-server exited with {server.returncode}:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/api/v2/monitor/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"airflow api-server not healthy after 180 s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        yield Airflow(base_url, passwords, log)
    finally:
        # Only the server this fixture started (its own session/process group), by its id.
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def logged_in(
    browser: Any, airflow: Airflow, user: str, next_path: str = "/recon/", lands_on: str | None = None
) -> Any:
    """A new browser context with ``user`` logged in through Airflow's own login page."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{airflow.base_url}{next_path}")
    assert "/auth/login" in page.url  # sent to Airflow's login, not a login of ours
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", airflow.passwords[user])
    page.click("button[type=submit]")
    page.wait_for_url(f"**{lands_on or next_path}**", timeout=30_000)
    return page


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def state_rows(dbs: Databases, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = dbs.engine("state")
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def run_url(run_id: str) -> str:
    return "/recon/run?" + urlencode({"run_id": run_id})


def test_finance_works_a_run_through_the_airflow_ui(browser: Any, airflow: Airflow, dbs: Databases) -> None:
    latest = RUN_IDS[-1]
    in_latest = state_rows(dbs, "SELECT count(*) FROM claimsync.recon_run_exception WHERE run_id = :r", r=latest)[0][0]
    codes = state_rows(
        dbs,
        "SELECT count(DISTINCT e.code) FROM claimsync.recon_run_exception r"
        " JOIN claimsync.recon_exception e ON e.id = r.exception_id WHERE r.run_id = :r",
        r=latest,
    )[0][0]
    assert in_latest > 0
    page = logged_in(browser, airflow, "alice")

    # The runs list, also as the nav-bar entry inside Airflow's UI (an iframe at /plugin/recon).
    assert page.locator("h1").inner_text() == "对账批次"
    assert page.locator("#current-user").inner_text() == "alice"
    assert page.locator("#runs tbody tr").count() == len(RUN_IDS)
    shot(page, "01-runs")
    page.goto(f"{airflow.base_url}/plugin/recon")
    frame = page.frame_locator("iframe")
    assert frame.locator("h1").inner_text(timeout=30_000) == "对账批次"
    page.get_by_text("对账 Reconciliation").first.wait_for()
    shot(page, "00-airflow-nav")

    # Open the latest run.
    page.goto(f"{airflow.base_url}/recon/")
    page.locator("#runs tbody tr").first.locator("a.run-link").click()
    page.wait_for_url("**/recon/run?run_id=scheduled__2026-03-31*")
    assert page.locator("#run-id").inner_text() == latest
    assert page.locator("#total-count").inner_text() == f"{in_latest:,}"
    assert page.locator("#trend-chart svg g").count() == len(RUN_IDS)
    assert page.locator("#by-code tbody tr").count() == codes
    shot(page, "02-run")

    # Filter the run's exceptions by code, then by the department of one of them.
    department, expected = state_rows(
        dbs,
        "SELECT e.department_code, count(*) OVER (PARTITION BY e.department_code) FROM claimsync.recon_run_exception r"
        " JOIN claimsync.recon_exception e ON e.id = r.exception_id"
        " WHERE r.run_id = :r AND e.code = 'amount_mismatch' AND e.department_code IS NOT NULL LIMIT 1",
        r=latest,
    )[0]
    page.click("#view-exceptions")
    page.wait_for_url("**/recon/exceptions?run_id=*")
    assert f"共 {in_latest:,} 条" in page.locator("#result-count").inner_text()
    page.select_option("select[name=code]", "amount_mismatch")
    page.wait_for_url("**code=amount_mismatch**")
    page.select_option("select[name=department]", department)
    page.wait_for_url(f"**department={quote(department, safe='')}**")
    rows = page.locator("#exceptions tbody tr")
    assert rows.count() == expected
    for i in range(rows.count()):
        assert "金额不一致" in rows.nth(i).inner_text()
    shot(page, "03-filtered")

    # Open one: both systems side by side, live from OA and expense, differences marked.
    page.locator("#exceptions a.exception-link").first.click()
    page.wait_for_url("**/recon/exception/**")
    exception_id = int(page.url.split("/recon/exception/")[1].split("?")[0])
    assert page.locator("#sides tr.differs").count() >= 1
    assert page.locator("#live").count() == 1  # both sources configured through Airflow connections
    assert page.locator("#approval-log tbody tr").count() >= 1
    assert page.locator("#oa-doc").get_attribute("href", timeout=5_000).startswith("https://oa.example.com/")
    assert page.locator("#exception-status").get_attribute("data-status") == "open"
    shot(page, "04-exception")

    # Acknowledge it with a note.
    note = "已与申请人核实：OA 金额含未报销的住宿费，下月冲回"
    page.fill("#note", note)
    page.click("#action-acknowledge")
    page.wait_for_url("**done=acknowledge**")
    assert page.locator("#flash").inner_text() == "已确认。"
    assert page.locator("#exception-status").get_attribute("data-status") == "acknowledged"
    assert note in page.locator("#history").inner_text()
    shot(page, "05-acknowledged")
    events = state_rows(
        dbs,
        "SELECT action, actor, note FROM claimsync.recon_exception_event WHERE exception_id = :i AND run_id IS NULL",
        i=exception_id,
    )
    assert events == [("acknowledge", "alice", note)]

    # Sign the run off as preparer.
    page.goto(f"{airflow.base_url}{run_url(latest)}")
    page.fill("#signoff-form-preparer textarea", "差异已逐笔确认")
    page.click("#signoff-form-preparer button")
    page.wait_for_url("**done=signoff**")
    assert "alice" in page.locator("#signoff-preparer").inner_text()
    assert page.locator("#signoff-form-reviewer").count() == 0  # the preparer cannot also review
    shot(page, "06-prepared")

    # A second user signs off as reviewer.
    reviewer = logged_in(browser, airflow, "bob", run_url(latest), lands_on="/recon/run?run_id=*")
    reviewer.click("#signoff-form-reviewer button")
    reviewer.wait_for_url("**done=signoff**")
    assert "bob" in reviewer.locator("#signoff-reviewer").inner_text()
    reviewer.goto(f"{airflow.base_url}/recon/")
    assert "✓ bob" in reviewer.locator("#runs tbody tr").first.locator(".signoff-reviewer").inner_text()
    shot(reviewer, "07-reviewed")
    signed = state_rows(
        dbs, "SELECT role, signed_by FROM claimsync.signoff WHERE run_id = :r ORDER BY signed_at", r=latest
    )
    assert signed == [("preparer", "alice"), ("reviewer", "bob")]
    reviewer.context.close()
    page.context.close()


def test_without_login_as_viewer_or_without_csrf_the_actions_are_refused(
    browser: Any, airflow: Airflow, dbs: Databases
) -> None:
    run_id = RUN_IDS[1]
    target = state_rows(
        dbs,
        "SELECT e.id FROM claimsync.recon_exception e JOIN claimsync.recon_run_exception r ON r.exception_id = e.id"
        " WHERE r.run_id = :r AND e.status = 'open' ORDER BY e.id LIMIT 1",
        r=run_id,
    )[0][0]
    action = f"{airflow.base_url}/recon/exception/{target}/status"
    signoff = f"{airflow.base_url}/recon/run/signoff"
    form = {"action": "acknowledge", "note": "should not be recorded"}

    # No login: pages send the browser to Airflow's login, actions answer 401.
    anonymous = browser.new_context()
    response = anonymous.request.get(f"{airflow.base_url}{run_url(run_id)}", max_redirects=0)
    assert response.status == 303
    assert "/auth/login" in response.headers["location"]
    assert anonymous.request.post(action, form=form).status == 401
    assert anonymous.request.post(signoff, form={"run_id": run_id, "role": "preparer"}).status == 401
    anonymous.close()

    # A viewer reads but cannot act, even with a valid CSRF token of their own.
    viewer = logged_in(browser, airflow, "victor", run_url(run_id), lands_on="/recon/run?run_id=*")
    assert viewer.locator("#view-only").count() == 1
    assert viewer.locator("form[method=post]").count() == 0
    token = viewer.locator("meta[name=csrf-token]").get_attribute("content")
    assert token
    shot(viewer, "08-viewer")
    assert viewer.context.request.post(action, form={**form, "csrf_token": token}).status == 403
    refused = viewer.context.request.post(signoff, form={"run_id": run_id, "role": "preparer", "csrf_token": token})
    assert refused.status == 403
    viewer.context.close()

    # An editor's POST without the CSRF token (what a forged cross-site form would send) is refused.
    editor = logged_in(browser, airflow, "bob", f"/recon/exception/{target}")
    assert editor.context.request.post(action, form=form).status == 403
    assert editor.context.request.post(action, form={**form, "csrf_token": "1700000000.forged"}).status == 403
    assert editor.context.request.post(signoff, form={"run_id": run_id, "role": "preparer"}).status == 403
    editor.context.close()

    assert state_rows(dbs, "SELECT status FROM claimsync.recon_exception WHERE id = :i", i=target) == [("open",)]
    assert state_rows(dbs, "SELECT count(*) FROM claimsync.signoff WHERE run_id = :r", r=run_id) == [(0,)]
    assert state_rows(
        dbs, "SELECT count(*) FROM claimsync.recon_exception_event WHERE exception_id = :i AND run_id IS NULL", i=target
    ) == [(0,)]


def test_exception_page_masks_the_payee_account(browser: Any, airflow: Airflow, dbs: Databases) -> None:
    claim_codes = [r[0] for r in state_rows(dbs, "SELECT DISTINCT claim_code FROM claimsync.recon_exception")]
    engine = dbs.engine("expense")
    with engine.connect() as conn:
        paid = conn.execute(
            sa.text(
                "SELECT f.code, p.payee_account FROM ekb.flow f JOIN ekb.payment p ON p.flow_id = f.id"
                " WHERE f.code = ANY(:codes) AND p.payee_account IS NOT NULL ORDER BY f.code LIMIT 1"
            ),
            {"codes": claim_codes},
        ).one()
    engine.dispose()
    target = state_rows(dbs, "SELECT id FROM claimsync.recon_exception WHERE claim_code = :c LIMIT 1", c=paid.code)[0][
        0
    ]
    page = logged_in(browser, airflow, "victor", f"/recon/exception/{target}")
    accounts = page.locator("#payments td.account").all_inner_texts()
    digits = "".join(ch for ch in paid.payee_account if ch.isdigit())
    assert f"{digits[:4]} **** **** {digits[-4:]}" in accounts
    assert digits not in page.content()
    shot(page, "09-payment-masked")
    page.context.close()


def test_dag_run_tab_opens_the_runs_report(browser: Any, airflow: Airflow) -> None:
    # The UI fills {DAG_ID} and {RUN_ID} with encodeURIComponent: ':' and '+' arrive escaped.
    run_id = RUN_IDS[1]
    tab = f"/recon/dagrun/claimsync_reconcile/{quote(run_id, safe='')}"
    page = logged_in(browser, airflow, "victor", tab, lands_on="/recon/run?run_id=*")
    assert page.locator("#run-id").inner_text() == run_id
    page.goto(f"{airflow.base_url}/recon/dagrun/claimsync_org_sync/manual__x")
    assert page.locator("#message").inner_text() == "该 DAG 运行没有对账报告。"
    page.context.close()
