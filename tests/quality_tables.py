"""Small canonical frames for the quality-gate tests, written as readable pipe tables.

``frame("oa_claims", '''
    request_id | amount_cents | currency
    1001       | 12345        | CNY
    1002       | -5           | CNY
''')`` gives an oa_claims frame in claimsync.canonical's dtypes: the columns named in the
table as written, every other column a valid default for that row. An empty cell or
``<NA>`` is null. Times are Asia/Shanghai local text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd
import pyarrow as pa

from claimsync.model import (
    DEPARTMENT_COLUMNS,
    EMPLOYEE_COLUMNS,
    EXPENSE_CLAIM_COLUMNS,
    LINE_COLUMNS,
    OA_CLAIM_COLUMNS,
    PAYMENT_COLUMNS,
)

TZ = "Asia/Shanghai"
TS = "ts"
DATE = "date"
INT = "Int64"
BOOL = "boolean"
TEXT = "str"

# Column → dtype per frame (the model's columns plus the *_src columns canonicalize adds).
TYPES: dict[str, dict[str, str]] = {
    "oa_claims": {
        "request_id": INT, "request_mark": TEXT, "claim_code": TEXT, "employee_code": TEXT,
        "employee_status": INT, "department_code": TEXT, "amount_cents": INT, "currency": TEXT,
        "state": TEXT, "fkzt": TEXT, "fkrq": DATE, "pzh": TEXT, "approved_at": TS, "created_at": TS,
        "changed_at": TS, "lines_total_cents": INT, "line_count": "int64",
        "amount_cents_src": TEXT, "fkrq_src": TEXT, "approved_at_src": TEXT, "created_at_src": TEXT,
        "changed_at_src": TEXT,
    },
    "expense_claims": {
        "flow_id": TEXT, "claim_code": TEXT, "oa_request_id": INT, "employee_code": TEXT,
        "department_code": TEXT, "amount_cents": INT, "pay_cents": INT, "currency": TEXT, "state": TEXT,
        "raw_state": TEXT, "approve_time": TS, "pay_time": TS, "voucher_no": TEXT, "created_at": TS,
        "changed_at": TS, "lines_total_cents": INT, "line_count": "int64",
        "amount_cents_src": TEXT, "pay_cents_src": TEXT,
    },
    "oa_lines": {
        "claim_ref": TEXT, "seq": "int64", "fee_type": TEXT, "amount_cents": INT, "invoice_code": TEXT,
        "invoice_number": TEXT, "invoice_date": DATE, "amount_cents_src": TEXT, "invoice_date_src": TEXT,
    },
    "expense_lines": {
        "claim_ref": TEXT, "seq": INT, "fee_type": TEXT, "amount_cents": INT, "invoice_code": TEXT,
        "invoice_number": TEXT, "invoice_date": DATE, "amount_cents_src": TEXT, "invoice_date_src": TEXT,
    },
    "expense_payments": {
        "payment_id": TEXT, "claim_code": TEXT, "amount_cents": INT, "status": TEXT, "payee_name": TEXT,
        "payee_account_masked": TEXT, "created_at": TS, "finished_at": TS, "changed_at": TS,
        "amount_cents_src": TEXT,
    },
    "oa_employees": {
        "employee_code": TEXT, "name": TEXT, "department_code": TEXT, "active": BOOL, "status": INT,
        "email": TEXT, "changed_at": TS, "changed_at_src": TEXT,
    },
    "expense_employees": {
        "employee_code": TEXT, "name": TEXT, "department_code": TEXT, "active": BOOL, "status": INT,
        "email": TEXT, "changed_at": TS,
    },
    "oa_departments": {
        "department_code": TEXT, "name": TEXT, "parent_code": TEXT, "active": BOOL, "changed_at": TS,
        "changed_at_src": TEXT,
    },
    "expense_departments": {
        "department_code": TEXT, "name": TEXT, "parent_code": TEXT, "active": BOOL, "changed_at": TS,
    },
}  # fmt: skip

MODEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "oa_claims": OA_CLAIM_COLUMNS,
    "expense_claims": EXPENSE_CLAIM_COLUMNS,
    "oa_lines": LINE_COLUMNS,
    "expense_lines": LINE_COLUMNS,
    "expense_payments": PAYMENT_COLUMNS,
    "oa_employees": EMPLOYEE_COLUMNS,
    "expense_employees": EMPLOYEE_COLUMNS,
    "oa_departments": DEPARTMENT_COLUMNS,
    "expense_departments": DEPARTMENT_COLUMNS,
}


def _default(kind: str, i: int) -> dict[str, Any]:
    """A valid row number ``i`` of ``kind``."""
    created, changed = "2026-02-28 09:00:00", "2026-03-01 10:00:00"
    if kind == "oa_claims":
        return {
            "request_id": 1001 + i,
            "request_mark": f"FYBX-2026-{i + 1:06d}",
            "claim_code": f"B26{i + 1:06d}",
            "employee_code": "E000001",
            "employee_status": 1,
            "department_code": "FIN-01",
            "amount_cents": 12345,
            "currency": "CNY",
            "state": "approved",
            "fkzt": None,
            "fkrq": None,
            "pzh": None,
            "approved_at": changed,
            "created_at": created,
            "changed_at": changed,
            "lines_total_cents": 12345,
            "line_count": 1,
            "amount_cents_src": "123.45",
            "fkrq_src": None,
            "approved_at_src": changed,
            "created_at_src": created,
            "changed_at_src": changed,
        }
    if kind == "expense_claims":
        return {
            "flow_id": f"F{i + 1:08d}",
            "claim_code": f"B26{i + 1:06d}",
            "oa_request_id": 1001 + i,
            "employee_code": "E000001",
            "department_code": "FIN-01",
            "amount_cents": 12345,
            "pay_cents": 12345,
            "currency": "CNY",
            "state": "approved",
            "raw_state": "paying",
            "approve_time": changed,
            "pay_time": None,
            "voucher_no": None,
            "created_at": created,
            "changed_at": changed,
            "lines_total_cents": 12345,
            "line_count": 1,
            "amount_cents_src": "123.45",
            "pay_cents_src": "123.45",
        }
    if kind in ("oa_lines", "expense_lines"):
        ref = str(1001 + i) if kind == "oa_lines" else f"B26{i + 1:06d}"
        return {
            "claim_ref": ref,
            "seq": 1,
            "fee_type": "差旅费",
            "amount_cents": 12345,
            "invoice_code": "3100201130",
            "invoice_number": f"{i + 1:08d}",
            "invoice_date": "2026-02-27",
            "amount_cents_src": "123.45",
            "invoice_date_src": "2026-02-27",
        }
    if kind == "expense_payments":
        return {
            "payment_id": f"P{i + 1:08d}",
            "claim_code": f"B26{i + 1:06d}",
            "amount_cents": 12345,
            "status": "SUCCESS",
            "payee_name": "张伟",
            "payee_account_masked": "6222 **** **** 1234",
            "created_at": changed,
            "finished_at": changed,
            "changed_at": changed,
            "amount_cents_src": "123.45",
        }
    if kind in ("oa_employees", "expense_employees"):
        row = {
            "employee_code": f"E{i + 1:06d}",
            "name": "张伟",
            "department_code": "FIN-01",
            "active": True,
            "status": 1 if kind == "oa_employees" else None,
            "email": "zhang.wei@example.com",
            "changed_at": changed,
        }
        if kind == "oa_employees":
            row["changed_at_src"] = changed
        return row
    row = {
        "department_code": f"D-{i + 1:03d}",
        "name": "财务部",
        "parent_code": None,
        "active": True,
        "changed_at": changed,
    }
    if kind == "oa_departments":
        row["changed_at_src"] = changed
    return row  # fmt: skip


def rows(text: str) -> list[dict[str, Any]]:
    """A pipe table as a list of dicts (cells stripped; empty or <NA> → None)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    header = [h.strip() for h in lines[0].split("|")]
    out = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.split("|")]
        out.append({h: (None if c in ("", "<NA>") else c) for h, c in zip(header, cells, strict=True)})
    return out


