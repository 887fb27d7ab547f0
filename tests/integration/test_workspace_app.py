"""The reconciliation workspace against real PostgreSQL: pages, filters, paging, actions, exports.

The ledger is written by the real claimsync.ledger from small hand-made reconciliation
results; the app is mounted under /recon in a parent app, as Airflow's api-server mounts it,
with a test auth that reads the user and role from headers (the Airflow wiring itself is
exercised by tests/e2e/test_workspace_browser.py).
"""

from __future__ import annotations

import csv
import dataclasses
import html as html_lib
import io
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import openpyxl
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

from claimsync.ledger import record_reconciliation
from claimsync.migrations import migrate
from claimsync.model import EXCEPTION_COLUMNS
from claimsync.pgserver import PgServer
from claimsync.refschema import create_reference_schema
from claimsync.rules import ExceptionCode
from claimsync.runs import RunInfo, begin_run, finish_run
from claimsync.workspace import Actor, WorkspaceAuth, WorkspaceConfig, create_app
from claimsync.workspace.queries import precompute_run
from claimsync.workspace.security import make_csrf_token
from tests.conftest import Databases, make_databases

CST = timezone(timedelta(hours=8))
SECRET = secrets.token_bytes(32)
DEPARTMENTS = ("FIN-01", "HR-01", "IT-01")
RUN_DAYS = {"r1": datetime(2025, 12, 20, 9, tzinfo=CST), "r2": datetime(2026, 2, 15, 9, tzinfo=CST)}
RUN_DAYS["r3"] = datetime(2026, 3, 3, 9, tzinfo=CST)
CODES = [c for c in ExceptionCode if c is not ExceptionCode.WRITE_CONFLICT]


@dataclass
class Result:
    """What claimsync.ledger.record_reconciliation reads of a reconciliation result."""

    exceptions: pd.DataFrame
    oa_claims: int = 1000
    expense_claims: int = 990
    matched: int = 960
    clean_matched: int = 940

    @property
    def match_rate(self) -> float:
        return self.clean_matched / max(self.oa_claims, self.expense_claims)


def exception_rows(numbers: range) -> list[dict[str, Any]]:
    """Exception n: code, department and amounts derived from n, so tests can recompute them."""
    rows = []
    for n in numbers:
        code = CODES[n % len(CODES)]
        oa_cents, exp_cents = 100_000 + n * 1234, 100_000 + n * 1234 - (n % 7) * 5000
        rows.append(
            {
                "code": code.value,
                "severity": code.severity.value,
                "business_key": f"oa:{5000 + n}",
                "oa_request_id": 5000 + n,
                "claim_code": f"B2600{n:04d}",
                "employee_code": f"E{n % 13:05d}",
                "department_code": DEPARTMENTS[n % len(DEPARTMENTS)],
                "oa_amount_cents": oa_cents,
                "expense_amount_cents": exp_cents,
                "amount_impact_cents": abs(oa_cents - exp_cents) or oa_cents,
                "currency": "CNY",
                "oa_state": "approved",
                "expense_state": "paid" if n % 2 else "approving",
                "detail": f"{code.value}: 报销单 B2600{n:04d} 与 OA 流程 {5000 + n} 不一致，收款人手机 13812345678",
                "oa_side": {"request_id": 5000 + n, "amount": f"{oa_cents / 100:.2f}", "state": "approved"},
                "expense_side": {
                    "claim_code": f"B2600{n:04d}",
                    "request_id": 5000 + n,
                    "amount": f"{exp_cents / 100:.2f}",
                    "state": "paid" if n % 2 else "approving",
                },
            }
        )
    return rows


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    result = pd.DataFrame(rows, columns=[*EXCEPTION_COLUMNS, "oa_side", "expense_side"])
    for column in ("oa_request_id", "oa_amount_cents", "expense_amount_cents", "amount_impact_cents"):
        result[column] = result[column].astype("Int64")
    return result


def record(
    engine: sa.Engine, run_id: str, as_of: datetime, rows: list[dict[str, Any]], status: str = "succeeded"
) -> None:
    info = RunInfo(
        run_id=run_id,
        flow="reconcile",
        as_of=as_of,
        triggered_by="scheduler",
        config_version="cfg1",
        window_start=as_of - timedelta(days=1),
        window_end=as_of,
        full_run=True,
    )
    begin_run(engine, info)
    summary = record_reconciliation(engine, info, Result(frame(rows)), full=True)
    if status != "running":
        finish_run(engine, run_id, status, summary.to_dict())


