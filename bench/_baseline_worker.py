"""Third-party baselines of bench.reconcile, run OUTSIDE the project's environment.

datacompy 1.1 needs pandas < 3.1 and reladiff brings its own drivers, so bench.reconcile runs
this file with ``uv run --no-project --with …`` in a throwaway environment. It imports only
the standard library, pandas, psycopg2 and the tool under test; prints one JSON line.

``python bench/_baseline_worker.py datacompy OA_DSN EXPENSE_DSN``
``python bench/_baseline_worker.py reladiff OA_URL EXPENSE_URL``
"""

from __future__ import annotations

import io
import json
import resource
import sys
import time
from typing import Any

# Both systems' claim headers as one comparable shape: request id, claim code, amount,
# claimant, and a state in the canonical vocabulary (the same view for every baseline).
OA_VIEW = """
SELECT r.requestid AS request_id, COALESCE(f.bxdh, '') AS claim_code, f.bxje AS amount,
       COALESCE(e.workcode, '') AS employee_code,
       CASE WHEN r.deleted = 1 THEN 'voided'
            WHEN r.currentnodetype = '3' AND f.fkzt = '支付中' THEN 'paying'
            WHEN r.currentnodetype = '3' AND f.fkzt = '已支付' THEN 'paid'
            WHEN r.currentnodetype = '3' THEN 'approved'
            WHEN r.currentnodetype IN ('1', '2') THEN 'submitted'
            ELSE 'draft' END AS state
FROM ecology.workflow_requestbase r
JOIN ecology.formtable_main_38 f ON f.requestid = r.requestid
LEFT JOIN ecology.hrmresource e ON e.id = f.sqr
WHERE r.workflowid = 38
"""
EXPENSE_VIEW = """
SELECT fl.oa_request_id AS request_id, fl.code AS claim_code, fl.sum_amount AS amount,
       COALESCE(s.code, '') AS employee_code,
       CASE fl.state WHEN 'pending' THEN 'submitted' WHEN 'approving' THEN 'submitted' WHEN 'nullify' THEN 'voided'
            WHEN 'archived' THEN 'paid' WHEN 'paying' THEN 'paying' ELSE fl.state END AS state
FROM ekb.flow fl
LEFT JOIN ekb.staff s ON s.id = fl.submitter_id
WHERE fl.form_type = 'expense' AND fl.oa_request_id IS NOT NULL
"""

# Both systems' claim lines in one shape, keyed by (request id, line number): OA numbers its
# lines by id within a request, expense stores seq. The issue asks for lines included.
OA_LINES_VIEW = """
SELECT f.requestid AS request_id,
       row_number() OVER (PARTITION BY f.requestid ORDER BY d.id) AS seq,
       d.je AS amount, COALESCE(d.fpdm, '') AS invoice_code, COALESCE(d.fphm, '') AS invoice_number
FROM ecology.formtable_main_38_dt1 d
JOIN ecology.formtable_main_38 f ON f.id = d.mainid
JOIN ecology.workflow_requestbase r ON r.requestid = f.requestid
WHERE r.workflowid = 38
"""
EXPENSE_LINES_VIEW = """
SELECT fl.oa_request_id AS request_id, fd.seq, fd.amount,
       COALESCE(fd.invoice_code, '') AS invoice_code, COALESCE(fd.invoice_number, '') AS invoice_number
FROM ekb.flow_detail fd
JOIN ekb.flow fl ON fl.id = fd.flow_id
WHERE fl.form_type = 'expense' AND fl.oa_request_id IS NOT NULL
"""
# (view name in each database, its query per side, key columns, compared columns)
TABLES = (
    ("bench_claims", OA_VIEW, EXPENSE_VIEW, ("request_id",), ("claim_code", "amount", "employee_code", "state")),
    (
        "bench_lines",
        OA_LINES_VIEW,
        EXPENSE_LINES_VIEW,
        ("request_id", "seq"),
        ("amount", "invoice_code", "invoice_number"),
    ),
)


def _frame(dsn: str, query: str) -> Any:
    import pandas as pd
    import psycopg2

    buffer = io.BytesIO()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)", buffer)
    buffer.seek(0)
    text = dict.fromkeys(("claim_code", "amount", "employee_code", "state", "invoice_code", "invoice_number"), str)
    return pd.read_csv(buffer, dtype=text, keep_default_na=False)


def datacompy_compare(oa_dsn: str, expense_dsn: str) -> dict[str, Any]:
    """PandasCompare of the claim headers and of the lines (each loaded by COPY, then compared)."""
    import datacompy

    started = time.perf_counter()
    loaded = 0.0
    outcome: dict[str, Any] = {"version": datacompy.__version__}
    for view, oa_query, expense_query, keys, _ in TABLES:
        mark = time.perf_counter()
        oa, expense = _frame(oa_dsn, oa_query), _frame(expense_dsn, expense_query)
        loaded += time.perf_counter() - mark
        compare = datacompy.PandasCompare(oa, expense, join_columns=list(keys), df1_name="oa", df2_name="expense")
        report = compare.report()
        outcome[view] = {
            "rows_unequal": len(compare.all_mismatch()),
            "only_oa": len(compare.df1_unq_rows),
            "only_expense": len(compare.df2_unq_rows),
            "report_chars": len(report),
        }
        del oa, expense, compare
    return {"seconds": time.perf_counter() - started, "load_seconds": loaded, **outcome}


def reladiff_compare(oa_url: str, expense_url: str) -> dict[str, Any]:
    """hashdiff between the same views in the two databases, claim headers then lines."""
    import reladiff

    started = time.perf_counter()
    outcome: dict[str, Any] = {}
    for view, _, _, keys, columns in TABLES:
        oa = reladiff.connect_to_table(oa_url, view, keys, extra_columns=columns)
        expense = reladiff.connect_to_table(expense_url, view, keys, extra_columns=columns)
        outcome[view] = sum(1 for _ in reladiff.diff_tables(oa, expense, algorithm=reladiff.Algorithm.HASHDIFF))
    return {"seconds": time.perf_counter() - started, "diff_rows": outcome}


if __name__ == "__main__":
    name, first, second = sys.argv[1:4]
    outcome = {"datacompy": datacompy_compare, "reladiff": reladiff_compare}[name](first, second)
    outcome["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(outcome, default=str))
