"""The exception ledger: every exception a reconciliation finds, kept across runs.

An exception is identified by (code, business key) (see claimsync.rules) and lives in
``claimsync.recon_exception`` with its first/last sighting, status and the latest amounts.
``claimsync.recon_run_exception`` freezes what each run saw, so an old run's report can be
re-rendered as it was. Status moves:

- found and new                       → ``open``
- found again while ``resolved``      → ``open`` (event ``reopened``)
- found again while ``acknowledged`` or ``written_off`` → unchanged (a person decided)
- a **full** run no longer finds an ``open``/``acknowledged`` exception of a reconcile
  code → ``resolved`` (event ``auto_resolved``); a partial run resolves nothing.

Everything is set-based: the found exceptions are COPY'd into a temporary table and each
step is one statement, all in one transaction. Recording the same run id again changes
nothing beyond refreshing the same rows (reruns are harmless). Amounts are stored as
numeric with two decimals, converted exactly from integer cents in SQL.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from claimsync.db import copy_in
from claimsync.model import EXCEPTION_COLUMNS, format_cents
from claimsync.rules import RECONCILE_CODES, ExceptionCode
from claimsync.runs import RunInfo

if TYPE_CHECKING:
    import pandas as pd

ACTOR: Final = "claimsync"
STATUSES: Final = ("open", "acknowledged", "resolved", "written_off")
# pg_advisory_xact_lock key serialising ledger writes ("claimsync ledger").
_LEDGER_LOCK: Final = 0x636C6D6C6564

# Columns of the temporary table the found exceptions are COPY'd into (money in cents).
_FOUND_COLUMNS: Final = (*EXCEPTION_COLUMNS, "oa_side", "expense_side")
_FOUND_DDL: Final = """
CREATE TEMPORARY TABLE recon_found (
    code                 text NOT NULL,
    severity             text NOT NULL,
    business_key         text NOT NULL,
    oa_request_id        bigint NULL,
    claim_code           text NULL,
    employee_code        text NULL,
    department_code      text NULL,
    oa_amount_cents      bigint NULL,
    expense_amount_cents bigint NULL,
    amount_impact_cents  bigint NULL,
    currency             text NULL,
    oa_state             text NULL,
    expense_state        text NULL,
    detail               text NULL,
    oa_side              jsonb NULL,
    expense_side         jsonb NULL,
    PRIMARY KEY (code, business_key)
) ON COMMIT DROP
"""

_REOPEN: Final = """
WITH reopened AS (
    UPDATE claimsync.recon_exception e SET status = 'open', resolved_at = NULL
    FROM pg_temp.recon_found f
    WHERE e.code = f.code AND e.business_key = f.business_key AND e.status = 'resolved'
    RETURNING e.id
)
INSERT INTO claimsync.recon_exception_event (exception_id, action, from_status, to_status, actor, note, run_id)
SELECT id, 'reopened', 'resolved', 'open', :actor, :note, :run_id FROM reopened
"""

# Values that follow the latest sighting; first_seen only ever moves earlier, last_seen later.
_UPSERT: Final = """
INSERT INTO claimsync.recon_exception AS e (
    code, business_key, severity, status, oa_request_id, claim_code, employee_code, department_code,
    oa_amount, expense_amount, amount_impact, currency, oa_state, expense_state, detail,
    oa_side, expense_side, first_seen, last_seen, first_run_id, last_run_id)
SELECT f.code, f.business_key, f.severity, 'open', f.oa_request_id, f.claim_code, f.employee_code,
       f.department_code,
       CAST(f.oa_amount_cents AS numeric) / 100, CAST(f.expense_amount_cents AS numeric) / 100,
       COALESCE(CAST(f.amount_impact_cents AS numeric) / 100, 0), COALESCE(f.currency, 'CNY'),
       f.oa_state, f.expense_state, COALESCE(f.detail, ''), f.oa_side, f.expense_side,
       :as_of, :as_of, :run_id, :run_id