def seed(engine: sa.Engine) -> None:
    """r1 finds 0..29; r2 finds 0..49; r3 finds 10..69 (so 0..9 resolve automatically)."""
    migrate(engine)
    record(engine, "r1", RUN_DAYS["r1"], exception_rows(range(30)))
    record(engine, "r2", RUN_DAYS["r2"], exception_rows(range(50)))
    record(engine, "r3", RUN_DAYS["r3"], exception_rows(range(10, 70)))


def _actor(name: str | None, role: str | None) -> Actor:
    if not name:
        raise HTTPException(401, "Not authenticated")
    if role not in ("admin", "op", "user", "viewer"):
        raise HTTPException(403, "Forbidden")
    return Actor(name, can_act=role != "viewer")


def viewer(x_user: str | None = Header(None), x_role: str | None = Header(None)) -> Actor:
    return _actor(x_user, x_role)


def editor(x_user: str | None = Header(None), x_role: str | None = Header(None)) -> Actor:
    actor = _actor(x_user, x_role)
    if not actor.can_act:
        raise HTTPException(403, "Forbidden")
    return actor


def client_for(dbs: Databases, *, oa_url: str | None = None, env: dict[str, str] | None = None) -> TestClient:
    config = WorkspaceConfig.from_env(
        SECRET,
        env={"CLAIMSYNC_STATE_URL": dbs.state_url, **({"CLAIMSYNC_OA_URL": oa_url} if oa_url else {}), **(env or {})},
    )
    parent = FastAPI()
    parent.mount(
        "/recon", create_app(config, WorkspaceAuth(viewer, editor, login_url=lambda n: f"/auth/login?next={n}"))
    )
    return TestClient(parent)


ALICE = {"x-user": "alice", "x-role": "op"}
BOB = {"x-user": "bob", "x-role": "user"}
VICTOR = {"x-user": "victor", "x-role": "viewer"}


@pytest.fixture(scope="module")
def seeded(pg_server: PgServer) -> Iterator[Databases]:
    dbs, names = make_databases(pg_server)
    engine = dbs.engine("state")
    seed(engine)
    engine.dispose()
    yield dbs
    for name in names:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def client(seeded: Databases) -> Iterator[TestClient]:
    with client_for(seeded) as c:
        yield c


@pytest.fixture
def fresh(databases: Databases) -> Iterator[tuple[Databases, TestClient]]:
    engine = databases.engine("state")
    seed(engine)
    engine.dispose()
    with client_for(databases) as c:
        yield databases, c


def cells(html: str, table_id: str) -> list[list[str]]:
    """The text of each body row of the table with that id (tags stripped, whitespace squeezed)."""
    table = re.search(rf'<table id="{table_id}".*?</table>', html, re.S)
    assert table, f"no table {table_id}"
    body = re.search(r"<tbody>(.*?)</tbody>", table.group(0), re.S)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1) if body else "", re.S)
    return [
        [
            html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c)).strip())
            for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)
        ]
        for r in rows
    ]


def csrf(user: str) -> str:
    return make_csrf_token(SECRET, user)


# --- pages ------------------------------------------------------------------------------


