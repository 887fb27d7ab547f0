"""Data-quality gates (DESIGN.md steps 3 and 6): quarantine bad rows, stop bad runs before any write.

:func:`validate_sources` runs the suites in expectations/ over the canonical frames of both
systems, once per frame. Rows failing a row-level expectation go to ``claimsync.quarantine``
(with the failed check, a reason and their offending values, personal data masked) and are
left out of reconcile and write-back:

- a bad line or payment quarantines its whole claim, and a claim's lines and payments leave
  with it;
- a record's counterpart in the other system is held back with it (otherwise reconcile would
  report it as missing, and sync would create it a second time); it is stored in quarantine
  as ``<suite>.counterpart_quarantined``, so it is visible and leaves with the bad record.

Quarantined rows reappear in every later run that extracts them (``last_seen``/``last_run_id``)
until fixed; a row that passes again, or that a full run no longer finds failing, is released
(``released_at``). The circuit breaker stops the run (:class:`claimsync.errors.RunStopped`)
before anything is written when more than ``settings.quarantine_threshold`` of a frame is
left out, or a table-level expectation fails (row count collapse against the previous full
run, an OA frame empty while the expense side has rows, lines not adding up in bulk, missing
canonical columns). ``force=True`` (DAG param ``force``, CLI ``--force``) quarantines and
continues. :func:`validate_delta` does the same for a write-back plan: no record twice, no
backwards lifecycle move, no table touched beyond ``settings.delta_limit``.

Every suite's result is stored per run in ``claimsync.validation_result``;
:func:`validation_summary` reads them back for the report. GX is imported only when a gate
runs (inside the task), never when this module is imported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, is_dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import Engine

from claimsync.config import Settings
from claimsync.errors import RunStopped
from claimsync.masking import mask_record, mask_text
from claimsync.quality_engine import (
    GX_FULL_ROWS,
    GxValidator,
    Screening,
    SuiteEvaluation,
    arrow_text,
    evaluate,
    prescreen,
)
from claimsync.quality_rules import DELTA_SUITE, SOURCE_SUITES, Rule, load_suite
from claimsync.quality_store import (
    QuarantineWrite,
    ValidationSummary,
    previous_row_counts,
    run_scope,
    store_quarantine,
    store_results,
)
from claimsync.quality_store import validation_summary as _validation_summary

log = logging.getLogger(__name__)

# A timestamp later than max(as_of, the validation time) by more than this is "in the future":
# it allows for clock skew between the source servers and the worker. Using the later of the two
# keeps backfills (as_of in the past) from quarantining rows that simply changed since.
FUTURE_SKEW: Final = timedelta(minutes=10)
# The breaker ignores frames where fewer rows than this are left out (one bad row in a window of
# ten is a quarantine, not a broken extraction).
BREAKER_MIN_ROWS: Final = 10
_OFFENDING_MAX_CHARS: Final = 200
QUARANTINE_COLUMNS: Final = ["source", "entity", "record_key", "expectation", "reason", "offending", "claim_key"]

# Key columns of each frame (the first is the record key) and how a record key is spelled.
_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "oa_claims": ("request_id",),
    "oa_lines": ("claim_ref", "seq"),
    "oa_employees": ("employee_code",),
    "oa_departments": ("department_code",),
    "expense_claims": ("claim_code", "flow_id"),
    "expense_lines": ("claim_ref", "seq"),
    "expense_payments": ("payment_id", "claim_code"),
    "expense_employees": ("employee_code",),
    "expense_departments": ("department_code",),
}
# Frames whose rows are held back with their counterpart on the other side (by this column).
_COUNTERPARTS: Final = (
    ("oa_employees", "expense_employees", "employee_code"),
    ("oa_departments", "expense_departments", "department_code"),
)
# Pairs compared for "empty while the other side has rows" (OA is the system of record).
_EMPTY_PAIRS: Final = (
    ("oa_claims", "expense_claims"),
    ("oa_lines", "expense_lines"),
    ("oa_employees", "expense_employees"),
    ("oa_departments", "expense_departments"),
)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class SuiteReport:
    """One suite's result in one run (what claimsync.validation_result stores)."""

    suite: str
    source: str
    entity: str
    rows: int
    success: bool
    engine: str
    seconds: float
    failed_rows: int = 0  # rows failing a row-level check of their own
    removed_rows: int = 0  # rows left out of the run (own failures, cascades, held-back counterparts)
    failed_checks: Mapping[str, int] = field(default_factory=dict)  # check → failing rows
    table_failures: tuple[str, ...] = ()  # one sentence per failed table-level check
    skipped_checks: tuple[str, ...] = ()
    evaluated: int = 0
    screen_false_positives: int = 0

    def statistics(self, *, full_run: bool, gate: str) -> dict[str, Any]:
        successful = self.evaluated - len(self.failed_checks) - len(self.table_failures)
        return {
            "rows": self.rows,
            "source": self.source,
            "entity": self.entity,
            "evaluated_expectations": self.evaluated,
            "successful_expectations": successful,
            "unsuccessful_expectations": self.evaluated - successful,
            "success_percent": round(100.0 * successful / self.evaluated, 2) if self.evaluated else 100.0,
            "failed_rows": self.failed_rows,
            "removed_rows": self.removed_rows,
            "failed_checks": dict(self.failed_checks),
            "table_failures": list(self.table_failures),
            "skipped_checks": list(self.skipped_checks),
            "engine": self.engine,
            "seconds": round(self.seconds, 3),
            "screen_false_positives": self.screen_false_positives,
            "full_run": full_run,
            "gate": gate,
        }


