"""Exception ledger and report at scale: claimsync's set-based ledger write against an ordinary
batched upsert, and rendering the three report files from the ledger.

    uv run python -m bench.ledger_report [--exceptions 100000]

Each step runs in a fresh process (its own peak RSS) against one throwaway state database:
1. baseline — the same exceptions upserted with SQLAlchemy ``executemany`` (batched
   INSERT … ON CONFLICT DO UPDATE, one statement per row on the server), plus run links;
2. claimsync ``record_reconciliation``, first sighting (every exception new);
3. the next day's full run: 90 % seen again, 10 % gone (auto-resolved), 5 % new;
4. the same run recorded again (a rerun: must change nothing);
5. ``render_run_report`` of that run (CSV, XLSX, HTML with the first 200 per code).
Writes bench/results/ledger_report.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.common import Report, peak_rss_mib, run_isolated, server

AS_OF = datetime(2026, 3, 31, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
CODES = (
    "missing_in_expense",
    "missing_in_oa",
    "status_mismatch",
    "paid_without_approval",
    "amount_mismatch",
    "lines_total_mismatch",
    "employee_mismatch",
    "duplicate_link",
    "in_flight",
)


def exceptions(n: int, *, offset: int = 0) -> Any:
    """``n`` synthetic exceptions (keys offset..offset+n) with both sides' snapshots, as reconcile emits them."""
    import numpy as np
    import pandas as pd

    from claimsync.rules import ExceptionCode

    rng = np.random.default_rng(offset + n)
    ids = np.arange(offset, offset + n, dtype=np.int64) + 100000
    codes = np.array(CODES)[ids % len(CODES)]
    oa_cents = rng.integers(1000, 5_000_000, n)
    exp_cents = oa_cents - rng.integers(0, 10000, n)
    claim = pd.Series([f"B26{i:08d}" for i in ids], dtype="str")
    frame = pd.DataFrame(
        {
            "code": codes,
            "severity": [ExceptionCode(c).severity.value for c in codes],
            "business_key": [f"oa:{i}" for i in ids],
            "oa_request_id": pd.array(ids, dtype="Int64"),
            "claim_code": claim,
            "employee_code": [f"E{i % 5000:06d}" for i in ids],
            "department_code": [f"D-{i % 40:02d}" for i in ids],
            "oa_amount_cents": pd.array(oa_cents, dtype="Int64"),
            "expense_amount_cents": pd.array(exp_cents, dtype="Int64"),
            "amount_impact_cents": oa_cents - exp_cents,
            "currency": "CNY",
            "oa_state": "approved",
            "expense_state": "paying",
            "detail": [f"OA {a / 100:.2f} vs expense {b / 100:.2f}" for a, b in zip(oa_cents, exp_cents, strict=True)],
        }
    )
    side = (
        '{{"amount": "{a}", "claim_code": "{c}", "currency": "CNY", "employee_code": "E{e:06d}", "state": "approved"}}'
    )
    frame["oa_side"] = [
        side.format(a=f"{a / 100:.2f}", c=c, e=i % 5000) for a, c, i in zip(oa_cents, claim, ids, strict=True)
    ]
    frame["expense_side"] = [
        side.format(a=f"{b / 100:.2f}", c=c, e=i % 5000) for b, c, i in zip(exp_cents, claim, ids, strict=True)
    ]
    return frame


class Figures:
    def __init__(self, frame: Any) -> None:
        self.exceptions = frame
        self.oa_claims = self.expense_claims = len(frame) * 20
        self.matched = len(frame) * 19
        self.clean_matched = len(frame) * 18
        self.match_rate = 0.9


def _engine(url: str) -> Any:
    from claimsync.db import create_engine

    return create_engine(url, "state")


def _run(engine: Any, run_id: str, as_of: datetime) -> Any:
    from claimsync.runs import RunInfo, begin_run

    info = RunInfo(run_id, "reconcile", as_of, "bench", "bench", window_end=as_of, full_run=True)
    begin_run(engine, info)
    return info