def test_every_page_refuses_without_a_user(client: TestClient) -> None:
    for path in ("/recon/", "/recon/run?run_id=r3", "/recon/exceptions", "/recon/exception/1", "/recon/exceptions.csv"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/auth/login?next=/recon/")
    response = client.post("/recon/exception/1/status", data={"action": "acknowledge", "note": "x"})
    assert response.status_code == 401


def test_an_app_without_auth_wiring_refuses_everything(seeded: Databases) -> None:
    parent = FastAPI()
    parent.mount("/recon", create_app(WorkspaceConfig.from_env(SECRET, env={"CLAIMSYNC_STATE_URL": seeded.state_url})))
    with TestClient(parent) as c:
        assert c.get("/recon/", headers=ALICE).status_code == 401
        assert c.post("/recon/run/signoff", headers=ALICE, data={"run_id": "r3", "role": "preparer"}).status_code == 401


def test_runs_list_shows_counts_and_amounts_per_severity_and_signoff_state(
    client: TestClient, seeded: Databases
) -> None:
    response = client.get("/recon/?lang=en", headers=ALICE)
    assert response.status_code == 200
    rows = cells(response.text, "runs")
    assert [r[0].split()[0] for r in rows] == ["2026-03-03", "2026-02-15", "2025-12-20"]
    r3 = rows[0]
    expected = exception_rows(range(10, 70))
    for i, severity in enumerate(("critical", "high", "medium", "info")):
        mine = [r for r in expected if r["severity"] == severity]
        amount = sum(Decimal(r["amount_impact_cents"]) for r in mine) / 100
        assert r3[3 + i].startswith(f"{len(mine)} ¥{amount:,.2f}"), (severity, r3[3 + i])
    assert r3[7].startswith("60 ")
    assert r3[8] == "94.00%"
    assert r3[9] == r3[10] == "not signed"
    with client_for(seeded) as first_visit:  # Chinese is the default; ?lang=en is remembered in a cookie
        assert "<h1>对账批次</h1>" in first_visit.get("/recon/", headers=ALICE).text
        assert "<h1>Reconciliation runs</h1>" in first_visit.get("/recon/?lang=en", headers=ALICE).text
        assert "<h1>Reconciliation runs</h1>" in first_visit.get("/recon/", headers=ALICE).text


def test_run_page_summarises_by_code_age_department_and_trend(client: TestClient, seeded: Databases) -> None:
    response = client.get("/recon/run?run_id=r3&lang=en", headers=ALICE)
    assert response.status_code == 200
    html = response.text
    expected = exception_rows(range(10, 70))
    by_code = {r[0].split(" ")[-1]: r for r in cells(html, "by-code")}
    for code in {r["code"] for r in expected}:
        mine = [r for r in expected if r["code"] == code]
        amount = sum(Decimal(r["amount_impact_cents"]) for r in mine) / 100
        assert by_code[code][2] == str(len(mine))
        assert by_code[code][3] == f"¥{amount:,.2f}"
    # Ages at r3 (2026-03-03): first seen in r1 (2025-12-20, 73 days) → > 60; in r2 (16 days) → 8–30;
    # in r3 → 0–7. r3 saw 10..69: 10..29 from r1, 30..49 from r2, 50..69 new.
    aging = {r[0]: int(r[1]) for r in cells(html, "aging")}
    assert aging == {"0–7 days": 20, "8–30 days": 20, "31–60 days": 0, "> 60 days": 20}
    departments = {r[0].split()[0]: int(r[1]) for r in cells(html, "by-department")}
    assert departments == {d: sum(1 for r in expected if r["department_code"] == d) for d in DEPARTMENTS}
    assert html.count("<rect") >= 3
    assert "<svg" in html
    assert cells(html, "by-status") == [["open", "60", cells(html, "by-status")[0][2]]]
    engine = seeded.engine("state")
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT run_id FROM claimsync.workspace_run_rollup_state ORDER BY 1")).scalars()
        assert list(stored) == ["r1", "r2", "r3"]
    engine.dispose()


def test_a_running_run_is_aggregated_live_and_not_stored(databases: Databases) -> None:
    engine = databases.engine("state")
    migrate(engine)
    record(engine, "live", RUN_DAYS["r3"], exception_rows(range(5)), status="running")
    with client_for(databases) as c:
        html = c.get("/recon/run?run_id=live&lang=en", headers=ALICE).text
    assert sum(int(r[2]) for r in cells(html, "by-code")) == 5
    assert "Sign off as preparer" not in html  # only a succeeded run can be signed off
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM claimsync.workspace_run_rollup")).scalar() == 0
    engine.dispose()


def test_unknown_run_and_invalid_filters_are_clear_errors(client: TestClient) -> None:
    assert client.get("/recon/run?run_id=nope", headers=ALICE).status_code == 404
    for query in (
        "code=bogus",
        "severity=urgent",
        "age=1-2",
        "status=deleted",
        "sort=random",
        "department=x'%20OR%201=1--",
    ):
        response = client.get(f"/recon/exceptions?{query}", headers=ALICE)
        assert response.status_code == 400, query
        assert 'id="error-message"' in response.text
    assert client.get("/recon/exceptions?after=garbage", headers=ALICE).status_code == 400
    assert client.get("/recon/exception/abc", headers=ALICE).status_code == 400


# --- the exception list ---------------------------------------------------------------------


def listed_ids(client: TestClient, query: str) -> tuple[list[int], int]:
    html = client.get(f"/recon/exceptions?{query}&lang=en", headers=ALICE).text
    ids = [int(i) for i in re.findall(r'data-exception-id="(\d+)"', html)]
    total = int(re.search(r'id="result-count">([\d,]+) in all', html).group(1).replace(",", ""))  # type: ignore[union-attr]
    return ids, total


def ids_by_key(seeded: Databases) -> dict[str, int]:
    engine = seeded.engine("state")
    with engine.connect() as conn:
        mapping = dict(conn.execute(sa.text("SELECT business_key, id FROM claimsync.recon_exception")).all())
    engine.dispose()
    return {k: int(v) for k, v in mapping.items()}


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        ("run_id=r3&code=amount_mismatch", lambda n, r: r["code"] == "amount_mismatch"),
        ("run_id=r3&severity=critical", lambda n, r: r["severity"] == "critical"),
        ("run_id=r3&department=HR-01", lambda n, r: r["department_code"] == "HR-01"),
        ("run_id=r3&age=60%2B", lambda n, r: n < 30),
        ("run_id=r3&age=8-30", lambda n, r: 30 <= n < 50),
        ("run_id=r3&age=0-7&department=IT-01", lambda n, r: n >= 50 and r["department_code"] == "IT-01"),
        ("run_id=r3&q=B26000042", lambda n, r: n == 42),
        ("run_id=r3&q=5017", lambda n, r: n == 17),
    ],
)
def test_filters_select_exactly_the_matching_exceptions(
    client: TestClient, seeded: Databases, query: str, keep: Any
) -> None:
    keys = ids_by_key(seeded)
    expected = {
        keys[r["business_key"]] for n, r in zip(range(10, 70), exception_rows(range(10, 70)), strict=True) if keep(n, r)
    }
    ids, total = listed_ids(client, query)
    assert set(ids) == expected
    assert total == len(expected)