@dataclass(frozen=True)
class QualityOutcome:
    """What the source gate decided: the clean sides, what it quarantined, and why it would stop."""

    run_id: str
    sides: Any  # the input's type (claimsync.canonical.Sides, or a mapping of frames), bad rows removed
    quarantine: pd.DataFrame  # source, entity, record_key, expectation, reason, offending, claim_key
    suites: tuple[SuiteReport, ...]
    breaches: tuple[str, ...]  # one sentence per failed circuit-breaker check
    forced: bool = False

    @property
    def stopped(self) -> bool:
        """True when the breaker tripped (the run continues only because it was forced)."""
        return bool(self.breaches)

    @property
    def gate(self) -> str:
        return "passed" if not self.breaches else ("forced" if self.forced else "stopped")

    def to_dict(self) -> dict[str, Any]:
        """A small JSON-able summary (for XCom and the run summary)."""
        return {
            "run_id": self.run_id,
            "gate": self.gate,
            "quarantined_records": int(self.quarantine["record_key"].nunique()) if len(self.quarantine) else 0,
            "breaches": list(self.breaches),
            "suites": {
                s.suite: {"rows": s.rows, "removed_rows": s.removed_rows, "success": s.success} for s in self.suites
            },
        }


@dataclass(frozen=True)
class DeltaOutcome:
    """What the delta gate decided about a write-back plan."""

    report: SuiteReport
    breaches: tuple[str, ...]
    forced: bool = False

    @property
    def stopped(self) -> bool:
        return bool(self.breaches)

    @property
    def gate(self) -> str:
        return "passed" if not self.breaches else ("forced" if self.forced else "stopped")

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "writes": self.report.rows, "breaches": list(self.breaches)}


# ---------------------------------------------------------------------------------------------
# Sides ↔ frames


def frames_of(sides: Any) -> dict[str, pd.DataFrame]:
    """The canonical frames of ``sides`` by suite name (``oa_claims`` …); absent frames are left out.

    ``sides`` is a :class:`claimsync.canonical.Sides` (one attribute per frame, named like the
    suites) or a mapping of suite name → frame.
    """
    if isinstance(sides, Mapping):
        return {k: v for k, v in sides.items() if k in SOURCE_SUITES and isinstance(v, pd.DataFrame)}
    return {s: f for s in SOURCE_SUITES if isinstance(f := getattr(sides, s, None), pd.DataFrame)}


def with_frames(sides: Any, clean: Mapping[str, pd.DataFrame]) -> Any:
    """``sides`` with its frames replaced by ``clean`` (same type as the input)."""
    if isinstance(sides, Mapping):
        return {**sides, **clean}
    if is_dataclass(sides) and not isinstance(sides, type):
        return replace(sides, **clean)
    raise TypeError(f"cannot rebuild a {type(sides).__name__} with clean frames")


def _bucket_of(sides: Any) -> tuple[int, int] | None:
    """The (index, count) hash bucket a bucketed extraction's Sides cover (claimsync.canonical.Scope)."""
    scope = getattr(sides, "scope", None)
    bucket = getattr(scope, "bucket", None)
    if isinstance(bucket, tuple) and len(bucket) == 2 and bucket[1] > 1:
        return int(bucket[0]), int(bucket[1])
    return None


# ---------------------------------------------------------------------------------------------
# The validation view: canonical frame + derived columns, text repaired, times tz-aware.


def _tolerance_cents(currencies: pd.Series, settings: Settings) -> pd.Series:
    """Each row's amount tolerance in cents (its currency's, settings.tolerance), judged once per currency."""
    codes, distinct = pd.factorize(currencies)
    cents = []
    for currency in distinct:
        try:
            cents.append(int(settings.tolerance(str(currency)) * 100))
        except (ArithmeticError, ValueError):
            cents.append(0)
    table = np.array([*cents, 0], dtype=np.int64)  # code -1 (no currency) → the last entry, 0
    return pd.Series(table[np.asarray(codes)], index=currencies.index)


def _as_number(column: pd.Series) -> pd.Series:
    return pd.to_numeric(column, errors="coerce")