FROM pg_temp.recon_found f
ON CONFLICT (code, business_key) DO UPDATE SET
    severity = EXCLUDED.severity,
    oa_request_id = EXCLUDED.oa_request_id,
    claim_code = EXCLUDED.claim_code,
    employee_code = EXCLUDED.employee_code,
    department_code = EXCLUDED.department_code,
    oa_amount = EXCLUDED.oa_amount,
    expense_amount = EXCLUDED.expense_amount,
    amount_impact = EXCLUDED.amount_impact,
    currency = EXCLUDED.currency,
    oa_state = EXCLUDED.oa_state,
    expense_state = EXCLUDED.expense_state,
    detail = EXCLUDED.detail,
    oa_side = EXCLUDED.oa_side,
    expense_side = EXCLUDED.expense_side,
    first_run_id = CASE WHEN EXCLUDED.first_seen < e.first_seen THEN EXCLUDED.first_run_id ELSE e.first_run_id END,
    first_seen = LEAST(e.first_seen, EXCLUDED.first_seen),
    last_run_id = CASE WHEN EXCLUDED.last_seen >= e.last_seen THEN EXCLUDED.last_run_id ELSE e.last_run_id END,
    last_seen = GREATEST(e.last_seen, EXCLUDED.last_seen)
-- A row this run saw exactly as stored (a rerun) is left alone: no write, no bloat.
WHERE (e.severity, e.oa_request_id, e.claim_code, e.employee_code, e.department_code, e.oa_amount,
       e.expense_amount, e.amount_impact, e.currency, e.oa_state, e.expense_state, e.detail, e.oa_side,
       e.expense_side, e.first_seen, e.last_seen, e.last_run_id)
      IS DISTINCT FROM
      (EXCLUDED.severity, EXCLUDED.oa_request_id, EXCLUDED.claim_code, EXCLUDED.employee_code,
       EXCLUDED.department_code, EXCLUDED.oa_amount, EXCLUDED.expense_amount, EXCLUDED.amount_impact,
       EXCLUDED.currency, EXCLUDED.oa_state, EXCLUDED.expense_state, EXCLUDED.detail, EXCLUDED.oa_side,
       EXCLUDED.expense_side, LEAST(e.first_seen, EXCLUDED.first_seen), EXCLUDED.last_seen, EXCLUDED.last_run_id)
"""

# A rerun of the same run id replaces that run's links: drop those it no longer finds …
_UNLINK_STALE: Final = """
DELETE FROM claimsync.recon_run_exception r
WHERE r.run_id = :run_id AND NOT EXISTS (
    SELECT 1 FROM claimsync.recon_exception e
    JOIN pg_temp.recon_found f ON f.code = e.code AND f.business_key = e.business_key
    WHERE e.id = r.exception_id)
"""

# … and freeze what this run saw of each exception.
_LINK: Final = """
INSERT INTO claimsync.recon_run_exception AS r (
    run_id, exception_id, severity, oa_amount, expense_amount, amount_impact, currency,
    oa_state, expense_state, detail, oa_side, expense_side)
SELECT :run_id, e.id, f.severity,
       CAST(f.oa_amount_cents AS numeric) / 100, CAST(f.expense_amount_cents AS numeric) / 100,
       COALESCE(CAST(f.amount_impact_cents AS numeric) / 100, 0), COALESCE(f.currency, 'CNY'),
       f.oa_state, f.expense_state, COALESCE(f.detail, ''), f.oa_side, f.expense_side
FROM pg_temp.recon_found f
JOIN claimsync.recon_exception e ON e.code = f.code AND e.business_key = f.business_key
ON CONFLICT (run_id, exception_id) DO UPDATE SET
    severity = EXCLUDED.severity,
    oa_amount = EXCLUDED.oa_amount,
    expense_amount = EXCLUDED.expense_amount,
    amount_impact = EXCLUDED.amount_impact,
    currency = EXCLUDED.currency,
    oa_state = EXCLUDED.oa_state,
    expense_state = EXCLUDED.expense_state,
    detail = EXCLUDED.detail,
    oa_side = EXCLUDED.oa_side,
    expense_side = EXCLUDED.expense_side
WHERE (r.severity, r.oa_amount, r.expense_amount, r.amount_impact, r.currency, r.oa_state, r.expense_state,
       r.detail, r.oa_side, r.expense_side)
      IS DISTINCT FROM
      (EXCLUDED.severity, EXCLUDED.oa_amount, EXCLUDED.expense_amount, EXCLUDED.amount_impact, EXCLUDED.currency,
       EXCLUDED.oa_state, EXCLUDED.expense_state, EXCLUDED.detail, EXCLUDED.oa_side, EXCLUDED.expense_side)