def step(name: str, url: str, n: int, out: str) -> dict[str, Any]:
    from claimsync.ledger import record_reconciliation
    from claimsync.report import render_run_report

    engine = _engine(url)
    result: dict[str, Any] = {"step": name}
    if name == "baseline":
        frame = exceptions(n)
        info = _run(engine, "baseline", AS_OF)
        started = time.perf_counter()
        _baseline_upsert(engine, info.run_id, frame)
        result["seconds"] = time.perf_counter() - started
    elif name in ("first", "second", "rerun"):
        if name == "first":
            frame, info = exceptions(n), _run(engine, "day1", AS_OF)
        else:  # 90 % of day 1 again (the first 10 % are gone) and 5 % new
            frame = exceptions(n * 95 // 100, offset=n // 10)
            info = _run(engine, "day2", AS_OF + timedelta(days=1))
        started = time.perf_counter()
        summary = record_reconciliation(engine, info, Figures(frame), full=True)
        result["seconds"] = time.perf_counter() - started
        result["summary"] = summary.to_dict()
        result["rows"] = len(frame)
    elif name == "render":
        started = time.perf_counter()
        files = render_run_report(engine, "day2", Path(out))
        result["seconds"] = time.perf_counter() - started
        result["sizes"] = {p.name: p.stat().st_size for p in (files.csv, files.xlsx, files.html)}
    engine.dispose()
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def _baseline_upsert(engine: Any, run_id: str, frame: Any) -> None:
    """The ordinary way: a parameterised upsert per row through executemany, then the run links."""
    import sqlalchemy as sa

    from claimsync.model import cents_to_decimal

    rows = [
        {
            "code": r.code,
            "key": r.business_key,
            "severity": r.severity,
            "rid": int(r.oa_request_id),
            "claim": r.claim_code,
            "oa": cents_to_decimal(int(r.oa_amount_cents)),
            "exp": cents_to_decimal(int(r.expense_amount_cents)),
            "impact": cents_to_decimal(int(r.amount_impact_cents)),
            "detail": r.detail,
            "oa_side": r.oa_side,
            "expense_side": r.expense_side,
            "as_of": AS_OF,
            "run": run_id,
        }
        for r in frame.itertuples(index=False)
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO claimsync.recon_exception AS e (code, business_key, severity, oa_request_id, claim_code,"
                " oa_amount, expense_amount, amount_impact, detail, oa_side, expense_side, first_seen, last_seen,"
                " first_run_id, last_run_id) VALUES (:code, :key, :severity, :rid, :claim, :oa, :exp, :impact, :detail,"
                " CAST(:oa_side AS jsonb), CAST(:expense_side AS jsonb), :as_of, :as_of, :run, :run)"
                " ON CONFLICT (code, business_key) DO UPDATE SET last_seen = EXCLUDED.last_seen,"
                " last_run_id = EXCLUDED.last_run_id, amount_impact = EXCLUDED.amount_impact, detail = EXCLUDED.detail"
            ),
            rows,
        )
        conn.execute(
            sa.text(
                "INSERT INTO claimsync.recon_run_exception (run_id, exception_id) SELECT :run, id"
                " FROM claimsync.recon_exception WHERE last_run_id = :run ON CONFLICT DO NOTHING"
            ),
            {"run": run_id},
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exceptions", type=int, default=100_000)
    parser.add_argument("--step")
    parser.add_argument("--url")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.url, args.exceptions, args.out)))
        return

    from claimsync.db import create_engine
    from claimsync.migrations import migrate

    pg = server()
    name = "claimsync_bench_ledger"
    urls = {db: pg.create_database(f"{name}_{db}", recreate=True) for db in ("base", "main")}
    for url in urls.values():
        engine = create_engine(url, "state")
        migrate(engine)
        engine.dispose()
    out = Path(tempfile.mkdtemp(prefix="claimsync-bench-report-"))
    n = args.exceptions
    results = {}
    try:
        results["baseline"] = _isolated("baseline", urls["base"], n, out)
        for name_ in ("first", "second", "rerun", "render"):
            results[name_] = _isolated(name_, urls["main"], n, out)
    finally:
        for db in urls:
            pg.drop_database(f"{name}_{db}")
        pg.stop()
        shutil.rmtree(out, ignore_errors=True)

    report = Report("ledger_report", "Exception ledger and report at scale")
    report.add(f"{n:,} exceptions of 9 codes, each with both sides' snapshots; PostgreSQL on this machine.")
    report.add()
    rows = []
    base = results["baseline"]["seconds"]
    for key, label in (
        ("baseline", "baseline: executemany upsert + links (first sighting)"),
        ("first", "claimsync: COPY → temp table → set-based steps (first sighting)"),
        ("second", "claimsync: next full run (90 % again, 10 % gone, 5 % new)"),
        ("rerun", "claimsync: the same run recorded again"),
        ("render", "render_run_report: CSV + XLSX + HTML of that run"),
    ):
        r = results[key]
        rate = f"{(r.get('rows', n) / r['seconds']):,.0f}/s" if key != "render" else "—"
        rows.append([label, f"{r['seconds']:.2f} s", rate, f"{r['peak_rss_mib']:.0f} MiB"])
    report.table(["step", "wall time", "exceptions/s", "peak RSS (process)"], rows)
    report.add()
    report.add(
        f"Speed-up of the ledger write over the baseline (first sighting): {base / results['first']['seconds']:.1f}×"
    )
    second = results["second"]["summary"]
    report.add(
        f"Next run: found {second['found']:,}, new {second['new']:,}, auto-resolved {second['auto_resolved']:,}; "
        f"the rerun reported the same: {results['rerun']['summary'] == second}."
    )
    sizes = results["render"]["sizes"]
    report.add("Report files: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))
    print(report.write())


def _isolated(name: str, url: str, n: int, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    line = run_isolated("bench.ledger_report", "--step", name, "--url", url, "--exceptions", str(n), "--out", str(out))
    result: dict[str, Any] = json.loads(line.strip().splitlines()[-1])
    print(
        f"{name}: {result['seconds']:.2f} s ({time.perf_counter() - started:.1f} s with process start)", file=sys.stderr
    )
    return result


if __name__ == "__main__":
    main()