def _localize_times(view: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Every date or time column as tz-aware ``datetime64`` (dates: local midnight in ``tz``).

    GX compares them with the tz-aware ``latest_valid_time``; Arrow ``date32`` columns
    (claimsync.canonical's dates) and naive times are brought to that form here.
    """
    for name in view.columns:
        column = view[name]
        dtype = column.dtype
        if isinstance(dtype, pd.DatetimeTZDtype):
            continue
        if isinstance(dtype, pd.ArrowDtype) and str(dtype).startswith(("date32", "date64", "timestamp[")):
            # Cast inside Arrow first: Arrow date → numpy datetime directly goes value by value.
            aware = "tz=" in str(dtype)
            arrow_type = pd.ArrowDtype(pa.timestamp("us", tz="UTC" if aware else None))
            column = column.astype(arrow_type).astype("datetime64[us, UTC]" if aware else "datetime64[us]")
            dtype = column.dtype
            if isinstance(dtype, pd.DatetimeTZDtype):
                view[name] = column.dt.tz_convert(tz)
                continue
        if pd.api.types.is_datetime64_dtype(dtype):
            view[name] = column.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        elif pd.api.types.is_object_dtype(dtype):
            sample = column.dropna()
            if len(sample) and all(isinstance(v, date | datetime) for v in sample.iloc[:100]):
                try:
                    converted = pd.to_datetime(column, errors="coerce")
                except (TypeError, ValueError):  # naive and aware values mixed
                    converted = pd.to_datetime(column, errors="coerce", utc=True)
                if isinstance(converted.dtype, pd.DatetimeTZDtype):
                    view[name] = converted.dt.tz_convert(tz)
                else:
                    view[name] = converted.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    return view


def validation_view(suite: str, frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """What the suite sees: a RangeIndex copy with the derived ``dq_*`` columns and repaired text."""
    from claimsync.quality_engine import text_view

    view = _localize_times(text_view(frame), settings.timezone)
    if suite.endswith("_claims") and {"amount_cents", "lines_total_cents", "currency"} <= set(view.columns):
        amount, lines = _as_number(view["amount_cents"]), _as_number(view["lines_total_cents"])
        excess = (amount - lines).abs() - _tolerance_cents(view["currency"], settings)
        view["dq_lines_excess_cents"] = excess.clip(lower=0)
    if suite.endswith("_lines") and {"invoice_code", "invoice_number"} <= set(view.columns):
        code, number = view["invoice_code"].astype("str"), view["invoice_number"].astype("str")
        left, right = (arrow_text(c).cast(pa.large_string()) for c in (code, number))
        separator = pa.scalar("/", pa.large_string())
        joined = pc.binary_join_element_wise(pc.fill_null(left, ""), pc.fill_null(right, ""), separator)
        neither = pc.and_(pc.is_null(left), pc.is_null(right))
        invoice = pc.if_else(neither, pa.scalar(None, joined.type), joined)
        view["dq_invoice"] = pd.Series(pd.array(invoice, dtype=code.dtype), index=view.index)
    return view


# ---------------------------------------------------------------------------------------------
# Record keys and offending values


def _key_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return _printable(str(value), 120)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _printable(text: str, limit: int = _OFFENDING_MAX_CHARS) -> str:
    """Control characters as visible escapes (PostgreSQL text cannot hold NUL), long text cut."""
    text = text.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace")
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)
    if len(text) > limit:
        text = f"{text[:limit]}…({len(text)} characters)"
    return text


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _fingerprint(row: Mapping[str, Any]) -> str:
    text = json.dumps({k: None if _missing(v) else str(v) for k, v in row.items()}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:16]


def record_key(suite: str, row: Mapping[str, Any]) -> str:
    """The record key stored in quarantine: ``oa:<requestid>``, ``exp:<code>``, ``exp:<code>#<seq>`` …

    A row without its key gets ``row:<fingerprint of its values>``: the same broken row keeps
    the same key across runs.
    """
    keys = _KEYS[suite]
    value = row.get(keys[0])
    if suite == "oa_claims" and not _missing(value):
        return f"oa:{_key_text(value)}"
    if suite == "expense_claims":
        if not _missing(value):
            return f"exp:{_key_text(value)}"
        if not _missing(row.get("flow_id")):
            return f"flow:{_key_text(row['flow_id'])}"
    if suite.endswith("_lines") and not _missing(value):
        prefix = "oa" if suite.startswith("oa") else "exp"
        seq = row.get("seq")
        return f"{prefix}:{_key_text(value)}#{'?' if _missing(seq) else _key_text(seq)}"
    if suite == "expense_payments" and not _missing(value):
        return f"pay:{_key_text(value)}"
    if suite.endswith("_employees") and not _missing(value):
        return f"emp:{_key_text(value)}"
    if suite.endswith("_departments") and not _missing(value):
        return f"dep:{_key_text(value)}"
    return f"row:{_fingerprint(row)}"


def claim_key(suite: str, row: Mapping[str, Any]) -> str | None:
    """The claim a claims/lines/payments row belongs to (``oa:<id>`` / ``exp:<code>``)."""
    if suite in ("oa_claims", "oa_lines"):
        value = row.get("request_id" if suite == "oa_claims" else "claim_ref")
        return None if _missing(value) else f"oa:{_key_text(value)}"
    if suite in ("expense_claims", "expense_payments"):
        value = row.get("claim_code")
        return None if _missing(value) else f"exp:{_key_text(value)}"
    if suite == "expense_lines":
        value = row.get("claim_ref")
        return None if _missing(value) else f"exp:{_key_text(value)}"
    return None


def _jsonable(value: Any) -> Any:
    if _missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return _printable(str(value))


def offending_values(row: Mapping[str, Any], columns: Iterable[str]) -> dict[str, Any]:
    """The values a check looked at, JSON-safe, with personal data masked (named fields and free text)."""
    values = {c: _jsonable(row.get(c)) for c in columns}
    masked = mask_record(values)
    return {k: mask_text(v) if isinstance(v, str) else v for k, v in masked.items()}


# ---------------------------------------------------------------------------------------------
# The source gate


def _latest_valid_time(as_of: datetime) -> pd.Timestamp:
    now = datetime.now(UTC)
    reference = max(as_of, now) if as_of.tzinfo is not None else now
    return pd.Timestamp(reference + FUTURE_SKEW)


def _min_row_counts(
    frames: Mapping[str, pd.DataFrame], previous: Mapping[str, int], *, full_run: bool, bucketed: bool = False
) -> dict[str, int]:
    """The ``min_row_count`` parameter per suite (0 outside full runs).

    One hash bucket of a small data set may hold OA rows on one side only, so a bucket is
    compared with the same bucket of the previous run, never with the other system.
    """
    result = dict.fromkeys(frames, 0)
    if not full_run:
        return result
    for suite in frames:
        rule = load_suite(suite).rules
        ratio = next((float(r.meta.get("collapse_ratio", 0.5)) for r in rule if r.check == "row_count_collapse"), 0.5)
        if previous.get(suite):
            result[suite] = math.ceil(previous[suite] * ratio)
    for oa, expense in () if bucketed else _EMPTY_PAIRS:
        if oa in frames and expense in frames and len(frames[expense]) > 0:
            result[oa] = max(result[oa], 1)
    return result


def lines_sum_mostly_for(suite: str, rows: int) -> float:
    """The ``lines_sum_mostly`` parameter: 1 - max(5%, 10 claims / rows) (from the check's meta)."""
    try:
        meta = load_suite(suite).rule("lines_sum_within_tolerance").meta
    except KeyError:
        return 1.0
    share = max(float(meta.get("mismatch_share", 0.05)), float(meta.get("floor_rows", 0)) / max(rows, 1))
    return max(0.0, 1.0 - share)


def _table_failure(
    suite: str, outcome_rule: Rule, observed: Any, error: str | None, parameters: Mapping[str, Any]
) -> str:
    if error is not None:
        return f"{suite}: check {outcome_rule.check} could not be evaluated ({_printable(error, 160)})"
    if outcome_rule.check == "row_count_collapse":
        return (
            f"{suite}: {observed} rows extracted, at least {parameters.get('min_row_count')} expected "
            f"({outcome_rule.reason})"
        )
    if outcome_rule.check == "columns_present":
        missing = ", ".join(observed) if isinstance(observed, list) and observed else "some"
        return f"{suite}: canonical columns missing: {missing}"
    if isinstance(observed, Mapping):
        observed = ", ".join(f"{k}={v}" for k, v in observed.items())
    shown = f" (observed {observed})" if observed not in (None, "", []) else ""
    return f"{suite}: {outcome_rule.check}: {outcome_rule.reason}{shown}"


@dataclass
class _FrameState:
    suite: str
    frame: pd.DataFrame
    view: pd.DataFrame
    evaluation: SuiteEvaluation
    own: dict[int, list[Rule]] = field(default_factory=dict)  # position → failed row-level rules
    removed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


def _key_texts(column: pd.Series) -> pd.Series:
    """A key column as text, the way :func:`_key_text` spells each value (vectorised)."""
    if pd.api.types.is_integer_dtype(column.dtype):
        return column.astype("Int64").astype("str")
    if pd.api.types.is_float_dtype(column.dtype):
        whole = column.where(column.isna() | (column % 1 == 0))
        return whole.astype("Int64").astype("str").where(whole.notna(), column.astype("str"))
    return column.astype("str")


def _positions_where(texts: pd.Series | None, values: Iterable[Any]) -> np.ndarray:
    """Rows whose key text is one of ``values`` (``texts`` None: the frame lacks the column)."""
    if texts is None:
        return np.zeros(0, dtype=bool)
    wanted = pd.Series(list(values), dtype="object").dropna().astype(str).unique().tolist()
    if not wanted:
        return np.zeros(len(texts), dtype=bool)
    return np.asarray(texts.isin(wanted).to_numpy(dtype=bool, na_value=False), dtype=bool)


def _values_at(view: pd.DataFrame, column: str, mask: np.ndarray) -> list[str]:
    if column not in view.columns or not mask.any():
        return []
    return [_key_text(v) for v in view[column][mask].tolist() if not _missing(v)]


def _cascade(states: dict[str, _FrameState]) -> dict[str, dict[int, str]]:
    """Spread removals: claims with bad lines/payments, counterparts, and children of removed claims.

    Returns, per suite, the positions removed *because of another row* with the expectation name
    to record (``has_quarantined_line`` …); children leaving with their claim get ``""`` (not stored).
    """
    extra: dict[str, dict[int, str]] = {s: {} for s in states}
    cache: dict[tuple[str, str], pd.Series | None] = {}

    def where(suite: str, column: str, values: Iterable[Any]) -> np.ndarray:
        values = list(values)
        if not values:  # the usual case: nothing to look for, so no key column is spelled out
            return np.zeros(len(states[suite].view), dtype=bool)
        if (suite, column) not in cache:
            view = states[suite].view
            cache[(suite, column)] = _key_texts(view[column]) if column in view.columns else None
        found = _positions_where(cache[(suite, column)], values)
        return found if len(found) else np.zeros(len(states[suite].view), dtype=bool)

    def remove(suite: str, mask: np.ndarray, why: str) -> bool:
        state = states.get(suite)
        if state is None:
            return False
        new = mask & ~state.removed
        if not new.any():
            return False
        state.removed = state.removed | new
        for position in np.flatnonzero(new):
            extra[suite][int(position)] = why
        return True

    def own_mask(suite: str) -> np.ndarray:
        state = states.get(suite)
        return state.removed.copy() if state is not None else np.zeros(0, dtype=bool)

    for side, claims, lines in (("oa", "oa_claims", "oa_lines"), ("expense", "expense_claims", "expense_lines")):
        if claims in states and lines in states:
            refs = _values_at(states[lines].view, "claim_ref", own_mask(lines))
            column = "request_id" if side == "oa" else "claim_code"
            remove(claims, where(claims, column, refs), "has_quarantined_line")
    if "expense_claims" in states and "expense_payments" in states:
        codes = _values_at(states["expense_payments"].view, "claim_code", own_mask("expense_payments"))
        remove(
            "expense_claims",
            where("expense_claims", "claim_code", codes),
            "has_quarantined_payment",
        )

    # Counterparts, until nothing changes (a held-back claim can link a further one by bxdh).
    for _ in range(5):
        changed = False
        if "oa_claims" in states and "expense_claims" in states:
            oa, exp = states["oa_claims"], states["expense_claims"]
            oa_ids = _values_at(oa.view, "request_id", oa.removed)
            oa_codes = _values_at(oa.view, "claim_code", oa.removed)
            mask = where("expense_claims", "oa_request_id", oa_ids) | where("expense_claims", "claim_code", oa_codes)
            changed |= remove("expense_claims", mask, "counterpart_quarantined")
            exp_ids = _values_at(exp.view, "oa_request_id", exp.removed)
            exp_codes = _values_at(exp.view, "claim_code", exp.removed)
            mask = where("oa_claims", "request_id", exp_ids) | where("oa_claims", "claim_code", exp_codes)
            changed |= remove("oa_claims", mask, "counterpart_quarantined")
        for oa_suite, exp_suite, column in _COUNTERPARTS:
            if oa_suite in states and exp_suite in states:
                oa_keys = _values_at(states[oa_suite].view, column, states[oa_suite].removed)
                changed |= remove(exp_suite, where(exp_suite, column, oa_keys), "counterpart_quarantined")
                exp_keys = _values_at(states[exp_suite].view, column, states[exp_suite].removed)
                changed |= remove(oa_suite, where(oa_suite, column, exp_keys), "counterpart_quarantined")
        if not changed:
            break

    # Lines and payments leave with their claim.
    for claims, lines, column in (
        ("oa_claims", "oa_lines", "request_id"),
        ("expense_claims", "expense_lines", "claim_code"),
        ("expense_claims", "expense_payments", "claim_code"),
    ):
        if claims in states and lines in states:
            refs = _values_at(states[claims].view, column, states[claims].removed)
            child_column = "claim_ref" if lines.endswith("_lines") else "claim_code"
            remove(lines, where(lines, child_column, refs), "")
    return extra


def _rows(view: pd.DataFrame, positions: Sequence[int], columns: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Rows at ``positions`` as dicts (only ``columns``, when given: taking every column of a big frame costs)."""
    if not len(positions):
        return []
    if columns is not None:
        view = view[[c for c in dict.fromkeys(columns) if c in view.columns]]
    records: list[dict[str, Any]] = view.iloc[list(positions)].to_dict(orient="records")  # type: ignore[assignment]
    return records


def _quarantine_rows(
    states: Mapping[str, _FrameState], extra: Mapping[str, Mapping[int, str]]
) -> list[QuarantineWrite]:
    records: dict[tuple[str, str, str, str], QuarantineWrite] = {}
    for suite, state in states.items():
        source, entity = SOURCE_SUITES[suite]
        keys = _KEYS[suite]
        own_positions = sorted(state.own)
        # Keys, link columns and what the failed checks read: all a quarantine row shows.
        needed = [*keys, "seq", "claim_ref", "claim_code", "flow_id", "oa_request_id", "request_id"]
        needed += [c for rules in state.own.values() for r in rules for c in r.columns]
        for position, row in zip(own_positions, _rows(state.view, own_positions, needed), strict=True):
            key, claim = record_key(suite, row), claim_key(suite, row)
            if key.startswith("row:"):  # keyless: fingerprint the whole row, the same way every run
                key = record_key(suite, _rows(state.view, [position])[0])
            for rule in state.own[position]:
                # Two copies of a duplicated key fail the same check: one quarantine row.
                records.setdefault(
                    (source, entity, key, rule.name),
                    QuarantineWrite(
                        source=source,
                        entity=entity,
                        record_key=key,
                        expectation=rule.name,
                        reason=rule.reason,
                        offending=offending_values(row, dict.fromkeys([*keys, *rule.columns])),
                        claim_key=claim,
                    ),
                )
        stored = sorted(p for p, why in extra[suite].items() if why)
        link = [*keys, "seq", "claim_ref", "claim_code", "flow_id", "oa_request_id", "request_id"]
        for position, row in zip(stored, _rows(state.view, stored, link), strict=True):
            why = extra[suite][position]
            reason = {
                "has_quarantined_line": "one of the claim's lines is in quarantine",
                "has_quarantined_payment": "one of the claim's payments is in quarantine",
                "counterpart_quarantined": "held back while its counterpart in the other system is in quarantine",
            }[why]
            link_columns = [c for c in ("oa_request_id", "claim_code") if suite == "expense_claims" and c in row]
            if suite == "oa_claims":
                link_columns = ["claim_code"]
            key = record_key(suite, row)
            if key.startswith("row:"):
                key = record_key(suite, _rows(state.view, [position])[0])
            records.setdefault(
                (source, entity, key, f"{suite}.{why}"),
                QuarantineWrite(
                    source=source,
                    entity=entity,
                    record_key=key,
                    expectation=f"{suite}.{why}",
                    reason=reason,
                    offending=offending_values(row, dict.fromkeys([*keys, *link_columns])),
                    claim_key=claim_key(suite, row),
                ),
            )
    return list(records.values())


def _seen_keys(states: Mapping[str, _FrameState]) -> dict[tuple[str, str], list[str]]:
    """Record keys each validated frame held (keyless rows left out: only a full run releases those)."""
    from claimsync.quality_gates import record_keys

    return {SOURCE_SUITES[s]: record_keys(s, state.view).dropna().tolist() for s, state in states.items()}


def _format_share(count: int, rows: int) -> str:
    return f"{count:,} of {rows:,} rows ({100.0 * count / rows:.1f}%)"


def _override_hint() -> str:
    return (
        "fix the source rows, or rerun with force (DAG param force=true, CLI --force) to quarantine them and continue"
    )


# Frames are screened side by side on this many threads (Arrow compute releases the GIL).
SCREEN_THREADS: Final = 2


def _prepare(
    frames: Mapping[str, pd.DataFrame],
    settings: Settings,
    parameters_of: Mapping[str, Mapping[str, Any]],
    *,
    screen: bool,
) -> dict[str, tuple[pd.DataFrame, Screening | None]]:
    """Each frame's validation view, and (for a screened run) its screening, frames side by side."""
    from concurrent.futures import ThreadPoolExecutor

    def one(suite: str) -> tuple[pd.DataFrame, Screening | None]:
        view = validation_view(suite, frames[suite], settings)
        return view, prescreen(load_suite(suite), view, parameters_of[suite]) if screen else None

    if not screen or len(frames) < 2:
        return {suite: one(suite) for suite in frames}
    # Biggest first, so the two threads finish together.
    order = sorted(frames, key=lambda s: -len(frames[s]))
    with ThreadPoolExecutor(max_workers=SCREEN_THREADS, thread_name_prefix="claimsync-quality") as pool:
        done = dict(zip(order, pool.map(one, order), strict=True))
    return {suite: done[suite] for suite in frames}


def validate_sources(
    sides: Any,
    *,
    settings: Settings,
    as_of: datetime,
    run_id: str,
    state_engine: Engine | None = None,
    force: bool = False,
    previous_counts: Mapping[str, int] | None = None,
    full_run: bool | None = None,
    gx_full_rows: int = GX_FULL_ROWS,
    gx: GxValidator | None = None,
    suites: Iterable[str] | None = None,
) -> QualityOutcome:
    """Validate every canonical frame of ``sides`` once; quarantine bad rows; trip the breaker.

    ``as_of`` is the run's as-of time (tz-aware). ``previous_counts`` (suite → rows) overrides the
    previous full run's counts read from claimsync.validation_result; ``full_run`` defaults to
    what claimsync.sync_run says about ``run_id`` (a reconcile run counts as full). With
    ``state_engine`` the quarantine and the results are stored (also when the run stops).
    Raises RunStopped naming every failed check unless ``force``; then the outcome carries them.
    ``suites`` limits the gate to the frames a run actually extracted (a claims sync leaves the
    org frames empty: they are not validated, nor compared with earlier counts).
    """
    frames = frames_of(sides)
    if suites is not None:
        wanted = set(suites)
        frames = {name: frame for name, frame in frames.items() if name in wanted}
    scope = run_scope(state_engine, run_id) if state_engine is not None else None
    is_full = full_run if full_run is not None else bool(scope and scope.full_run)
    bucket = _bucket_of(sides)
    # A bucketed extraction stores its results per bucket, and releases only what it saw.
    result_key = {s: s if bucket is None else f"{s}@{bucket[0] + 1}/{bucket[1]}" for s in frames}
    if previous_counts is None:
        stored = (
            previous_row_counts(state_engine, run_id, list(result_key.values()), scope.flow if scope else None)
            if state_engine is not None and is_full
            else {}
        )
        previous_counts = {s: stored[k] for s, k in result_key.items() if k in stored}
    minimums = _min_row_counts(frames, previous_counts, full_run=is_full, bucketed=bucket is not None)
    latest = _latest_valid_time(as_of)
    validator: list[GxValidator] = [gx] if gx is not None else []

    def shared_gx() -> GxValidator:
        if not validator:
            validator.append(GxValidator())
        return validator[0]

    states: dict[str, _FrameState] = {}
    breaches: list[str] = []
    # GX alone up to gx_full_rows rows in all; a bigger run is screened, every frame of it
    # (GX's fixed cost per suite would otherwise dominate on the small org frames).
    frame_limit = gx_full_rows if sum(len(f) for f in frames.values()) <= gx_full_rows else 0
    parameters_of = {
        s: {
            "latest_valid_time": latest,
            "min_row_count": minimums.get(s, 0),
            "lines_sum_mostly": lines_sum_mostly_for(s, len(f)),
        }
        for s, f in frames.items()
    }
    prepared = _prepare(frames, settings, parameters_of, screen=frame_limit == 0)
    for suite, frame in frames.items():
        spec = load_suite(suite)
        view, screening = prepared[suite]
        parameters = parameters_of[suite]
        evaluation = evaluate(spec, view, parameters, shared_gx, gx_full_rows=frame_limit, screening=screening)
        state = _FrameState(suite, frame, view, evaluation, removed=np.zeros(len(view), dtype=bool))
        for outcome in evaluation.outcomes:
            if outcome.quarantines:
                for position in outcome.failing.tolist():
                    state.own.setdefault(int(position), []).append(outcome.rule)
            if outcome.stops:
                breaches.append(_table_failure(suite, outcome.rule, outcome.observed, outcome.error, parameters))
        if state.own:
            state.removed[np.fromiter(state.own, dtype=np.int64)] = True
        states[suite] = state

    extra = _cascade(states)
    quarantined = _quarantine_rows(states, extra)
    quarantine = pd.DataFrame(
        [(q.source, q.entity, q.record_key, q.expectation, q.reason, q.offending, q.claim_key) for q in quarantined],
        columns=QUARANTINE_COLUMNS,
    )
    reports: list[SuiteReport] = []
    for suite, state in states.items():
        source, entity = SOURCE_SUITES[suite]
        removed = int(state.removed.sum())
        rows = len(state.view)
        failed_checks = Counter(r.check for rules in state.own.values() for r in rules)
        table_failures = tuple(
            _table_failure(suite, o.rule, o.observed, o.error, {"min_row_count": minimums.get(suite, 0)})
            for o in state.evaluation.outcomes
            if o.stops
        )
        if removed > max(settings.quarantine_threshold * rows, BREAKER_MIN_ROWS - 1) and removed:
            top = ", ".join(f"{c} {n:,}" for c, n in failed_checks.most_common(3)) or "held back with other rows"
            breaches.append(
                f"{suite}: {_format_share(removed, rows)} quarantined or held back, above the "
                f"{settings.quarantine_threshold:.1%} threshold (CLAIMSYNC_QUARANTINE_THRESHOLD); top checks: {top}"
            )
        evaluated = sum(1 for o in state.evaluation.outcomes if not o.skipped)
        reports.append(
            SuiteReport(
                suite=suite,
                source=source,
                entity=entity,
                rows=rows,
                success=not state.own and not table_failures,
                engine=state.evaluation.engine,
                seconds=state.evaluation.seconds,
                failed_rows=len(state.own),
                removed_rows=removed,
                failed_checks=dict(failed_checks),
                table_failures=table_failures,
                skipped_checks=tuple(o.rule.check for o in state.evaluation.outcomes if o.skipped),
                evaluated=evaluated,
                screen_false_positives=state.evaluation.screen_false_positives,
            )
        )

    clean = {
        suite: state.frame[~state.removed].reset_index(drop=True) if state.removed.any() else state.frame
        for suite, state in states.items()
    }
    result = QualityOutcome(
        run_id=run_id,
        sides=with_frames(sides, clean),
        quarantine=quarantine,
        suites=tuple(reports),
        breaches=tuple(breaches),
        forced=force and bool(breaches),
    )
    if state_engine is not None:
        validated = [SOURCE_SUITES[s] for s in states]
        seen = None if is_full and bucket is None else _seen_keys(states)
        store_quarantine(
            state_engine,
            run_id,
            quarantined,
            validated=validated,
            seen_keys=seen,
        )
        store_results(
            state_engine,
            run_id,
            {result_key[r.suite]: (r.success, r.statistics(full_run=is_full, gate=result.gate)) for r in reports},
        )
    for report in reports:
        log.info(
            "quality %s: %d rows, %d left out, %s in %.2fs", report.suite, report.rows, report.removed_rows,
            "ok" if report.success else f"failed {dict(report.failed_checks)} {list(report.table_failures)}",
            report.seconds,
        )  # fmt: skip
    if breaches and not force:
        raise RunStopped(
            f"quality gate stopped run {run_id} before any write: " + "; ".join(breaches) + f" — {_override_hint()}"
        )
    if breaches:
        log.warning("quality gate breached but forced for run %s: %s", run_id, "; ".join(breaches))
    return result


# ---------------------------------------------------------------------------------------------
# The delta gate

# Position of a target-side state on the forward lifecycle; exits (rejected) have none, voided is last.
_EXPENSE_STATE_RANK: Final = {
    "draft": 0, "pending": 1, "approving": 1, "paying": 2, "paid": 4, "archived": 4, "nullify": 5,
}  # fmt: skip
_OA_FKZT_RANK: Final = {None: 2, "": 2, "支付失败": 2, "支付中": 3, "已支付": 4}


def lifecycle_rank(image: Mapping[str, Any] | None) -> float:
    """Where an image puts its document on the forward path (NaN: the image says nothing about it)."""
    if not image:
        return math.nan
    if "state" in image:
        rank = _EXPENSE_STATE_RANK.get(str(image["state"]) if image["state"] is not None else "")
        return math.nan if rank is None else float(rank)
    if "fkzt" in image:
        value = image["fkzt"]
        rank = _OA_FKZT_RANK.get(None if value is None else str(value).strip())
        return math.nan if rank is None else float(rank)
    return math.nan


def delta_frame(
    writes: Sequence[Any], *, settings: Settings, target_row_counts: Mapping[tuple[str, str], int], floor_rows: int
) -> pd.DataFrame:
    """One row per planned write with what the write_delta suite checks."""
    rows = [
        {
            "target": w.target,
            "table_name": w.table,
            "operation": w.operation,
            "record_key": None if w.record_key is None else str(w.record_key),
            "lifecycle_before": lifecycle_rank(w.before) if w.operation == "update" else math.nan,
            "lifecycle_after": lifecycle_rank(w.after) if w.operation == "update" else math.nan,
        }
        for w in writes
    ]
    frame = pd.DataFrame(
        rows, columns=["target", "table_name", "operation", "record_key", "lifecycle_before", "lifecycle_after"]
    )
    for name in ("target", "table_name", "operation", "record_key"):
        frame[name] = frame[name].astype("str")
    frame["table_writes"] = frame.groupby(["target", "table_name"])["operation"].transform("size").astype("int64")
    limits = {
        key: max(math.floor(settings.delta_limit * count), floor_rows) for key, count in target_row_counts.items()
    }
    frame["table_write_limit"] = [
        limits.get((t, n), floor_rows) for t, n in zip(frame["target"], frame["table_name"], strict=True)
    ]
    frame["table_write_limit"] = frame["table_write_limit"].astype("int64")
    frame["table_rows"] = [
        target_row_counts.get((t, n), 0) for t, n in zip(frame["target"], frame["table_name"], strict=True)
    ]
    return frame


def validate_delta(
    writes: Sequence[Any],
    *,
    settings: Settings,
    target_row_counts: Mapping[tuple[str, str], int],
    force: bool = False,
    run_id: str | None = None,
    state_engine: Engine | None = None,
    gx_full_rows: int = GX_FULL_ROWS,
    gx: GxValidator | None = None,
) -> DeltaOutcome:
    """Check a write-back plan (PlannedWrite list) before anything is written.

    ``target_row_counts`` maps (target, table) → the table's current row count. Any failed check
    stops the run (RunStopped) unless ``force``; with ``run_id`` and ``state_engine`` the result is
    stored in claimsync.validation_result under suite ``write_delta``.
    """
    spec = load_suite(DELTA_SUITE)
    floor_rows = int(spec.rule("delta_within_limit").meta.get("floor_rows", 0))
    frame = delta_frame(writes, settings=settings, target_row_counts=target_row_counts, floor_rows=floor_rows)
    view = validation_view(DELTA_SUITE, frame, settings)
    cache: list[GxValidator] = [gx] if gx is not None else []

    def shared_gx() -> GxValidator:
        if not cache:
            cache.append(GxValidator())
        return cache[0]

    evaluation = evaluate(spec, view, {}, shared_gx, gx_full_rows=gx_full_rows)
    breaches: list[str] = []
    failed_checks: dict[str, int] = {}
    for outcome in evaluation.outcomes:
        if outcome.success or outcome.skipped:
            continue
        failed_checks[outcome.rule.check] = len(outcome.failing)
        breaches.append(_delta_breach(outcome.rule, view, outcome.failing, outcome.error, settings))
    report = SuiteReport(
        suite=DELTA_SUITE,
        source="plan",
        entity="writes",
        rows=len(view),
        success=not breaches,
        engine=evaluation.engine,
        seconds=evaluation.seconds,
        failed_rows=len({int(p) for o in evaluation.outcomes for p in o.failing}),
        failed_checks=failed_checks,
        table_failures=tuple(breaches),
        evaluated=sum(1 for o in evaluation.outcomes if not o.skipped),
        screen_false_positives=evaluation.screen_false_positives,
    )
    decision = DeltaOutcome(report=report, breaches=tuple(breaches), forced=force and bool(breaches))
    if state_engine is not None and run_id is not None:
        statistics = report.statistics(full_run=False, gate=decision.gate)
        statistics.pop("full_run")
        statistics["tables"] = {
            f"{t}.{n}": {"writes": w, "limit": lim, "rows": r} for (t, n), w, lim, r in _table_stats(view)
        }
        store_results(state_engine, run_id, {DELTA_SUITE: (report.success, statistics)})
    if breaches and not force:
        where = f" {run_id}" if run_id else ""
        raise RunStopped(
            f"delta gate stopped run{where} before any write: " + "; ".join(breaches) + f" — {_delta_hint()}"
        )
    return decision


def _table_stats(view: pd.DataFrame) -> list[tuple[tuple[str, str], int, int, int]]:
    out = []
    for (target, table), group in view.groupby(["target", "table_name"], sort=True):
        first = group.iloc[0]
        out.append(
            (
                (str(target), str(table)),
                int(first["table_writes"]),
                int(first["table_write_limit"]),
                int(first["table_rows"]),
            )
        )
    return out


def _delta_hint() -> str:
    return (
        "check the plan (claimsync sync --dry-run), or rerun with force (DAG param force=true, CLI --force)"
        " if it is intended"
    )


def _delta_breach(rule: Rule, view: pd.DataFrame, failing: np.ndarray, error: str | None, settings: Settings) -> str:
    if error is not None:
        return f"write_delta: check {rule.check} could not be evaluated ({_printable(error, 160)})"
    if rule.check == "delta_within_limit":
        parts = []
        for (target, table), writes, limit, rows in _table_stats(view):
            if writes > limit:
                share = f"{writes / rows:.1%} of {rows:,} rows" if rows else "an empty table"
                parts.append(
                    f"{target}.{table}: {writes:,} planned writes, {share}, above the limit of {limit:,} "
                    f"({settings.delta_limit:.0%} per CLAIMSYNC_DELTA_LIMIT)"
                )
        return "write_delta: " + "; ".join(parts or [rule.reason])
    shown = _rows(view, [int(p) for p in failing[:5]])
    sample = ", ".join(f"{r['target']}.{r['table_name']}:{_printable(str(r['record_key']), 60)}" for r in shown)
    more = f" and {len(failing) - 5:,} more" if len(failing) > 5 else ""
    return f"write_delta: {rule.reason}: {len(failing):,} writes ({sample}{more})"


def validation_summary(state_engine: Engine, run_id: str) -> ValidationSummary:
    """Every suite's stored result for ``run_id`` and the run's quarantine figures (for the report)."""
    return _validation_summary(state_engine, run_id)


__all__ = [
    "FUTURE_SKEW",
    "DeltaOutcome",
    "QualityOutcome",
    "SuiteReport",
    "ValidationSummary",
    "claim_key",
    "delta_frame",
    "frames_of",
    "lifecycle_rank",
    "offending_values",
    "record_key",
    "validate_delta",
    "validate_sources",
    "validation_summary",
    "validation_view",
    "with_frames",
]