def _column(values: Sequence[Any], dtype: str) -> pd.Series:
    if dtype == TS:
        return pd.to_datetime(pd.Series(values, dtype="object"), format="%Y-%m-%d %H:%M:%S").dt.tz_localize(TZ)
    if dtype == DATE:
        parsed = [None if v is None else (v if isinstance(v, date) else date.fromisoformat(str(v))) for v in values]
        return pd.Series(pd.array(parsed, dtype=pd.ArrowDtype(pa.date32())))
    if dtype in (INT, "int64"):
        return pd.Series([None if v is None else int(v) for v in values], dtype=dtype if dtype == INT else "int64")
    if dtype == BOOL:
        return pd.Series([None if v is None else str(v).lower() in ("true", "1", "t") for v in values], dtype=BOOL)
    return pd.Series(list(values), dtype="object").astype(TEXT) if _all_str(values) else pd.Series(list(values))


def _all_str(values: Sequence[Any]) -> bool:
    try:
        for v in values:
            if v is not None:
                if not isinstance(v, str):
                    return False
                v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def frame(kind: str, table: str | Sequence[Mapping[str, Any]] = "", *, count: int | None = None) -> pd.DataFrame:
    """A canonical ``kind`` frame: the table's rows (or ``count`` default rows) over valid defaults."""
    given = (
        rows(table) if isinstance(table, str) and table.strip() else list(table) if not isinstance(table, str) else []
    )
    n = len(given) if given else (count or 0)
    data: list[dict[str, Any]] = []
    for i in range(n):
        row = _default(kind, i)
        if given:
            row.update(given[i])
            if kind.endswith("_claims") and "amount_cents" in given[i] and "lines_total_cents" not in given[i]:
                row["lines_total_cents"] = given[i]["amount_cents"]  # the lines add up unless the table says not
        data.append(row)
    types = TYPES[kind]
    columns = {name: _column([r.get(name) for r in data], dtype) for name, dtype in types.items()}
    return pd.DataFrame(columns)


def sides(**frames: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A mapping of suite name → frame, as validate_sources accepts."""
    return dict(frames)