def test_status_filter_and_the_global_list(client: TestClient, seeded: Databases) -> None:
    keys = ids_by_key(seeded)
    resolved = {keys[f"oa:{5000 + n}"] for n in range(10)}  # not found by the full run r3
    ids, total = listed_ids(client, "status=resolved")
    assert set(ids) == resolved
    assert total == 10
    ids, total = listed_ids(client, "status=unresolved")
    assert total == 60
    assert not set(ids) & resolved


def test_keyset_paging_walks_every_row_once_in_order(seeded: Databases) -> None:
    config_env = {"CLAIMSYNC_STATE_URL": seeded.state_url}
    for sort in ("amount", "age"):
        config = WorkspaceConfig.from_env(SECRET, env=config_env)
        config = dataclasses.replace(config, page_size=7)
        parent = FastAPI()
        parent.mount("/recon", create_app(config, WorkspaceAuth(viewer, editor)))
        seen: list[int] = []
        with TestClient(parent) as c:
            url: str | None = f"/recon/exceptions?run_id=r3&sort={sort}&lang=en"
            while url:
                html = c.get(url, headers=ALICE).text
                seen += [int(i) for i in re.findall(r'data-exception-id="(\d+)"', html)]
                nxt = re.search(r'id="next-page" href="([^"]+)"', html)
                url = nxt.group(1).replace("&amp;", "&") if nxt else None
        assert len(seen) == len(set(seen)) == 60, sort
        engine = seeded.engine("state")
        order = "r.amount_impact DESC, r.exception_id DESC" if sort == "amount" else "e.first_seen, e.id"
        with engine.connect() as conn:
            expected = conn.execute(
                sa.text(
                    "SELECT e.id FROM claimsync.recon_run_exception r JOIN claimsync.recon_exception e"
                    f" ON e.id = r.exception_id WHERE r.run_id = 'r3' ORDER BY {order}"
                )
            ).scalars()
            assert seen == list(expected), sort
        engine.dispose()


# --- exports ----------------------------------------------------------------------------------


