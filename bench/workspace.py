"""Finance's workspace at 100k exceptions: does every page answer in under 500 ms?

    uv run python -m bench.workspace [--exceptions 100000] [--runs 30] [--no-screenshot]

Seeds a state DB inside PostgreSQL (``INSERT … SELECT generate_series``, deterministic): N
exceptions over R daily reconciliation runs, each exception seen by every run from its first
to its last sighting (so the latest run sees most of the ledger, as a real daily full
reconciliation does), with the ledger's per-run snapshots and run figures, 40 departments
(names in an OA reference DB), statuses and events. Then times the pages through the app
itself (claimsync.workspace mounted under /recon, FastAPI's TestClient: query + rendering,
no network): the runs list (cold: it aggregates every run's rollup once; warm), the run
page, the exception list first page and a page 50,000 rows deep (keyset), the exception
page, and exports of a filtered list. Baselines in the same run: ``SELECT count(*)`` of the
ledger, OFFSET paging to the same depth, and the per-run aggregation the rollup replaces.

Saves a screenshot of the run page (Chinese, headless Debian chromium) as
bench/results/run-page.png for the README. Reports, does not assert.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import FastAPI, Header
from fastapi.testclient import TestClient

from bench.common import RESULTS, Report, peak_rss_mib, server, timed
from claimsync.db import create_engine
from claimsync.migrations import migrate
from claimsync.refschema import create_reference_schema
from claimsync.workspace import Actor, WorkspaceAuth, WorkspaceConfig, create_app

CST = timezone(timedelta(hours=8))
FIRST_AS_OF = datetime(2026, 3, 2, 9, 0, tzinfo=CST)
DEPARTMENTS = 40
DEPARTMENT_NAMES = (
    "财务部", "人力资源部", "信息技术部", "市场部", "销售一部", "销售二部", "采购部", "法务部", "行政部", "研发一部",
    "研发二部", "质量部", "生产部", "物流部", "客服部", "审计部", "战略部", "品牌部", "投资部", "安全部",
)  # fmt: skip

# A deterministic pseudo-random number in [0, 100) from a row number and a salt.
_R = "(abs(hashint8(({g})::bigint * 7919 + {salt})) % 100)"


def _r(g: str, salt: int) -> str:
    return _R.format(g=g, salt=salt)


# Code by share of the ledger (percent), as a daily reconciliation of a mid-size company might see.
_CODE_CASE = f"""CASE
    WHEN {_r("g", 1)} < 18 THEN 'missing_in_expense' WHEN {_r("g", 1)} < 24 THEN 'missing_in_oa'
    WHEN {_r("g", 1)} < 44 THEN 'status_mismatch' WHEN {_r("g", 1)} < 47 THEN 'paid_without_approval'
    WHEN {_r("g", 1)} < 62 THEN 'amount_mismatch' WHEN {_r("g", 1)} < 70 THEN 'lines_total_mismatch'
    WHEN {_r("g", 1)} < 75 THEN 'duplicate_invoice' WHEN {_r("g", 1)} < 83 THEN 'employee_mismatch'
    WHEN {_r("g", 1)} < 85 THEN 'duplicate_link' ELSE 'in_flight' END"""

SEED_SQL = f"""
INSERT INTO claimsync.sync_run (run_id, flow, status, window_start, window_end, as_of, full_run, triggered_by,
                                config_version, started_at, finished_at)
SELECT 'scheduled__' || to_char(:first_as_of + (k || ' days')::interval, 'YYYY-MM-DD'), 'reconcile', 'succeeded',
       :first_as_of + ((k - 1) || ' days')::interval, :first_as_of + (k || ' days')::interval,
       :first_as_of + (k || ' days')::interval, true, 'scheduler', 'bench',
       :first_as_of + (k || ' days')::interval + interval '5 minutes',
       :first_as_of + (k || ' days')::interval + interval '9 minutes'
FROM generate_series(0, :runs - 1) k;

CREATE TEMPORARY TABLE bench_run AS
SELECT row_number() OVER (ORDER BY as_of) - 1 AS k, run_id, as_of FROM claimsync.sync_run WHERE flow = 'reconcile';

