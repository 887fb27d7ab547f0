"""How claimsync pulls rows: COPY CSV streamed into Arrow's CSV reader vs ADBC (issue 3).

The issue left the transport open ("COPY or Arrow/ADBC — measure"). This runs each of the five
big queries of a full extraction (OA claims and lines, expense claims, lines and payments, as
claimsync renders them) both ways, interleaved, ``--rounds`` times:

- **COPY CSV**: claimsync.extract's own path (``COPY (query) TO STDOUT`` CSV, psycopg2 writing
  into a pipe, Arrow's multi-threaded CSV reader with explicit column types, then pandas);
- **ADBC**: ``adbc-driver-postgresql`` (binary COPY decoded in C++ into Arrow, then pandas with
  the same type mapping), in its own uv environment (bench._adbc_worker), timed inside.

Both report wall seconds and the client's CPU seconds (user + system) of the fetch alone. Uses the
databases of bench.reconcile (filled if they do not hold ``--claims``).

Run: ``uv run python -m bench.transport [--claims 1000000] [--rounds 2]``. Writes
bench/results/transport.md. It reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._fill import fill
from bench.common import Report, server
from bench.reconcile import DATABASES, HERE, _filled, _libpq
from claimsync.config import Settings
from claimsync.db import create_engine, raw_cursor
from claimsync.extract import _copy_frame, _render, _scope, _Side

QUERIES = ("oa/claims", "oa/lines", "expense/claims", "expense/lines", "expense/payments")


def _rendered(url: str, system: str, settings: Settings) -> dict[str, str]:
    """The full extraction's queries of ``system`` with their parameters bound."""
    engine = create_engine(url, "bench")
    rendered: dict[str, str] = {}
    with engine.connect() as conn:
        side = _Side(system, conn, settings, _scope(settings, None, None))
        for name in (q for q in QUERIES if q.startswith(system)):
            if name.endswith("/claims"):
                fragments = {"scope": "TRUE", "scope_bucket": "NULL"}
                if system == "oa":
                    fragments["log_scope"] = "TRUE"
            else:
                fragments = {"lines_scope": "TRUE"}
            query = _render(conn, name, settings, **fragments)
            with raw_cursor(conn) as cursor:
                rendered[name] = cursor.mogrify(query, side._params()).decode()
    engine.dispose()
    return rendered


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _copy_csv(url: str, name: str, query: str) -> dict[str, Any]:
    engine = create_engine(url, "bench")
    with engine.connect() as conn:
        started, cpu = time.perf_counter(), _cpu()
        frame = _copy_frame(conn, name, query, {})
        seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    engine.dispose()
    return {"seconds": seconds, "cpu": cpu, "rows": len(frame)}


def _adbc(url: str, query: str) -> dict[str, Any]:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        return {"error": "uv not found (run the benchmark with `uv run`)"}
    with tempfile.NamedTemporaryFile("w", suffix=".sql", encoding="utf-8", delete=False) as file:
        file.write(query)
    try:
        command = [uv, "run", "--quiet", "--no-project", "--python", "3.11"]
        for requirement in ("adbc-driver-postgresql", "pyarrow", "pandas>=3"):
            command += ["--with", requirement]
        command += ["python", str(HERE / "_adbc_worker.py"), _libpq(url), file.name]
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tempfile.gettempdir())
    finally:
        Path(file.name).unlink()
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    pg = server()
    oa_url, expense_url, _ = (pg.create_database(name) for name in DATABASES)
    if not _filled(oa_url, args.claims):
        pg.create_database(DATABASES[2], recreate=True)
        fill(oa_url, expense_url, args.claims)
    settings = Settings()
    urls = {"oa": oa_url, "expense": expense_url}
    queries = {**_rendered(oa_url, "oa", settings), **_rendered(expense_url, "expense", settings)}

    runs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {name: [] for name in QUERIES}
    for _ in range(args.rounds):
        for name in QUERIES:
            url = urls[name.split("/")[0]]
            runs[name].append((_copy_csv(url, name, queries[name]), _adbc(url, queries[name])))

    report = Report("transport", f"Transport: COPY CSV → Arrow vs ADBC, {args.claims:,} claims per side")
    report.add(
        f"PostgreSQL: {pg.description}. Each query of a full extraction, both ways, interleaved, "
        f"{args.rounds} rounds; wall and client CPU (user + system) seconds of the fetch into pandas."
    )
    report.add()
    rows = []
    for name, pairs in runs.items():
        for index, (copy, adbc) in enumerate(pairs, start=1):
            if "error" in adbc:
                rows.append(
                    [name, str(index), f"{copy['rows']:,}", f"{copy['seconds']:.2f}", "—", "—", "—", adbc["error"]]
                )
                continue
            rows.append(
                [
                    name,
                    str(index),
                    f"{copy['rows']:,}",
                    f"{copy['seconds']:.2f}",
                    f"{copy['cpu']:.2f}",
                    f"{adbc['seconds']:.2f}",
                    f"{adbc['cpu']:.2f}",
                    f"{adbc['seconds'] / copy['seconds']:.2f}× / {adbc['cpu'] / max(copy['cpu'], 1e-9):.2f}×",
                ]
            )
    report.table(
        [
            "query",
            "round",
            "rows",
            "COPY CSV wall s",
            "COPY CSV CPU s",
            "ADBC wall s",
            "ADBC CPU s",
            "ADBC / COPY (wall / CPU)",
        ],
        rows,
    )
    total = {
        way: sum(pair[i]["seconds"] for pairs in runs.values() for pair in pairs if "seconds" in pair[i])
        for i, way in enumerate(("copy", "adbc"))
    }
    report.add()
    report.add(
        f"All queries, all rounds: COPY CSV {total['copy']:.1f} s, ADBC {total['adbc']:.1f} s of wall time"
        f" (ADBC / COPY CSV = {total['adbc'] / total['copy']:.2f}). ADBC's driver decodes the rows in the"
        " fetching thread; Arrow's CSV reader parses on several threads while psycopg2 is still receiving."
    )
    path = report.write()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
