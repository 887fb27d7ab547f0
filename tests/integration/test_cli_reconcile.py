"""`claimsync reconcile` on demo data in real PostgreSQL: files, summary, exit codes, one-line errors."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from claimsync.cli import main
from claimsync.config import Settings
from claimsync.pgserver import PgServer
from claimsync.refschema import create_reference_schema
from tests.conftest import Databases, make_databases

AS_OF = datetime(2026, 3, 31, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture(scope="module")
def demo(pg_server: PgServer) -> Iterator[tuple[Databases, Any]]:
    """OA and expense filled once with demo data (read-only for these tests), and the answer key."""
    from claimsync.demo import generate

    dbs, names = make_databases(pg_server)
    oa, expense = dbs.engine("oa"), dbs.engine("expense")
    try:
        create_reference_schema(oa, "oa", recreate=True)
        create_reference_schema(expense, "expense", recreate=True)
        key = generate(oa, expense, scale=250, seed=7, as_of=AS_OF, settings=Settings())
    finally:
        oa.dispose()
        expense.dispose()
    yield dbs, key
    for name in names:
        pg_server.drop_database(name)


@pytest.fixture
def new_state(pg_server: PgServer) -> Iterator[Callable[[], str]]:
    names: list[str] = []

    def make() -> str:
        names.append(f"cs_cli_state_{len(names)}_{id(names)}")
        return pg_server.create_database(names[-1], recreate=True)

    yield make
    for name in names:
        pg_server.drop_database(name)


@pytest.fixture(autouse=True)
def no_env_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLAIMSYNC_OA_URL", "CLAIMSYNC_EXPENSE_URL", "CLAIMSYNC_STATE_URL"):
        monkeypatch.delenv(name, raising=False)


def urls(dbs: Databases, state_url: str) -> list[str]:
    return ["--oa-url", dbs.oa_url, "--expense-url", dbs.expense_url, "--state-url", state_url]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_reconcile_writes_the_report_and_exits_0_with_exceptions(
    demo: tuple[Databases, Any], new_state: Callable[[], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dbs, key = demo
    state = new_state()
    out = tmp_path / "report"
    assert main(["reconcile", "--as-of", AS_OF.isoformat(), "--out", str(out), *urls(dbs, state)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["exceptions.csv", "report.html", "report.xlsx"]
    rows = read_csv(out / "exceptions.csv")
    total = sum(key.counts().values())
    assert total > 0
    assert len(rows) == total
    assert {(r["code"]) for r in rows} == {code for code, n in key.counts().items() if n}
    assert f"{total} exceptions" in printed
    assert str(out / "report.html") in printed
    assert "<td>succeeded" in (out / "report.html").read_text(encoding="utf-8")  # rendered after the run closed
    for code, count in key.counts().items():
        if count:
            assert any(line.split()[:2] == [code, str(count)] for line in printed.splitlines()), code
    engine = sa.create_engine(state)
    try:
        with engine.connect() as conn:
            run = conn.execute(sa.text("SELECT run_id, status, triggered_by, summary FROM claimsync.sync_run")).one()
            keys = conn.execute(sa.text("SELECT code, business_key FROM claimsync.recon_exception")).all()
    finally:
        engine.dispose()
    assert run.status == "succeeded"
    assert run.run_id == f"cli__reconcile__{AS_OF.isoformat()}"
    assert run.triggered_by.startswith("cli:")
    assert run.summary["exceptions"] == total
    assert {(k.code, k.business_key) for k in keys} == key.all_keys()


def test_buckets_give_the_same_report(
    demo: tuple[Databases, Any], new_state: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dbs, _ = demo
    as_of = ["--as-of", AS_OF.isoformat()]
    assert main(["reconcile", *as_of, "--out", str(tmp_path / "one"), *urls(dbs, new_state())]) == 0
    monkeypatch.setenv("CLAIMSYNC_BUCKETS", "3")  # the default of --buckets
    state = new_state()
    assert main(["reconcile", *as_of, "--out", str(tmp_path / "three"), *urls(dbs, state)]) == 0
    one = (tmp_path / "one" / "exceptions.csv").read_bytes()
    assert (tmp_path / "three" / "exceptions.csv").read_bytes() == one
    engine = sa.create_engine(state)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT buckets FROM claimsync.recon_run_stats")).scalar() == 3
    finally:
        engine.dispose()


def test_the_default_folder_is_named_after_the_date(
    demo: tuple[Databases, Any], new_state: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dbs, _ = demo
    monkeypatch.chdir(tmp_path)
    assert main(["reconcile", "--as-of", "2026-03-31", *urls(dbs, new_state())]) == 0
    assert (tmp_path / "claimsync-report-2026-03-31" / "report.html").is_file()


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as-of", "yesterday"], "--as-of must be ISO 8601"),
        (["--buckets", "0"], "buckets must be a whole number from 1 to"),
    ],
)
def test_bad_input_is_exit_2_and_one_line(
    demo: tuple[Databases, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    dbs, _ = demo
    assert main(["reconcile", *args, "--out", str(tmp_path), *urls(dbs, dbs.state_url)]) == 2
    assert message in one_error_line(capsys)


def test_missing_or_unreachable_database_is_exit_2(
    demo: tuple[Databases, Any], new_state: Callable[[], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dbs, _ = demo
    assert main(["reconcile", "--out", str(tmp_path), "--oa-url", dbs.oa_url, "--expense-url", dbs.expense_url]) == 2
    assert "set CLAIMSYNC_STATE_URL" in one_error_line(capsys)
    bad = "postgresql://nobody@127.0.0.1:1/nothing"
    assert main(["reconcile", "--out", str(tmp_path), *urls(dbs, new_state())[:4], "--state-url", bad]) == 2
    assert "cannot connect to the state database" in one_error_line(capsys)


def test_a_failed_run_is_exit_1_one_line_and_recorded(
    databases: Databases, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    oa, expense = databases.engine("oa"), databases.engine("expense")
    create_reference_schema(oa, "oa", recreate=True)
    create_reference_schema(expense, "expense", recreate=True)
    with oa.begin() as conn:  # a source table vanished after the run started
        conn.execute(sa.text("DROP TABLE ecology.formtable_main_38_dt1"))
    oa.dispose()
    expense.dispose()
    assert (
        main(["reconcile", "--as-of", AS_OF.isoformat(), "--out", str(tmp_path), *urls(databases, databases.state_url)])
        == 1
    )
    err = one_error_line(capsys)
    assert err.startswith("claimsync: ")
    state = databases.engine("state")
    try:
        with state.connect() as conn:
            run = conn.execute(sa.text("SELECT status, error FROM claimsync.sync_run")).one()
    finally:
        state.dispose()
    assert run.status == "failed"
    assert "formtable_main_38_dt1" in run.error