def test_csv_export_has_the_stable_columns_and_the_filtered_rows(client: TestClient) -> None:
    response = client.get("/recon/exceptions.csv?run_id=r3&department=FIN-01", headers=VICTOR)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == [
        "code", "severity", "oa_request_id", "claim_code", "employee_code", "oa_amount", "expense_amount",
        "amount_impact", "currency", "oa_state", "expense_state", "first_seen", "detail",
    ]  # fmt: skip
    expected = [r for r in exception_rows(range(10, 70)) if r["department_code"] == "FIN-01"]
    assert len(rows) - 1 == len(expected)
    by_request = {int(r[2]): r for r in rows[1:]}
    sample = expected[0]
    line = by_request[sample["oa_request_id"]]
    assert line[5] == f"{Decimal(sample['oa_amount_cents']) / 100:.2f}"
    assert line[7] == f"{Decimal(sample['amount_impact_cents']) / 100:.2f}"
    assert "13812345678" not in response.text
    assert "138****5678" in response.text
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00", line[11])


def test_xlsx_export_has_bilingual_headers_and_money_cells(client: TestClient) -> None:
    response = client.get("/recon/exceptions.xlsx?run_id=r3&severity=critical", headers=ALICE)
    assert response.status_code == 200
    workbook = openpyxl.load_workbook(io.BytesIO(response.content))
    sheet = workbook.worksheets[0]
    header = [c.value for c in sheet[1]]
    assert header[0] == "异常类型 / code"
    assert "影响金额 / amount impact" in header
    expected = [r for r in exception_rows(range(10, 70)) if r["severity"] == "critical"]
    assert sheet.max_row - 1 == len(expected)
    impact = sheet.cell(row=2, column=header.index("影响金额 / amount impact") + 1)
    assert isinstance(impact.value, float)
    assert "¥" in impact.number_format
    facts = {row[0].value: row[1].value for row in workbook.worksheets[1].iter_rows()}
    assert facts["导出人 / exported by"] == "alice"


def test_html_report_of_a_run_is_the_self_contained_report(client: TestClient) -> None:
    response = client.get("/recon/run/report.html?run_id=r3", headers=VICTOR)
    assert response.status_code == 200
    assert "r3" in response.text
    assert "<script src" not in response.text
    assert "<link" not in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]


# --- actions ----------------------------------------------------------------------------------