"""

# Only for a full run: what it no longer finds is gone. Exceptions last seen by a later run
# (a backfill of an older run) and decisions a person made (written_off) are left alone.
_AUTO_RESOLVE: Final = """
WITH gone AS (
    SELECT e.id, e.status FROM claimsync.recon_exception e
    WHERE e.status IN ('open', 'acknowledged')
      AND e.code = ANY(:codes)
      AND e.last_seen <= :as_of
      AND NOT EXISTS (SELECT 1 FROM pg_temp.recon_found f WHERE f.code = e.code AND f.business_key = e.business_key)
    FOR UPDATE
), resolved AS (
    UPDATE claimsync.recon_exception e SET status = 'resolved', resolved_at = :as_of
    FROM gone WHERE e.id = gone.id
    RETURNING e.id
)
INSERT INTO claimsync.recon_exception_event (exception_id, action, from_status, to_status, actor, note, run_id)
SELECT resolved.id, 'auto_resolved', gone.status, 'resolved', :actor, :note, :run_id
FROM resolved JOIN gone ON gone.id = resolved.id
"""

_RUN_STATS: Final = """
INSERT INTO claimsync.recon_run_stats (
    run_id, as_of, full_run, buckets, oa_claims, expense_claims, matched, clean_matched, match_rate,
    exception_count, amount_impact)
SELECT :run_id, :as_of, :full_run, :buckets, :oa_claims, :expense_claims, :matched, :clean_matched,
       :match_rate, count(*), COALESCE(sum(CAST(f.amount_impact_cents AS numeric) / 100), 0)
FROM pg_temp.recon_found f
ON CONFLICT (run_id) DO UPDATE SET
    as_of = EXCLUDED.as_of, full_run = EXCLUDED.full_run, buckets = EXCLUDED.buckets,
    oa_claims = EXCLUDED.oa_claims, expense_claims = EXCLUDED.expense_claims, matched = EXCLUDED.matched,
    clean_matched = EXCLUDED.clean_matched, match_rate = EXCLUDED.match_rate,
    exception_count = EXCLUDED.exception_count, amount_impact = EXCLUDED.amount_impact, recorded_at = now()
"""

_SUMMARY: Final = """
SELECT
    (SELECT count(*) FROM claimsync.recon_run_exception WHERE run_id = :run_id) AS found,
    (SELECT count(*) FROM claimsync.recon_exception WHERE first_run_id = :run_id) AS new,
    (SELECT count(DISTINCT exception_id) FROM claimsync.recon_exception_event
      WHERE run_id = :run_id AND action = 'reopened') AS reopened,
    (SELECT count(DISTINCT exception_id) FROM claimsync.recon_exception_event
      WHERE run_id = :run_id AND action = 'auto_resolved') AS auto_resolved,
    (SELECT count(*) FROM claimsync.recon_exception WHERE status IN ('open', 'acknowledged')) AS outstanding
