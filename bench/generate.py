"""Demo data generation at scale: ``claimsync.demo.generate`` vs generating alone vs a plain COPY.

    uv run python -m bench.generate [--scale 1000000] [--seed 20260331]

Three steps, each in its own process (so each has its own peak RSS), on fresh databases on
the bench server ($CLAIMSYNC_BENCH_PG_URL, else $CLAIMSYNC_TEST_PG_URL, see bench.common):

1. **generate only**: build the plan and every row batch and serialise it to CSV, no
   database; the CSV bytes go to files for step 2 (file writes timed apart).
2. **plain COPY** (baseline): those same CSV bytes into empty reference schemas, one
   connection and transaction per system, both systems in parallel, with the loader's
   statements (TRUNCATE, COPY … FREEZE, ANALYZE): the floor for loading this data here.
3. **generate()**: the real thing, generation and COPY overlapped.

Reports wall time, claims/s, rows/s per table and peak RSS to bench/results/generate.md.
Reports, does not assert.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.common import Report, peak_rss_mib, run_isolated, server, timed

AS_OF = datetime(2026, 3, 31, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
DATABASES = {"oa": "claimsync_bench_gen_oa", "expense": "claimsync_bench_gen_expense"}


def _fresh_databases() -> dict[str, str]:
    from claimsync.db import create_engine
    from claimsync.refschema import create_reference_schema

    pg = server()
    urls = {system: pg.create_database(name, recreate=True) for system, name in DATABASES.items()}
    for system, url in urls.items():
        engine = create_engine(url, system)
        create_reference_schema(engine, system, recreate=True)
        engine.dispose()
    return urls


def _drop_databases() -> None:
    pg = server()
    for name in DATABASES.values():
        pg.drop_database(name)


def step_generate_only(scale: int, seed: int, out: Path) -> dict[str, Any]:
    from claimsync.config import Settings
    from claimsync.demo import build_plan, iter_tables, table_csv

    settings = Settings()
    rows: dict[str, int] = {}
    write_seconds = 0.0
    files: dict[str, io.BufferedWriter] = {}
    with timed() as total:
        plan = build_plan(scale=scale, seed=seed, as_of=AS_OF, settings=settings)
        for system, name, table in iter_tables(plan):
            payload = table_csv(table)
            key = f"{system}.{name}"
            rows[key] = rows.get(key, 0) + table.num_rows
            started = time.perf_counter()
            if key not in files:
                files[key] = (out / f"{key}.csv").open("wb")
            files[key].write(payload)
            write_seconds += time.perf_counter() - started
    for handle in files.values():
        handle.close()
    size = sum(p.stat().st_size for p in out.glob("*.csv"))
    return {
        "seconds": total.seconds - write_seconds,
        "file_write_seconds": write_seconds,
        "rows": rows,
        "csv_bytes": size,
        "peak_rss_mib": peak_rss_mib(),
    }


def step_plain_copy(folder: Path) -> dict[str, Any]:
    from claimsync.config import Settings
    from claimsync.db import create_engine, qualified, quote_ident, raw_cursor
    from claimsync.demo import EXPENSE_COLUMNS, OA_COLUMNS

    urls = _fresh_databases()
    mapping = Settings().mapping
    real = {"form": mapping.oa_form_table, "form_lines": mapping.oa_form_lines_table}
    seconds: dict[str, float] = {}
    errors: list[BaseException] = []

    def load(system: str, schema: str, columns: dict[str, tuple[str, ...]]) -> None:
        try:
            engine = create_engine(urls[system], system)
            with engine.begin() as conn, raw_cursor(conn) as cursor:
                tables = {name: real.get(name, name) for name in columns}
                conn.exec_driver_sql("TRUNCATE " + ", ".join(qualified(conn, schema, t) for t in tables.values()))
                for name, table in tables.items():
                    path = folder / f"{system}.{name}.csv"
                    if not path.exists():
                        continue
                    cols = ", ".join(quote_ident(conn, c) for c in columns[name])
                    started = time.perf_counter()
                    with path.open("rb") as handle:
                        cursor.copy_expert(
                            f"COPY {qualified(conn, schema, table)} ({cols}) FROM STDIN WITH (FORMAT csv, FREEZE true)",
                            handle,
                            size=1 << 20,
                        )
                    seconds[f"{system}.{name}"] = time.perf_counter() - started
                for table in tables.values():
                    conn.exec_driver_sql(f"ANALYZE {qualified(conn, schema, table)}")
            engine.dispose()
        except BaseException as exc:
            errors.append(exc)

    with timed() as total:
        threads = [
            threading.Thread(target=load, args=("oa", mapping.oa_schema, OA_COLUMNS)),
            threading.Thread(target=load, args=("expense", mapping.expense_schema, EXPENSE_COLUMNS)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    _drop_databases()
    if errors:
        raise errors[0]
    return {"seconds": total.seconds, "tables": seconds, "peak_rss_mib": peak_rss_mib()}


def step_generate(scale: int, seed: int) -> dict[str, Any]:
    from claimsync.config import Settings
    from claimsync.db import create_engine
    from claimsync.demo import LoadStats, generate

    urls = _fresh_databases()
    engines = {system: create_engine(url, system) for system, url in urls.items()}
    stats = LoadStats()
    with timed() as total:
        key = generate(
            engines["oa"], engines["expense"], scale=scale, seed=seed, as_of=AS_OF, settings=Settings(), stats=stats
        )
    for engine in engines.values():
        engine.dispose()
    _drop_databases()
    return {
        "seconds": total.seconds,
        "key_seconds": key.seconds,
        "counts": key.counts(),
        "tables": {name: [t.rows, t.bytes, t.seconds] for name, t in stats.tables.items()},
        "peak_rss_mib": peak_rss_mib(),
    }


def _isolated(*args: str) -> dict[str, Any]:
    out = run_isolated("bench.generate", *args)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20260331)
    parser.add_argument("--step", choices=["generate-only", "plain-copy", "generate"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "generate-only":
        print(json.dumps(step_generate_only(args.scale, args.seed, args.dir)))
        return
    if args.step == "plain-copy":
        print(json.dumps(step_plain_copy(args.dir)))
        return
    if args.step == "generate":
        print(json.dumps(step_generate(args.scale, args.seed)))
        return

    report = Report("generate", f"Demo data generation: {args.scale:,} claims")
    load_before = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="claimsync-bench-gen-"))
    try:
        scale, seed = str(args.scale), str(args.seed)
        only = _isolated("--step", "generate-only", "--scale", scale, "--seed", seed, "--dir", str(folder))
        copy = _isolated("--step", "plain-copy", "--dir", str(folder))
        full = _isolated("--step", "generate", "--scale", scale, "--seed", seed)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    load_after = os.getloadavg()

    rows_total = sum(only["rows"].values())
    report.add(
        f"`claimsync.demo.generate` filled both reference systems with {args.scale:,} OA expense requests and "
        f"their expense claims — {rows_total:,} rows in 12 tables, {only['csv_bytes'] / 2**30:.2f} GiB of CSV — "
        f"in **{full['seconds']:.1f} s** ({args.scale / full['seconds']:,.0f} claims/s, "
        f"{rows_total / full['seconds']:,.0f} rows/s), seed {args.seed}, as of {AS_OF.isoformat()}."
    )
    report.add()
    report.table(
        ["step", "wall s", "claims/s", "rows/s", "peak RSS MiB"],
        [
            [
                "generate() — plan, rows, CSV, COPY both systems",
                f"{full['seconds']:.1f}",
                f"{args.scale / full['seconds']:,.0f}",
                f"{rows_total / full['seconds']:,.0f}",
                f"{full['peak_rss_mib']:.0f}",
            ],
            [
                "baseline: generate only (plan, rows, CSV; no database)",
                f"{only['seconds']:.1f}",
                f"{args.scale / only['seconds']:,.0f}",
                f"{rows_total / only['seconds']:,.0f}",
                f"{only['peak_rss_mib']:.0f}",
            ],
            [
                "baseline: plain COPY of the same CSV bytes (both systems in parallel)",
                f"{copy['seconds']:.1f}",
                f"{args.scale / copy['seconds']:,.0f}",
                f"{rows_total / copy['seconds']:,.0f}",
                f"{copy['peak_rss_mib']:.0f}",
            ],
        ],
    )
    report.add()
    report.add(
        f"generate() took {full['seconds'] / copy['seconds']:.2f}× the plain COPY of its own output; generating "
        f"and then copying, the two baselines one after the other, would take "
        f"{only['seconds'] + copy['seconds']:.1f} s (generation runs while the loader threads COPY). Writing the "
        f"baseline's CSV files took another {only['file_write_seconds']:.1f} s, not counted above."
    )
    report.add()
    report.add("Per table (rows/s in generate() = rows / time its loader thread spent on CSV + COPY for that table):")
    report.add()
    rows = []
    for name, (count, size, seconds) in sorted(full["tables"].items()):
        logical = (
            name.split(".")[0]
            + "."
            + {"formtable_main_38": "form", "formtable_main_38_dt1": "form_lines"}.get(
                name.split(".")[1], name.split(".")[1]
            )
        )
        plain = copy["tables"].get(logical)
        rows.append(
            [
                name,
                f"{count:,}",
                f"{size / 2**20:,.0f}",
                f"{seconds:.1f}",
                f"{count / seconds:,.0f}" if seconds else "-",
                f"{plain:.1f}" if plain is not None else "-",
                f"{count / plain:,.0f}" if plain else "-",
            ]
        )
    report.table(
        ["table", "rows", "CSV MiB", "generate() s", "rows/s", "plain COPY s", "plain rows/s"],
        rows,
    )
    report.add()
    report.add("Planted exceptions (the answer key): " + ", ".join(f"{k} {v}" for k, v in full["counts"].items()))
    report.add()
    report.add(
        f"Load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} on a 2-core machine shared with "
        "other work, so the figures are noisy; the baseline ran in the same conditions. The server is "
        "PostgreSQL with wal_level replica (COPY is WAL-logged) and max_wal_size 1 GB."
    )
    path = report.write()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