def test_acknowledge_needs_a_note_a_csrf_token_and_the_right_to_act(fresh: tuple[Databases, TestClient]) -> None:
    dbs, c = fresh
    target = ids_by_key(dbs)["oa:5020"]
    url = f"/recon/exception/{target}/status"
    form = {"action": "acknowledge", "note": "已与财务核对，OA 金额有误", "back": "run_id=r3&code=amount_mismatch"}
    assert c.post(url, headers=ALICE, data=form).status_code == 403  # no CSRF token
    assert c.post(url, headers=ALICE, data={**form, "csrf_token": csrf("bob")}).status_code == 403  # someone else's
    assert c.post(url, headers=VICTOR, data={**form, "csrf_token": csrf("victor")}).status_code == 403  # viewer
    assert c.post(url, headers=ALICE, data={**form, "note": "  ", "csrf_token": csrf("alice")}).status_code == 400
    assert c.post(url, headers=ALICE, data={**form, "note": "x" * 2001, "csrf_token": csrf("alice")}).status_code == 400
    assert c.post(url, headers=ALICE, data={**form, "action": "delete", "csrf_token": csrf("alice")}).status_code == 400
    engine = dbs.engine("state")
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT status FROM claimsync.recon_exception WHERE id = :i"), {"i": target}).scalar()
            == "open"
        )
    response = c.post(url, headers=ALICE, data={**form, "csrf_token": csrf("alice")}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/recon/exception/{target}?run_id=r3&code=amount_mismatch&done=acknowledge"
    page = c.get(response.headers["location"] + "&lang=en", headers=ALICE).text
    assert 'data-status="acknowledged"' in page
    assert "已与财务核对" in page
    again = c.post(url, headers=BOB, data={**form, "csrf_token": csrf("bob")})
    assert again.status_code == 409
    resolve = {**form, "action": "resolve", "note": "OA 已更正", "csrf_token": csrf("bob")}
    assert c.post(url, headers=BOB, data=resolve, follow_redirects=False).status_code == 303
    with engine.connect() as conn:
        events = conn.execute(
            sa.text(
                "SELECT action, from_status, to_status, actor, note FROM claimsync.recon_exception_event"
                " WHERE exception_id = :i AND run_id IS NULL ORDER BY at, id"
            ),
            {"i": target},
        ).all()
        row = conn.execute(
            sa.text("SELECT status, note, resolved_at FROM claimsync.recon_exception WHERE id = :i"), {"i": target}
        ).one()
    engine.dispose()
    assert [tuple(e) for e in events] == [
        ("acknowledge", "open", "acknowledged", "alice", "已与财务核对，OA 金额有误"),
        ("resolve", "acknowledged", "resolved", "bob", "OA 已更正"),
    ]
    assert row.status == "resolved"
    assert row.note == "OA 已更正"
    assert row.resolved_at is not None


def test_assigning_an_owner_is_recorded(fresh: tuple[Databases, TestClient]) -> None:
    dbs, c = fresh
    target = ids_by_key(dbs)["oa:5030"]
    data = {"owner": "张伟", "note": "请跟进", "csrf_token": csrf("alice")}
    assert (
        c.post(f"/recon/exception/{target}/owner", headers=ALICE, data=data, follow_redirects=False).status_code == 303
    )
    ids, total = listed_ids(c, "owner=%E5%BC%A0%E4%BC%9F")
    assert ids == [target]
    assert total == 1
    engine = dbs.engine("state")
    with engine.connect() as conn:
        event = conn.execute(
            sa.text("SELECT actor, owner, note FROM claimsync.recon_exception_event WHERE action = 'assign'")
        ).one()
    engine.dispose()
    assert tuple(event) == ("alice", "张伟", "请跟进")


def test_signoff_needs_a_preparer_then_a_different_reviewer(fresh: tuple[Databases, TestClient]) -> None:
    dbs, c = fresh

    def sign(headers: dict[str, str], role: str, run_id: str = "r3") -> int:
        data = {"run_id": run_id, "role": role, "note": f"{role} ok", "csrf_token": csrf(headers["x-user"])}
        return c.post("/recon/run/signoff", headers=headers, data=data, follow_redirects=False).status_code

    assert sign(ALICE, "reviewer") == 409  # the preparer signs first
    assert sign(VICTOR, "preparer") == 403
    assert sign(ALICE, "approver") == 400
    assert sign(ALICE, "preparer", run_id="nope") == 404
    assert sign(ALICE, "preparer") == 303
    assert sign(BOB, "preparer") == 409  # already signed
    assert sign({"x-user": "ALICE", "x-role": "admin"}, "reviewer") == 409  # same person, other case
    assert sign(BOB, "reviewer") == 303
    engine = dbs.engine("state")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT role, signed_by, note FROM claimsync.signoff ORDER BY signed_at")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("preparer", "alice", "preparer ok"), ("reviewer", "bob", "reviewer ok")]
    html = c.get("/recon/?lang=en", headers=VICTOR).text
    assert cells(html, "runs")[0][9].startswith("✓ alice")
    assert cells(html, "runs")[0][10].startswith("✓ bob")


def test_a_viewer_sees_no_action_forms(client: TestClient, seeded: Databases) -> None:
    target = ids_by_key(seeded)["oa:5020"]
    page = client.get(f"/recon/exception/{target}?lang=en", headers=VICTOR).text
    assert 'id="status-form"' not in page
    assert 'id="view-only"' in page
    assert 'id="signoff-form-preparer"' not in client.get("/recon/run?run_id=r3", headers=VICTOR).text
    assert 'id="signoff-form-preparer"' in client.get("/recon/run?run_id=r3", headers=ALICE).text


# --- the exception page with live sources ---------------------------------------------------


def seed_sources(dbs: Databases) -> None:
    oa, expense = dbs.engine("oa"), dbs.engine("expense")
    create_reference_schema(oa, "oa")
    create_reference_schema(expense, "expense")
    with oa.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO ecology.hrmdepartment (id, departmentmark, departmentname, modified) VALUES"
            " (1, 'FIN-01', '财务部', '2026-01-01 00:00:00'), (2, 'HR-01', '人力资源部', '2026-01-01 00:00:00');"
            "INSERT INTO ecology.hrmresource (id, workcode, lastname, departmentid, status, mobile, certificatenum,"
            " lastmoddate, lastmodtime) VALUES (7, 'E00007', '张伟', 1, 1, '13812345678', '110101199003074518',"
            " '2026-01-01', '00:00:00'), (8, 'E00008', '李娜', 1, 1, NULL, NULL, '2026-01-01', '00:00:00');"
            "INSERT INTO ecology.workflow_requestbase (requestid, workflowid, requestmark, requestname, creater,"
            " createdate, createtime, currentnodetype, status, lastoperator, lastoperatedate, lastoperatetime, deleted)"
            " VALUES (5020, 38, 'FYBX-2026-005020', '差旅费报销-张伟-2026-02-01', 7, '2026-02-01', '10:00:00', '3',"
            " '归档', 8, '2026-02-03', '16:00:00', 0);"
            "INSERT INTO ecology.workflow_requestlog (logid, requestid, nodeid, logtype, operator, operatedate,"
            " operatetime, remark) VALUES (1, 5020, 1, '2', 7, '2026-02-01', '10:00:00', '请审批'),"
            " (2, 5020, 2, '0', 8, '2026-02-03', '16:00:00', '同意，联系电话 13912345678');"
            "INSERT INTO ecology.formtable_main_38 (id, requestid, bxdh, sqr, sqbm, bxje, bz, fkzt)"
            " VALUES (1, 5020, 'B26000020', 7, 1, 1246.80, 'CNY', '已支付');"
            "INSERT INTO ecology.formtable_main_38_dt1 (id, mainid, fylx, je) VALUES (1, 1, '差旅费', 1246.80)"
        ))  # fmt: skip
    with expense.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO ekb.department (id, code, name, active, update_time) VALUES"
            " ('d1', 'FIN-01', '财务部', true, now());"
            "INSERT INTO ekb.staff (id, code, name, department_id, cellphone, active, update_time)"
            " VALUES ('s7', 'E00007', '张伟', 'd1', '13812345678', true, now());"
            "INSERT INTO ekb.flow (id, code, form_type, title, submitter_id, department_id, sum_amount, pay_money,"
            " currency, state, oa_request_id, create_time, submit_time, update_time) VALUES ('f20', 'B26000020',"
            " 'expense', '差旅费报销', 's7', 'd1', 1146.80, 1146.80, 'CNY', 'paid', 5020, now(), now(), now());"
            "INSERT INTO ekb.flow_detail (id, flow_id, seq, fee_type, amount)"
            " VALUES ('x1', 'f20', 1, '差旅费', 1146.80);"
            "INSERT INTO ekb.payment (id, flow_id, amount, status, payee_name, payee_account, create_time,"
            " finish_time, update_time) VALUES ('p1', 'f20', 1146.80, 'SUCCESS', '张伟', '6222021234567891234',"
            " now(), now(), now());"
            "INSERT INTO ekb.flow_log (id, flow_id, action, operator_id, time, comment) VALUES"
            " (1, 'f20', 'freeflow.pay', 's7', now(), '已支付到 6222021234567891234')"
        ))  # fmt: skip
    oa.dispose()
    expense.dispose()