CREATE TEMPORARY TABLE bench_exception AS
SELECT g,
       {_CODE_CASE} AS code,
       (abs(hashint8(g * 31 + 2)) % :runs) AS first_k,
       {_r("g", 3)} AS life_roll,
       {_r("g", 4)} AS old_roll,
       1 + (({_r("g", 5)} * {_r("g", 6)}) / 100 + {_r("g", 7)} / 4) % {DEPARTMENTS} AS dept,
       10000 + abs(hashint8(g * 13 + 8)) % 3000000 AS oa_cents,
       {_r("g", 9)} AS diff_roll
FROM generate_series(1, :exceptions) g;

INSERT INTO claimsync.recon_exception (id, code, business_key, severity, status, owner, note, oa_request_id,
    claim_code, employee_code, department_code, oa_amount, expense_amount, amount_impact, currency, oa_state,
    expense_state, detail, oa_side, expense_side, first_seen, last_seen, first_run_id, last_run_id, resolved_at)
SELECT x.g, x.code, 'oa:' || (1000000 + x.g), s.severity,
       CASE WHEN lr.k < :runs - 1 THEN 'resolved'
            WHEN x.diff_roll < 20 THEN 'acknowledged' WHEN x.diff_roll < 24 THEN 'written_off' ELSE 'open' END,
       CASE WHEN x.diff_roll < 20 THEN '财务' || (x.g % 7) ELSE NULL END, NULL,
       1000000 + x.g, 'B26' || lpad(x.g::text, 6, '0'), 'E' || lpad((x.g % 3000)::text, 6, '0'),
       'D' || lpad(x.dept::text, 3, '0'),
       x.oa_cents / 100.0, (x.oa_cents - (x.diff_roll % 10) * 1000) / 100.0,
       CASE WHEN x.diff_roll % 10 = 0 THEN x.oa_cents / 100.0 ELSE (x.diff_roll % 10) * 10.0 END, 'CNY',
       'approved', CASE WHEN x.g % 3 = 0 THEN 'paid' ELSE 'submitted' END,
       x.code || ': OA 流程 ' || (1000000 + x.g) || ' / 报销单 B26' || lpad(x.g::text, 6, '0'),
       jsonb_build_object('request_id', 1000000 + x.g, 'amount', to_char(x.oa_cents / 100.0, 'FM9999999990.00'),
                          'state', 'approved', 'department_code', 'D' || lpad(x.dept::text, 3, '0')),
       jsonb_build_object('claim_code', 'B26' || lpad(x.g::text, 6, '0'), 'request_id', 1000000 + x.g,
                          'amount', to_char((x.oa_cents - (x.diff_roll % 10) * 1000) / 100.0, 'FM9999999990.00'),
                          'state', CASE WHEN x.g % 3 = 0 THEN 'paid' ELSE 'submitted' END,
                          'department_code', 'D' || lpad(x.dept::text, 3, '0')),
       fr.as_of - CASE WHEN x.old_roll < 20 THEN (x.old_roll * 5 || ' days')::interval ELSE interval '0' END,
       lr.as_of, fr.run_id, lr.run_id,
       CASE WHEN lr.k < :runs - 1 THEN lr.as_of + interval '1 day' END
FROM bench_exception x
JOIN (VALUES ('missing_in_expense', 'high'), ('missing_in_oa', 'critical'), ('status_mismatch', 'medium'),
             ('paid_without_approval', 'critical'), ('amount_mismatch', 'high'), ('lines_total_mismatch', 'medium'),
             ('duplicate_invoice', 'critical'), ('employee_mismatch', 'medium'), ('duplicate_link', 'high'),
             ('in_flight', 'info')) s(code, severity) ON s.code = x.code
JOIN bench_run fr ON fr.k = x.first_k
JOIN bench_run lr ON lr.k = CASE WHEN x.life_roll < 35 THEN LEAST(:runs - 1, x.first_k + x.life_roll % 3)
                                     ELSE :runs - 1 END;
SELECT setval(pg_get_serial_sequence('claimsync.recon_exception', 'id'), :exceptions);

INSERT INTO claimsync.recon_run_exception (run_id, exception_id, severity, oa_amount, expense_amount, amount_impact,
    currency, oa_state, expense_state, detail, oa_side, expense_side)
SELECT r.run_id, e.id, e.severity, e.oa_amount, e.expense_amount, e.amount_impact, e.currency, e.oa_state,
       e.expense_state, e.detail, e.oa_side, e.expense_side
FROM claimsync.recon_exception e
JOIN bench_run f ON f.run_id = e.first_run_id
JOIN bench_run l ON l.run_id = e.last_run_id
JOIN bench_run r ON r.k BETWEEN f.k AND l.k
ORDER BY r.k, e.id;  -- each run's sightings are written together, as the ledger does