"""


_NEW_BY_CODE: Final = """
SELECT e.code, count(*) AS n, COALESCE(sum(r.amount_impact * 100), 0) AS cents
FROM claimsync.recon_run_exception r JOIN claimsync.recon_exception e ON e.id = r.exception_id
WHERE r.run_id = :run_id AND e.first_run_id = :run_id
GROUP BY e.code ORDER BY e.code
"""


class ReconciliationFigures(Protocol):
    """What the ledger needs of a reconciliation result (claimsync.reconcile.ReconResult)."""

    @property
    def exceptions(self) -> pd.DataFrame: ...
    @property
    def oa_claims(self) -> int: ...
    @property
    def expense_claims(self) -> int: ...
    @property
    def matched(self) -> int: ...
    @property
    def clean_matched(self) -> int: ...
    @property
    def match_rate(self) -> float | None: ...


@dataclass(frozen=True)
class LedgerSummary:
    """What recording one run did to the ledger (stable across reruns of the run)."""

    run_id: str
    found: int  # exceptions this run saw
    new: int  # … of which first seen by this run
    reopened: int  # resolved before, found again by this run
    auto_resolved: int  # no longer found by this (full) run
    outstanding: int  # open + acknowledged in the whole ledger afterwards
    new_by_code: Mapping[str, int] = field(default_factory=dict)  # code → exceptions first seen by this run
    new_amounts_cents: Mapping[str, int] = field(default_factory=dict)  # code → their amount impact in cents

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["new_by_code"] = dict(self.new_by_code)
        data["new_amounts_cents"] = dict(self.new_amounts_cents)
        return data


def record_reconciliation(
    state_engine: Engine,
    run: RunInfo,
    result: ReconciliationFigures,
    *,
    full: bool,
    buckets: int = 1,
) -> LedgerSummary:
    """Write one reconciliation's exceptions into the ledger; see the module docstring.

    ``result.exceptions`` has the columns of claimsync.model.EXCEPTION_COLUMNS, and may add
    ``oa_side``/``expense_side`` (see :func:`side_snapshots`). The run must already exist
    in ``claimsync.sync_run`` (claimsync.runs.begin_run).
    """
    found = _found_csv(result.exceptions)
    params: dict[str, Any] = {
        "run_id": run.run_id,
        "as_of": run.as_of,
        "actor": ACTOR,
        "note": f"run {run.run_id}",
    }
    with state_engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LEDGER_LOCK})
        conn.execute(sa.text(_FOUND_DDL))
        copy_in(conn, "pg_temp", "recon_found", _FOUND_COLUMNS, found)
        conn.execute(sa.text("ANALYZE pg_temp.recon_found"))
        conn.execute(sa.text(_REOPEN), params)
        conn.execute(sa.text(_UPSERT), params)
        conn.execute(sa.text(_UNLINK_STALE), params)
        conn.execute(sa.text(_LINK), params)
        if full:
            conn.execute(sa.text(_AUTO_RESOLVE), {**params, "codes": [c.value for c in RECONCILE_CODES]})
        conn.execute(
            sa.text(_RUN_STATS),
            {
                **params,
                "full_run": full,
                "buckets": buckets,
                "oa_claims": int(result.oa_claims),
                "expense_claims": int(result.expense_claims),
                "matched": int(result.matched),
                "clean_matched": int(result.clean_matched),
                "match_rate": None if result.match_rate is None else round(float(result.match_rate), 6),
            },
        )
        return _summary(conn, run.run_id)


def ledger_summary(state_engine: Engine, run_id: str) -> LedgerSummary:
    """What recording ``run_id`` did to the ledger, read back from the state DB."""
    with state_engine.connect() as conn:
        return _summary(conn, run_id)


def _summary(conn: Connection, run_id: str) -> LedgerSummary:
    row = conn.execute(sa.text(_SUMMARY), {"run_id": run_id}).one()
    new = conn.execute(sa.text(_NEW_BY_CODE), {"run_id": run_id}).all()
    return LedgerSummary(
        new_by_code={r.code: int(r.n) for r in new},
        new_amounts_cents={r.code: int(r.cents) for r in new},
        run_id=run_id,
        found=int(row.found),
        new=int(row.new),
        reopened=int(row.reopened),
        auto_resolved=int(row.auto_resolved),
        outstanding=int(row.outstanding),
    )


def _found_csv(exceptions: pd.DataFrame) -> io.BytesIO:
    """The exceptions as headerless CSV in ``_FOUND_COLUMNS`` order, one row per (code, key)."""
    missing = [c for c in EXCEPTION_COLUMNS if c not in exceptions.columns]
    if missing:
        raise ValueError(f"exceptions frame lacks columns {missing}")
    unknown = set(exceptions["code"].dropna().unique()) - {c.value for c in ExceptionCode}
    if unknown or exceptions["code"].isna().any() or exceptions["business_key"].isna().any():
        raise ValueError(f"exceptions frame has unknown codes {sorted(unknown)} or rows without code/key")
    frame = exceptions.copy()
    for side in ("oa_side", "expense_side"):
        if side not in frame.columns:
            frame[side] = None
        frame[side] = frame[side].map(_json_text, na_action="ignore")
    # One row per identity: if a rule (or a merge of buckets) reported one twice, keep the larger impact.
    frame = frame.sort_values(["code", "business_key", "amount_impact_cents"], ascending=[True, True, False])
    frame = frame.drop_duplicates(["code", "business_key"], keep="first")
    buffer = io.BytesIO()
    frame.loc[:, list(_FOUND_COLUMNS)].to_csv(buffer, header=False, index=False, encoding="utf-8")
    buffer.seek(0)
    return buffer


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


# --- both sides of an exception, for the report's side-by-side view -----------------------

# Canonical field → (OA claim column, expense claim column). Money columns end in _cents.
SIDE_FIELDS: Final[Mapping[str, tuple[str | None, str | None]]] = {
    "request_id": ("request_id", "oa_request_id"),
    "claim_code": ("claim_code", "claim_code"),
    "request_mark": ("request_mark", None),
    "employee_code": ("employee_code", "employee_code"),
    "department_code": ("department_code", "department_code"),
    "amount": ("amount_cents", "amount_cents"),
    "pay_amount": (None, "pay_cents"),
    "currency": ("currency", "currency"),
    "state": ("state", "state"),
    "raw_state": ("fkzt", "raw_state"),
    "lines_total": ("lines_total_cents", "lines_total_cents"),
    "line_count": ("line_count", "line_count"),
    "changed_at": ("changed_at", "changed_at"),
}
# The fields whose difference between the sides is worth marking.
COMPARED_FIELDS: Final[Sequence[str]] = (
    "request_id",
    "claim_code",
    "employee_code",
    "department_code",
    "amount",
    "currency",
    "state",
    "lines_total",
)


def side_snapshots(exceptions: pd.DataFrame, oa_claims: pd.DataFrame, expense_claims: pd.DataFrame) -> pd.DataFrame:
    """``exceptions`` with ``oa_side``/``expense_side``: each side's canonical claim as JSON text.

    The OA side is looked up by ``oa_request_id``, the expense side by ``claim_code``; a side
    that does not exist is None. Money is a plain decimal string (``"1200.00"``); canonical
    claim frames carry no personal data, so neither do the snapshots.
    """
    oa_snapshots, expense_snapshots = claim_snapshots(exceptions, oa_claims, expense_claims)
    return attach_snapshots(exceptions, oa_snapshots, expense_snapshots)


def claim_snapshots(
    exceptions: pd.DataFrame, oa_claims: pd.DataFrame, expense_claims: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The snapshots of the claims ``exceptions`` refer to: (request_id, snapshot) and (claim_code, snapshot).

    Small and self-contained, so a bucket can keep them with its partial result and the
    snapshots can be attached after the buckets are merged (:func:`attach_snapshots`).
    """
    return (
        _snapshots(exceptions["oa_request_id"], oa_claims, "request_id", side=0),
        _snapshots(exceptions["claim_code"], expense_claims, "claim_code", side=1),
    )