def test_exception_page_shows_both_live_records_masked_with_differences_marked(
    fresh: tuple[Databases, TestClient],
) -> None:
    dbs, _ = fresh
    seed_sources(dbs)
    target = ids_by_key(dbs)["oa:5020"]
    env = {
        "CLAIMSYNC_EXPENSE_URL": dbs.expense_url,
        "CLAIMSYNC_OA_DOC_URL": "https://oa.example.com/workflow/request/ViewRequest.jsp?requestid={request_id}",
        "CLAIMSYNC_EXPENSE_DOC_URL": "https://expense.example.com/flow/{claim_code}",
    }
    with client_for(dbs, oa_url=dbs.oa_url, env=env) as c:
        html = c.get(f"/recon/exception/{target}?run_id=r3&lang=en", headers=ALICE).text
    live = {r[0]: r[1:] for r in cells(html, "live")}
    assert live["Amount"] == ["¥1,246.80", "¥1,146.80"]
    assert re.search(r'<tr class="differs" data-field="amount">', html.split('id="live"')[1])
    assert '<tr class="" data-field="employee_code">' in html.split('id="live"')[1]
    assert live["Department name"] == ["财务部", "财务部"]
    payments = cells(html, "payments")
    assert payments[0][4] == "6222 **** **** 1234"
    assert "6222021234567891234" not in html
    assert "13912345678" not in html
    assert "13812345678" not in html
    assert "110101199003074518" not in html
    assert [r[1] for r in cells(html, "approval-log")] == ["submit", "approve"]
    assert 'href="https://oa.example.com/workflow/request/ViewRequest.jsp?requestid=5020"' in html
    assert 'href="https://expense.example.com/flow/B26000020"' in html
    sides = {r[0]: r[1:] for r in cells(html, "sides")}
    assert re.search(r'<tr class="differs" data-field="amount">', html.split('id="sides"')[1].split("</table>")[0])
    assert sides  # the ledger's snapshot is shown as well