INSERT INTO claimsync.recon_run_stats (run_id, as_of, full_run, buckets, oa_claims, expense_claims, matched,
    clean_matched, match_rate, exception_count, amount_impact)
SELECT r.run_id, r.as_of, true, 1, 400000 + r.k * 900, 399000 + r.k * 900, 392000 + r.k * 880,
       388000 + r.k * 880, round((388000 + r.k * 880)::numeric / (400000 + r.k * 900), 6),
       count(x.exception_id), COALESCE(sum(x.amount_impact), 0)
FROM bench_run r LEFT JOIN claimsync.recon_run_exception x ON x.run_id = r.run_id
GROUP BY r.run_id, r.as_of, r.k;

INSERT INTO claimsync.recon_exception_event (exception_id, action, from_status, to_status, actor, note, at)
SELECT id, 'acknowledge', 'open', status, owner, '已核实，待下月冲回', last_seen + interval '2 hours'
FROM claimsync.recon_exception WHERE status IN ('acknowledged', 'written_off') AND owner IS NOT NULL;
"""


NOTES = (
    "Reading: the pages (everything above the exports) answer warm well under 500 ms at this size. The first"
    " view after a new run also aggregates that run's rollup (one pass over its sightings); the reconcile DAG"
    " can move that off the request path with claimsync.workspace.queries.precompute_run. Keyset paging costs"
    " the same at row 50,000 as on page 1, where OFFSET paging reads and discards every earlier row. Downloads"
    " of a whole run are bounded by writing the rows (XlsxWriter is pure Python, ~15 µs a cell), not by the"
    " database; the run's HTML report is claimsync.report's renderer, which loads every exception of the run."
)


def seed_state(engine: sa.Engine, exceptions: int, runs: int) -> dict[str, int]:
    migrate(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        for statement in re.split(r";(?:\s*--[^\n]*)?\n", SEED_SQL):
            if statement.strip():
                conn.execute(sa.text(statement), {"first_as_of": FIRST_AS_OF, "runs": runs, "exceptions": exceptions})
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
        return {
            table: int(conn.execute(sa.text(f"SELECT count(*) FROM claimsync.{table}")).scalar_one())
            for table in ("sync_run", "recon_exception", "recon_run_exception", "recon_exception_event")
        }


def seed_departments(engine: sa.Engine) -> None:
    """OA's department table, so the pages show names (the workspace reads them live)."""
    create_reference_schema(engine, "oa", recreate=True)
    rows = [
        {"id": i, "mark": f"D{i:03d}", "name": f"{DEPARTMENT_NAMES[(i - 1) % len(DEPARTMENT_NAMES)]}"
         + (f"（{(i - 1) // len(DEPARTMENT_NAMES) + 1}区）" if i > len(DEPARTMENT_NAMES) else "")}
        for i in range(1, DEPARTMENTS + 1)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ecology.hrmdepartment (id, departmentmark, departmentname, modified)"
                " VALUES (:id, :mark, :name, '2026-01-01 00:00:00')"
            ),
            rows,
        )


def bench_actor(x_user: str | None = Header("finance")) -> Actor:
    return Actor(x_user or "finance", can_act=True)


def measure(call: Callable[[], Any], repeat: int = 5) -> tuple[float, float]:
    """(first call, median of ``repeat`` more) in milliseconds."""
    start = time.perf_counter()
    call()
    first = (time.perf_counter() - start) * 1000
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return first, statistics.median(times)


def get_ok(client: TestClient, url: str) -> Callable[[], Any]:
    def call() -> Any:
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
        return response

    return call


def sql_ms(engine: sa.Engine, sql: str, params: dict[str, Any] | None = None, repeat: int = 5) -> tuple[float, float]:
    def call() -> Any:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params or {}).all()

    return measure(call, repeat)