def attach_snapshots(
    exceptions: pd.DataFrame, oa_snapshots: pd.DataFrame, expense_snapshots: pd.DataFrame
) -> pd.DataFrame:
    """``exceptions`` with ``oa_side``/``expense_side`` looked up in the snapshot frames."""
    import pandas as pd

    result = exceptions.copy()
    for column, keys, snapshots, key_column in (
        ("oa_side", result["oa_request_id"], oa_snapshots, "request_id"),
        ("expense_side", result["claim_code"], expense_snapshots, "claim_code"),
    ):
        lookup = dict(zip(snapshots[key_column].tolist(), snapshots["snapshot"].tolist(), strict=True))
        values = [None if pd.isna(key) else lookup.get(key) for key in keys.tolist()]
        result[column] = pd.Series(values, index=result.index, dtype=object)
    return result


def _snapshots(keys: pd.Series, claims: pd.DataFrame, key_column: str, *, side: int) -> pd.DataFrame:
    import pandas as pd

    empty = pd.DataFrame({key_column: pd.Series([], dtype=object), "snapshot": pd.Series([], dtype=object)})
    if claims.empty or key_column not in claims.columns:
        return empty
    fields: dict[str, str] = {}
    for name, columns in SIDE_FIELDS.items():
        column = columns[side]
        if column is not None and column in claims.columns:
            fields[name] = column
    unique = claims.drop_duplicates(key_column).set_index(key_column, drop=False)
    wanted = [key for key in set(keys.dropna().tolist()) if key in unique.index]
    if not wanted:
        return empty
    raw = unique.loc[wanted][sorted(set(fields.values()))].to_dict(orient="index")
    snapshots = {
        key: json.dumps(
            {name: _side_value(col, row[col]) for name, col in fields.items()}, ensure_ascii=False, sort_keys=True
        )
        for key, row in raw.items()
    }
    ordered = sorted(snapshots, key=str)
    return pd.DataFrame(
        {
            key_column: pd.Series(ordered, dtype=object),
            "snapshot": pd.Series([snapshots[k] for k in ordered], dtype=object),
        }
    )


def _side_value(column: str, value: Any) -> Any:
    import pandas as pd

    if pd.isna(value):
        return None
    if column.endswith("_cents"):
        return format_cents(int(value))
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value
