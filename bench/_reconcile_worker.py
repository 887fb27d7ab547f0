"""One contender of bench.reconcile, run in its own process (clean peak RSS); prints one JSON line.

``python -m bench._reconcile_worker CONTENDER OA_URL EXPENSE_URL [STATE_URL] [ARGS…]``
"""

from __future__ import annotations

import json
import pickle
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.common import peak_rss_mib

AS_OF = datetime(2026, 12, 31, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))

# Every table claimsync reads, per database (the COPY floor pulls them whole).
FLOOR_TABLES = {
    "oa": (
        "ecology.workflow_requestbase",
        "ecology.workflow_requestlog",
        "ecology.formtable_main_38",
        "ecology.formtable_main_38_dt1",
        "ecology.hrmresource",
        "ecology.hrmdepartment",
    ),
    "expense": ("ekb.flow", "ekb.flow_detail", "ekb.payment", "ekb.staff", "ekb.department"),
}


class _Null:
    """A file that forgets what it is given: COPY's cost without a consumer's."""

    def write(self, data: bytes) -> int:
        return len(data)


def floor(oa_url: str, expense_url: str) -> dict[str, Any]:
    import psycopg2

    from claimsync.db import normalize_url

    per_table: dict[str, float] = {}
    for system, url in (("oa", oa_url), ("expense", expense_url)):
        dsn = normalize_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
            for table in FLOOR_TABLES[system]:
                started = time.perf_counter()
                cursor.copy_expert(f"COPY {table} TO STDOUT WITH (FORMAT csv)", _Null())
                per_table[table] = time.perf_counter() - started
    return {"seconds": sum(per_table.values()), "per_table": per_table}


def claimsync_full(oa_url: str, expense_url: str, state_url: str) -> dict[str, Any]:
    """The steps of claimsync.pipeline's single-process run, timed one by one."""
    from claimsync.config import Settings
    from claimsync.db import create_engine
    from claimsync.extract import extract_sides
    from claimsync.reconcile import reconcile

    settings = Settings()
    oa, expense = create_engine(oa_url, "OA"), create_engine(expense_url, "expense")
    phases: dict[str, float] = {}
    started = time.perf_counter()
    sides = extract_sides(oa, expense, settings).for_reconcile()
    phases["extract + canonicalize"] = time.perf_counter() - started
    mark = time.perf_counter()
    result = reconcile(sides, as_of=AS_OF, settings=settings)
    phases["reconcile"] = time.perf_counter() - mark
    del sides
    ledger = _record_ledger(state_url, result, settings)
    if ledger is not None:
        phases["ledger"] = ledger
    return {
        "seconds": time.perf_counter() - started,
        "phases": phases,
        "exceptions": len(result.exceptions),
        "counts": result.counts(),
        "match_rate": result.match_rate,
    }


def _record_ledger(state_url: str, result: Any, settings: Any) -> float | None:
    """Write the result into the exception ledger when claimsync.ledger exists (it is a colleague's)."""
    try:
        from claimsync.ledger import record_reconciliation
    except ImportError:
        return None
    from claimsync.db import create_engine
    from claimsync.migrations import migrate
    from claimsync.runs import RunInfo, begin_run, cli_run_id

    state = create_engine(state_url, "state")
    migrate(state)
    run = RunInfo(
        run_id=cli_run_id("reconcile", datetime.now(AS_OF.tzinfo)),
        flow="reconcile",
        as_of=AS_OF,
        triggered_by="bench",
        config_version=settings.config_version(),
        full_run=True,
    )
    begin_run(state, run)
    started = time.perf_counter()
    record_reconciliation(state, run, result, full=True)
    return time.perf_counter() - started


def claimsync_bucket(oa_url: str, expense_url: str, index: str, count: str, out: str) -> dict[str, Any]:
    from claimsync.config import Settings
    from claimsync.db import create_engine
    from claimsync.extract import extract_sides
    from claimsync.reconcile import reconcile

    settings = Settings()
    started = time.perf_counter()
    sides = extract_sides(
        create_engine(oa_url, "OA"), create_engine(expense_url, "expense"), settings, bucket=(int(index), int(count))
    ).for_reconcile()
    result = reconcile(sides, as_of=AS_OF, settings=settings)
    Path(out).write_bytes(pickle.dumps(result))
    return {"seconds": time.perf_counter() - started}


def claimsync_merge(*paths: str) -> dict[str, Any]:
    from claimsync.reconcile import merge_results

    started = time.perf_counter()
    results = [pickle.loads(Path(p).read_bytes()) for p in paths]
    merged = merge_results(results)
    return {
        "seconds": time.perf_counter() - started,
        "exceptions": len(merged.exceptions),
        "counts": merged.counts(),
        "match_rate": merged.match_rate,
    }


def naive(oa_url: str, expense_url: str) -> dict[str, Any]:
    """The obvious way: pd.read_sql every table, then pandas merges and comparisons."""
    import pandas as pd

    from claimsync.db import create_engine

    started = time.perf_counter()
    oa, expense = create_engine(oa_url, "OA"), create_engine(expense_url, "expense")
    read = {}
    for table in FLOOR_TABLES["oa"]:
        read[table] = pd.read_sql(f"SELECT * FROM {table}", oa)
    for table in FLOOR_TABLES["expense"]:
        read[table] = pd.read_sql(f"SELECT * FROM {table}", expense)
    loaded = time.perf_counter() - started
    requests = read["ecology.workflow_requestbase"].merge(read["ecology.formtable_main_38"], on="requestid")
    logs = read["ecology.workflow_requestlog"]
    logs = logs[logs["logtype"].isin(["2", "0", "3", "r", "e"])]
    last = logs.sort_values(["requestid", "operatedate", "operatetime", "logid"]).groupby("requestid").tail(1)
    requests = requests.merge(last[["requestid", "logtype"]], on="requestid", how="left")
    oa_lines = read["ecology.formtable_main_38_dt1"].groupby("mainid")["je"].sum().rename("lines_total")
    requests = requests.merge(oa_lines, left_on="id", right_index=True, how="left")
    flows = read["ekb.flow"]
    flows = flows[flows["form_type"] == "expense"]
    flow_lines = read["ekb.flow_detail"].groupby("flow_id")["amount"].sum().rename("lines_total")
    flows = flows.merge(flow_lines, left_on="id", right_index=True, how="left")
    pairs = requests.merge(flows, left_on="requestid", right_on="oa_request_id", how="outer", indicator=True)
    both = pairs[pairs["_merge"] == "both"]
    amount_mismatch = int((both["bxje"] != both["sum_amount"]).sum())
    return {
        "seconds": time.perf_counter() - started,
        "load_seconds": loaded,
        "amount_mismatch": amount_mismatch,
        "unmatched": int((pairs["_merge"] != "both").sum()),
    }


CONTENDERS = {
    "floor": floor,
    "claimsync": claimsync_full,
    "bucket": claimsync_bucket,
    "merge": claimsync_merge,
    "naive": naive,
}


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    outcome = CONTENDERS[name](*args)
    outcome["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(outcome, default=str))