def screenshot(html: str, path: Path) -> str:
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        return "skipped: /usr/bin/chromium is not installed (apt-get install -y chromium fonts-noto-cjk)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
        page.set_content(html, wait_until="load")
        page.screenshot(path=str(path), full_page=True)
        browser.close()
    return str(path.relative_to(RESULTS.parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exceptions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-screenshot", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the seeded databases (for EXPLAIN)")
    args = parser.parse_args()

    report = Report("workspace", f"Workspace pages at {args.exceptions:,} exceptions over {args.runs} runs")
    wall = time.perf_counter()
    pg = server()
    state_url = pg.create_database("claimsync_bench_workspace_state", recreate=True)
    oa_url = pg.create_database("claimsync_bench_workspace_oa", recreate=True)
    state = create_engine(state_url, "state")
    oa = create_engine(oa_url, "oa")
    with timed() as seeding:
        counts = seed_state(state, args.exceptions, args.runs)
        seed_departments(oa)
    report.add(
        f"Seeded in {seeding.seconds:.1f} s: {counts['recon_exception']:,} exceptions, {counts['sync_run']} runs, "
        f"{counts['recon_run_exception']:,} run sightings (recon_run_exception), "
        f"{counts['recon_exception_event']:,} events."
    )
    report.add()

    config = WorkspaceConfig.from_env(
        secrets.token_bytes(32), env={"CLAIMSYNC_STATE_URL": state_url, "CLAIMSYNC_OA_URL": oa_url}
    )
    parent = FastAPI()
    parent.mount("/recon", create_app(config, WorkspaceAuth(viewer=bench_actor, editor=bench_actor)))
    rows: list[list[str]] = []

    def row(name: str, first: float, warm: float, note: str = "") -> None:
        verdict = "yes" if warm < 500 else "**no**"
        rows.append([name, f"{first:,.0f}", f"{warm:,.0f}", verdict, note])
        print(f"{name}: first {first:.0f} ms, warm {warm:.0f} ms {note}")

    with state.connect() as conn:
        latest = conn.execute(
            sa.text("SELECT run_id FROM claimsync.sync_run WHERE flow = 'reconcile' ORDER BY as_of DESC LIMIT 1")
        ).scalar_one()
        seen_latest = int(
            conn.execute(
                sa.text("SELECT count(*) FROM claimsync.recon_run_exception WHERE run_id = :r"), {"r": latest}
            ).scalar_one()
        )
        deep = min(50_000, seen_latest - 50)
        anchor = conn.execute(
            sa.text(
                "SELECT amount_impact, exception_id FROM claimsync.recon_run_exception WHERE run_id = :r"
                " ORDER BY amount_impact DESC, exception_id DESC OFFSET :o LIMIT 1"
            ),
            {"r": latest, "o": deep - 1},
        ).one()
        some_exception = int(
            conn.execute(
                sa.text(
                    "SELECT exception_id FROM claimsync.recon_run_exception WHERE run_id = :r"
                    " ORDER BY exception_id DESC LIMIT 1"
                ),
                {"r": latest},
            ).scalar_one()
        )
        filtered_rows = int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM claimsync.recon_run_exception r JOIN claimsync.recon_exception e"
                    " ON e.id = r.exception_id WHERE r.run_id = :r AND e.code = 'amount_mismatch'"
                ),
                {"r": latest},
            ).scalar_one()
        )
    run_q = urlencode({"run_id": latest})
    cursor = f"amount~{anchor.amount_impact}~{anchor.exception_id}"

    with TestClient(parent) as client:
        first, warm = measure(get_ok(client, "/recon/"))
        row("runs list (30 runs)", first, warm, "first call after install aggregates all 30 runs once")
        with state.begin() as conn:  # the day's new run, not yet aggregated: what the first visitor pays
            conn.execute(sa.text("DELETE FROM claimsync.workspace_run_rollup WHERE run_id = :r"), {"r": latest})
            conn.execute(sa.text("DELETE FROM claimsync.workspace_run_rollup_state WHERE run_id = :r"), {"r": latest})
        first, warm = measure(get_ok(client, "/recon/"))
        row("runs list after a new run", first, warm, "first call aggregates the new run once")
        first, warm = measure(get_ok(client, f"/recon/run?{run_q}"))
        row("run page (latest run)", first, warm, f"{seen_latest:,} exceptions in the run; trend of 30 runs")
        first, warm = measure(get_ok(client, f"/recon/exceptions?{run_q}"))
        row("exception list, run, page 1", first, warm, "incl. total count")
        first, warm = measure(get_ok(client, f"/recon/exceptions?{run_q}&code=amount_mismatch&department=D001"))
        row("exception list, run + code + department", first, warm)
        first, warm = measure(get_ok(client, f"/recon/exceptions?{run_q}&age=31-60&status=open&sort=age"))
        row("exception list, run + age + status, by age", first, warm)
        first, warm = measure(get_ok(client, f"/recon/exceptions?{run_q}&after={cursor}"))
        row(f"exception list, run, {deep:,} rows deep (keyset)", first, warm)
        first, warm = measure(get_ok(client, f"/recon/exceptions?{run_q}&sort=age"))
        row("exception list, run, oldest first, page 1", first, warm, "sorts the whole run by first seen")
        first, warm = measure(get_ok(client, "/recon/exceptions?status=unresolved"))
        row("exception list, whole ledger, unresolved", first, warm)
        first, warm = measure(get_ok(client, "/recon/exceptions?q=B26000042"))
        row("exception list, search by claim code", first, warm)
        first, warm = measure(get_ok(client, f"/recon/exception/{some_exception}?{run_q}"))
        row("exception page", first, warm, "OA live look-up on; expense source not configured")
        first, warm = measure(get_ok(client, f"/recon/exceptions.csv?{run_q}&code=amount_mismatch"))
        row("export CSV, run + code", first, warm, f"{filtered_rows:,} rows")
        first, warm = measure(get_ok(client, f"/recon/exceptions.xlsx?{run_q}&code=amount_mismatch"), repeat=3)
        row("export XLSX, run + code", first, warm, f"{filtered_rows:,} rows")
        first, warm = measure(get_ok(client, f"/recon/exceptions.csv?{run_q}"), repeat=2)
        row("export CSV, whole run", first, warm, f"{seen_latest:,} rows (not a page: a download)")
        first, warm = measure(get_ok(client, f"/recon/exceptions.xlsx?{run_q}"), repeat=1)
        row("export XLSX, whole run", first, warm, f"{seen_latest:,} rows (not a page: a download)")
        first, warm = measure(get_ok(client, f"/recon/run/report.html?{run_q}"), repeat=2)
        row("run report HTML (claimsync.report)", first, warm, "loads every exception of the run")
        run_html = client.get(f"/recon/run?{run_q}").text

    baselines: list[list[str]] = []
    for name, sql, params in [
        ("`SELECT count(*)` of the ledger", "SELECT count(*) FROM claimsync.recon_exception", {}),
        (
            f"OFFSET paging: run, {deep:,} rows deep",
            "SELECT e.id, e.code, r.amount_impact FROM claimsync.recon_run_exception r JOIN claimsync.recon_exception e"
            " ON e.id = r.exception_id WHERE r.run_id = :r ORDER BY r.amount_impact DESC, r.exception_id DESC"
            " OFFSET :o LIMIT 50",
            {"r": latest, "o": deep},
        ),
        (
            "per-run aggregation of all runs, no rollup (what the runs list would cost)",
            "SELECT r.run_id, e.severity, count(*), sum(r.amount_impact) FROM claimsync.recon_run_exception r"
            " JOIN claimsync.recon_exception e ON e.id = r.exception_id GROUP BY r.run_id, e.severity",
            {},
        ),
    ]:
        first, warm = sql_ms(state, sql, params)
        baselines.append([name, f"{first:,.0f}", f"{warm:,.0f}"])
        print(f"baseline {name}: {first:.0f} / {warm:.0f} ms")

    report.add("Pages through the app (query + rendering, in-process; a browser adds the network and paint).")
    report.add("'first' is the first request after start (cold caches); 'warm' the median of the next ones.")
    report.add()
    report.table(["page", "first ms", "warm ms", "< 500 ms", "note"], rows)
    report.add()
    report.add(NOTES)
    report.add()
    report.add("Baselines, plain SQL in the same run:")
    report.add()
    report.table(["query", "first ms", "warm ms"], baselines)
    report.add()
    if args.no_screenshot:
        shot = "skipped (--no-screenshot)"
    else:
        html = re.sub(r"<script nonce=.*?</script>", "", run_html, flags=re.S)
        shot = screenshot(html, RESULTS / "run-page.png")
    report.add(f"Screenshot of the run page: {shot}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    report.add(
        f"Wall time {time.perf_counter() - wall:.1f} s, peak RSS {peak_rss_mib():.0f} MiB (this process);"
        f" load average at the end {load} on {os.cpu_count()} cores."
    )
    path = report.write()
    print(f"wrote {path}")
    state.dispose()
    oa.dispose()
    if not args.keep:
        pg.drop_database("claimsync_bench_workspace_state")
        pg.drop_database("claimsync_bench_workspace_oa")


if __name__ == "__main__":
    main()