def test_an_unreachable_source_is_said_not_fatal(fresh: tuple[Databases, TestClient]) -> None:
    dbs, _ = fresh
    target = ids_by_key(dbs)["oa:5020"]
    with client_for(dbs, oa_url="postgresql://nobody:secretpw@127.0.0.1:1/oa") as c:
        response = c.get(f"/recon/exception/{target}?lang=en", headers=ALICE)
    assert response.status_code == 200
    assert 'id="oa-unavailable"' in response.text
    assert 'id="expense-unavailable"' in response.text
    assert "secretpw" not in response.text


def test_dag_run_link_opens_the_runs_report_or_says_there_is_none(client: TestClient) -> None:
    found = client.get("/recon/dagrun/claimsync_reconcile/r3", headers=ALICE, follow_redirects=False)
    assert found.status_code == 303
    assert found.headers["location"] == "/recon/run?run_id=r3"
    other = client.get("/recon/dagrun/claimsync_claim_sync/r3?lang=en", headers=ALICE)
    assert other.status_code == 200
    assert "has no reconciliation report" in other.text


def test_security_headers_and_no_caching(client: TestClient) -> None:
    response = client.get("/recon/", headers=ALICE)
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    nonce = re.search(r"script-src 'nonce-([^']+)'", response.headers["content-security-policy"]).group(1)  # type: ignore[union-attr]
    assert f'<script nonce="{nonce}">' in response.text


def test_state_database_missing_is_a_clear_503(pg_server: PgServer) -> None:
    parent = FastAPI()
    parent.mount("/recon", create_app(WorkspaceConfig.from_env(SECRET, env={}), WorkspaceAuth(viewer, editor)))
    with TestClient(parent) as c:
        response = c.get("/recon/", headers=ALICE)
    assert response.status_code == 503
    assert "CLAIMSYNC_STATE_URL" in response.text


def test_unreachable_state_database_is_a_clear_503_without_the_password(pg_server: PgServer) -> None:
    env = {"CLAIMSYNC_STATE_URL": "postgresql://claimsync:hunter2secret@127.0.0.1:1/state"}
    parent = FastAPI()
    parent.mount("/recon", create_app(WorkspaceConfig.from_env(SECRET, env=env), WorkspaceAuth(viewer, editor)))
    with TestClient(parent) as c:
        response = c.get("/recon/", headers=ALICE)
    assert response.status_code == 503
    assert "cannot reach the state database" in response.text
    assert "hunter2secret" not in response.text


def test_rollups_are_precomputed_and_recomputed_when_a_run_is_recorded_again(databases: Databases) -> None:
    engine = databases.engine("state")
    seed(engine)
    precompute_run(engine, "r3")
    rollup_sql = "SELECT sum(exceptions) FROM claimsync.workspace_run_rollup WHERE run_id = 'r3'"
    with engine.connect() as conn:
        assert conn.execute(sa.text(rollup_sql)).scalar() == 60
    # A rerun of the same run id that finds fewer exceptions replaces the run's sightings.
    record(engine, "r3", RUN_DAYS["r3"], exception_rows(range(10, 20)))
    with client_for(databases) as c:
        html = c.get("/recon/run?run_id=r3&lang=en", headers=ALICE).text
    assert sum(int(r[2]) for r in cells(html, "by-code")) == 10
    with engine.connect() as conn:
        assert conn.execute(sa.text(rollup_sql)).scalar() == 10
        state = conn.execute(
            sa.text(
                "SELECT w.finished_at = s.finished_at FROM claimsync.workspace_run_rollup_state w"
                " JOIN claimsync.sync_run s USING (run_id) WHERE run_id = 'r3'"
            )
        ).scalar()
    engine.dispose()
    assert state is True
