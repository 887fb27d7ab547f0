"""Full reconciliation at scale against its floor and the usual alternatives (issue 3).

Fills both reference systems with ``--claims`` requests/claims per side (bench._fill,
server-side, 2.5 lines per claim), then runs every contender in its own process, so each
peak RSS is its own:

- **floor**: ``COPY … TO STDOUT`` of every table claimsync reads, summed (nothing parsed);
- **claimsync**: extract both sides + canonicalize + reconcile (+ the exception ledger write);
- **claimsync, N buckets**: one process per bucket (as the DAG maps them), then the merge;
- **naive**: ``pd.read_sql`` of the same tables + pandas merges;
- **datacompy 1.1** ``PandasCompare`` of the two systems' claim headers and lines (its own venv: it
  caps pandas < 3.1, so it is not a project dependency);
- **reladiff** hashdiff between the same canonical views in the two databases (own venv).

Run: ``uv run python -m bench.reconcile [--claims 1000000] [--buckets 4] [--reuse]``.
Writes bench/results/reconcile.md. It reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench._baseline_worker import TABLES
from bench._fill import fill
from bench.common import Report, server
from claimsync.db import create_engine, normalize_url

HERE = Path(__file__).resolve().parent
DATABASES = ("claimsync_bench_recon_oa", "claimsync_bench_recon_expense", "claimsync_bench_recon_state")


def _worker(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench._reconcile_worker", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _baseline(tool: str, requirements: list[str], *args: str) -> dict[str, Any]:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        return {"error": "uv not found (run the benchmark with `uv run`)"}
    command = [uv, "run", "--quiet", "--no-project", "--python", "3.11"]
    for requirement in requirements:
        command += ["--with", requirement]
    command += ["python", str(HERE / "_baseline_worker.py"), tool, *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _filled(url: str, claims: int) -> bool:
    engine = create_engine(url, "bench")
    try:
        with engine.connect() as conn:
            count = conn.execute(sa.text("SELECT count(*) FROM ecology.workflow_requestbase")).scalar()
            return count == claims
    except sa.exc.DBAPIError:
        return False
    finally:
        engine.dispose()


def _views(oa_url: str, expense_url: str) -> None:
    for side, url in enumerate((oa_url, expense_url)):
        engine = create_engine(url, "bench")
        with engine.begin() as conn:
            for view, *queries, _, _ in TABLES:
                conn.execute(sa.text(f"DROP VIEW IF EXISTS public.{view}"))
                conn.execute(sa.text(f"CREATE VIEW public.{view} AS {queries[side]}"))
        engine.dispose()


def _libpq(url: str) -> str:
    return normalize_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--buckets", type=int, default=4)
    parser.add_argument("--reuse", action="store_true", help="keep the databases if they hold --claims already")
    parser.add_argument("--skip", default="", help="comma-separated contenders to leave out")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    pg = server()
    urls = [pg.create_database(name) for name in DATABASES]
    oa_url, expense_url, state_url = urls
    report = Report("reconcile", f"Full reconciliation of {args.claims:,} claims per side")
    fill_seconds: float | None = None
    if not (args.reuse and _filled(oa_url, args.claims)):
        pg.create_database(DATABASES[2], recreate=True)
        started = time.perf_counter()
        fill(oa_url, expense_url, args.claims)
        fill_seconds = time.perf_counter() - started
    _views(oa_url, expense_url)

    load_before = os.getloadavg()[0]
    results: dict[str, dict[str, Any]] = {}
    results["floor"] = _worker("floor", oa_url, expense_url)
    if "claimsync" not in skip:
        results["claimsync"] = _worker("claimsync", oa_url, expense_url, state_url)
    if "buckets" not in skip:
        with tempfile.TemporaryDirectory() as folder:
            parts = []
            for index in range(args.buckets):
                out = str(Path(folder) / f"bucket{index}.pickle")
                parts.append(_worker("bucket", oa_url, expense_url, str(index), str(args.buckets), out))
                parts[-1]["out"] = out
            merge = _worker("merge", *(p["out"] for p in parts))
        results["buckets"] = {
            "seconds": sum(p.get("seconds", 0) for p in parts) + merge.get("seconds", 0),
            "peak_rss_mib": max([p.get("peak_rss_mib", 0) for p in parts] + [merge.get("peak_rss_mib", 0)]),
            "bucket_peaks": [round(p.get("peak_rss_mib", 0)) for p in parts],
            "merge": merge,
            "error": next((p["error"] for p in [*parts, merge] if "error" in p), None),
        }
    if "naive" not in skip:
        results["naive"] = _worker("naive", oa_url, expense_url)
    if "datacompy" not in skip:
        results["datacompy"] = _baseline(
            "datacompy",
            ["datacompy==1.1.0", "pandas<3.1", "psycopg2-binary"],
            _libpq(oa_url),
            _libpq(expense_url),
        )
    if "reladiff" not in skip:
        results["reladiff"] = _baseline(
            "reladiff", ["reladiff[postgresql]", "psycopg2-binary"], _libpq(oa_url), _libpq(expense_url)
        )

    floor = results["floor"].get("seconds") or float("nan")
    labels = {
        "floor": "floor: COPY of every table claimsync reads (summed)",
        "claimsync": "claimsync: extract + canonicalize + reconcile + ledger",
        "buckets": f"claimsync, {args.buckets} buckets (one process each) + merge",
        "naive": "naive: pd.read_sql + pandas merge",
        "datacompy": "datacompy 1.1 PandasCompare (claim headers + lines)",
        "reladiff": "reladiff hashdiff (claim headers + lines, DB to DB)",
    }
    rows = []
    for name, outcome in results.items():
        if outcome.get("error"):
            rows.append([labels[name], "—", "—", "—", f"not run: {outcome['error']}"])
            continue
        seconds = outcome["seconds"]
        rows.append(
            [
                labels[name],
                f"{seconds:.1f}",
                f"{seconds / floor:.2f}×",
                f"{outcome['peak_rss_mib']:.0f}",
                _note(name, outcome),
            ]
        )
    if fill_seconds is not None:
        report.add(f"Filling both systems took {fill_seconds:.0f} s (bench._fill, server-side).")
        report.add()
    report.add(
        f"PostgreSQL: {pg.description}. Each contender ran in its own process. Load average (1 min) "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after the contenders: the machine's "
        f"{os.cpu_count()} cores are shared, so compare within this run, not across runs."
    )
    report.add()
    report.table(["contender", "wall s", "vs floor", "peak RSS MiB", "notes"], rows)
    report.add()
    ours = results.get("claimsync", {})
    if "phases" in ours:
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in ours["phases"].items())
        report.add(f"claimsync phases: {phases}.")
        report.add(f"Exceptions found: {ours['exceptions']:,} ({json.dumps(ours['counts'])}).")
    targets = []
    if "seconds" in ours:
        targets.append(f"claimsync / floor = {ours['seconds'] / floor:.2f} (target ≤ 2)")
        for name, goal in (("datacompy", 8), ("reladiff", 5)):
            if "seconds" in results.get(name, {}):
                targets.append(
                    f"{name} / claimsync = {results[name]['seconds'] / ours['seconds']:.1f} (target ≥ {goal})"
                )
        targets.append(f"claimsync peak RSS = {ours['peak_rss_mib']:.0f} MiB (target < 1536)")
    if "bucket_peaks" in results.get("buckets", {}):
        targets.append(f"bucket peaks {results['buckets']['bucket_peaks']} MiB")
    for line in targets:
        report.add(f"- {line}")
    report.add()
    report.add("What each contender does:")
    report.add(
        "- claimsync pulls, per side in one snapshot, the claims joined with claimant, department and the last"
        " decisive approval-log entry (OA), every line, every payment, employees and departments; it parses"
        " money and dates exactly, applies every rule of claimsync.rules (linking with fallback,"
        " duplicate_link, grace window, duplicate_invoice across both systems, line totals, employees) and"
        " writes the ledger."
    )
    report.add(
        "- datacompy and reladiff compare the same two tables in one shape per system (views in"
        " bench._baseline_worker): claim headers (request id, code, amount, claimant, a state mapped in SQL)"
        " and lines (request id, line number, amount, invoice code and number). They report rows that"
        " differ; they classify nothing, and read no logs, payments or employees: a smaller job than claimsync's."
    )
    report.add("- naive loads the same tables as claimsync with pd.read_sql and does the header merges only.")
    path = report.write()
    print(f"wrote {path}")


def _note(name: str, outcome: dict[str, Any]) -> str:
    if name == "floor":
        return ", ".join(f"{t.split('.')[-1]} {s:.1f}" for t, s in outcome["per_table"].items())
    if name == "claimsync":
        return f"{outcome['exceptions']:,} exceptions, match rate {outcome['match_rate']:.3f}"
    if name == "buckets":
        return f"bucket peaks {outcome['bucket_peaks']} MiB; merge {outcome['merge'].get('seconds', 0):.1f} s"
    if name in ("naive", "datacompy"):
        return f"loading {outcome.get('load_seconds', 0):.1f} s"
    return ""


if __name__ == "__main__":
    main()
