"""Canonicalization: map each system's raw frames onto the canonical model (claimsync.model).

Pure pandas/pyarrow, no database: claimsync.extract produces :class:`RawSides`, a quality
gate may inspect or alter them, and :func:`canonicalize` turns them into :class:`Sides`.

- Lifecycle: the table in claimsync.rules (OA: ``deleted``, ``currentnodetype``, ``fkzt``
  and the last decisive approval-log entry; expense: ``state`` and the claim's payments).
  A state value the table does not know becomes <NA>.
- Money: the stored decimal text becomes **integer cents** (``Int64``) exactly, never via
  float. A value that is not a number with at most two decimals becomes <NA>; nothing raises.
- Times: OA text dates and times are local times in ``settings.timezone``; expense
  timestamptz values are converted to the same zone. Unparseable text becomes NaT.
  Dates without a time (``fkrq``, ``kprq``, ``invoice_date``) become ``date32[pyarrow]``.
- Each value parsed from text has its source text beside it in ``<column>_src`` (e.g.
  ``changed_at_src``, ``amount_cents_src``) where the text did not parse, so a quality gate
  can show the offending value; where it parsed, ``<column>_src`` is null (the parsed value
  says it all, and a million copies of the text would double the frames' memory).
  Nothing else is added to the model's columns.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from claimsync.config import Settings
from claimsync.model import (
    DEPARTMENT_COLUMNS,
    EMPLOYEE_COLUMNS,
    EXPENSE_CLAIM_COLUMNS,
    OA_CLAIM_COLUMNS,
    PAYMENT_COLUMNS,
)
from claimsync.rules import FKZT_PAID, FKZT_PAYING, ClaimState

if TYPE_CHECKING:
    from claimsync.extract import RawSides

__all__ = [
    "RECONCILE_LINE_COLUMNS",
    "Scope",
    "Sides",
    "SystemClaims",
    "assemble_sides",
    "canonical_claims",
    "canonicalize",
    "canonicalize_frames",
    "parse_cents",
    "parse_date",
    "parse_local_time",
]


# The line columns claimsync.reconcile reads (Sides.for_reconcile).
RECONCILE_LINE_COLUMNS: Final = ("claim_ref", "amount_cents", "invoice_code", "invoice_number")


@dataclass(frozen=True)
class Scope:
    """Which bucket (and window) produced a set of Sides, for a bucketed reconcile.

    ``oa_buckets`` (indexed by request_id) and ``expense_buckets`` (indexed by claim_code)
    give each claim's bucket when the run's window selected it, <NA> for a counterpart
    that was fetched only because it links to such a claim (claimsync.extract).
    """

    bucket: tuple[int, int] | None
    oa_buckets: pd.Series = field(repr=False)
    expense_buckets: pd.Series = field(repr=False)


@dataclass(frozen=True)
class Sides:
    """Both systems in the canonical model: the columns of claimsync.model, plus ``*_src``.

    ``scope`` is None for Sides that hold whole link groups of one process (a full or a
    windowed run); a bucketed extraction sets it (see claimsync.reconcile.merge_results).
    """

    oa_claims: pd.DataFrame
    oa_lines: pd.DataFrame
    oa_employees: pd.DataFrame
    oa_departments: pd.DataFrame
    expense_claims: pd.DataFrame
    expense_lines: pd.DataFrame
    expense_payments: pd.DataFrame
    expense_employees: pd.DataFrame
    expense_departments: pd.DataFrame
    scope: Scope | None = None

    def for_reconcile(self) -> Sides:
        """These Sides with only the line columns claimsync.reconcile reads.

        Line totals are already on the claims; the reconcile reads lines only for their
        invoices. Dropping the rest (fee type, dates, source text: ≈ 250 MiB at 1M claims)
        before it builds its working set lowers a full run's peak memory.
        """
        return replace(
            self,
            oa_lines=self.oa_lines.loc[:, list(RECONCILE_LINE_COLUMNS)],
            expense_lines=self.expense_lines.loc[:, list(RECONCILE_LINE_COLUMNS)],
        )


# --- value parsers (vectorised; never raise on bad values) ---------------------------------

_MONEY_TWO_DECIMALS: Final = r"^-?[0-9]{1,16}\.[0-9]{2}$"
_MONEY: Final = r"^[+-]?([0-9]{1,16}(\.[0-9]{0,2})?|\.[0-9]{1,2})$"


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _arrow(values: pd.Series) -> pa.Array:
    try:
        array = pa.array(values, from_pandas=True)
    except (UnicodeError, pa.ArrowInvalid, pa.ArrowTypeError):
        # Text Arrow cannot hold (lone surrogates, bytes) is no amount: <NA>; ``*_src`` keeps it for the gate.
        array = pa.array(values.map(lambda v: v if isinstance(v, str) and _utf8(v) else None), from_pandas=True)
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.large_string())
    return array


def parse_cents(values: pd.Series) -> pd.Series:
    """Decimal text → integer cents (``Int64``); anything but a number with ≤ 2 decimals → <NA>."""
    if len(values) == 0:
        return pd.Series(pd.array([], dtype="Int64"), index=values.index)
    text = _arrow(values)
    if pc.all(pc.match_substring_regex(text, _MONEY_TWO_DECIMALS), skip_nulls=True).as_py() is not False:
        # The common case (PostgreSQL numeric(p,2) text): drop the point and read the integer.
        cents = pc.cast(pc.replace_substring(text, ".", ""), pa.int64())
    else:
        text = pc.utf8_trim_whitespace(text)
        valid = pc.match_substring_regex(text, _MONEY)
        text = pc.if_else(valid, text, pa.scalar(None, text.type))
        text = pc.replace_substring_regex(text, r"^\+", "")
        text = pc.replace_substring_regex(text, r"^(-?)\.", r"\10.")  # RE2: \1 then a literal 0
        text = pc.replace_substring_regex(text, r"^(-?[0-9]+)$", r"\1.00")
        text = pc.replace_substring_regex(text, r"\.$", ".00")
        text = pc.replace_substring_regex(text, r"\.([0-9])$", r".\10")
        cents = pc.cast(pc.replace_substring(text, ".", ""), pa.int64())
    return pd.Series(_int64_array(cents), index=values.index)


def _unparsed(source: pd.Series, parsed: pd.Series) -> pd.Series:
    """``source`` where it did not parse into ``parsed`` (null there), else null."""
    return source.where(parsed.isna().to_numpy())


def _int64_array(values: pa.Array | pa.ChunkedArray) -> pd.arrays.IntegerArray:
    """Arrow int64 → pandas Int64 exactly (``pd.array`` would pass nullable ints through float64)."""
    data = np.asarray(pc.fill_null(values, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    mask = np.asarray(pc.is_null(values).to_numpy(zero_copy_only=False), dtype=bool)
    return pd.arrays.IntegerArray(data, mask)


def parse_local_time(text: pd.Series, tz: ZoneInfo) -> pd.Series:
    """``'YYYY-MM-DD HH:MM:SS'`` local text → tz-aware timestamps; unparseable → NaT."""
    parsed = pd.to_datetime(text, format="%Y-%m-%d %H:%M:%S", errors="coerce")
    return parsed.dt.as_unit("us").dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")


def parse_date(text: pd.Series) -> pd.Series:
    """``'YYYY-MM-DD'`` text → ``date32[pyarrow]``; unparseable or empty → <NA>."""
    # Lines repeat few distinct dates: parse each distinct text once.
    codes, uniques = pd.factorize(text)
    parsed = pd.to_datetime(pd.Series(uniques, dtype="str"), format="%Y-%m-%d", errors="coerce")
    unique_dates = pa.array(parsed.dt.as_unit("s"), from_pandas=True).cast(pa.date32())
    taken = unique_dates.take(pa.array(codes, mask=codes < 0)) if len(uniques) else pa.nulls(len(text), pa.date32())
    return pd.Series(pd.array(taken, dtype=pd.ArrowDtype(pa.date32())), index=text.index)


def _positions(keys: pd.Series, universe: pd.Series) -> np.ndarray:
    """For each key, the position of its first equal in ``universe`` (-1: none); hashed in Arrow."""
    found = pc.index_in(_arrow_any(keys), value_set=_arrow_any(universe))
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _isin(values: pd.Series, universe: pd.Series) -> np.ndarray:
    """``values.isin(universe)`` hashed in Arrow (pandas loops in Python for Arrow strings)."""
    found = pc.is_in(_arrow_any(values), value_set=_arrow_any(universe))
    return np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _arrow_any(values: pd.Series) -> pa.Array:
    array = pa.array(values, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):  # big CSV reads come in chunks
        array = array.combine_chunks()
    if pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
    return array


def _joined(date: pd.Series, time: pd.Series) -> pd.Series:
    return date.str.strip() + " " + time.str.strip()


def _to_tz(values: pd.Series, tz: ZoneInfo) -> pd.Series:
    converted: pd.Series = values.dt.tz_convert(tz)
    return converted


def _code(values: pd.Series) -> pd.Series:
    """Trimmed text; empty → <NA> (a blank key is no key)."""
    try:
        text = pa.array(values, from_pandas=True)
    except (UnicodeError, pa.ArrowInvalid, pa.ArrowTypeError):
        text = None  # text Arrow cannot hold (lone surrogates): trim in pandas; the quality gate judges it
    if (
        len(values) == 0
        or text is None
        or (not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type))
    ):
        stripped = values.str.strip()
        return stripped.where(stripped != "")
    # Most keys are clean: keep the column as it is (no copy) unless some value needs trimming
    # (or is empty). Comparing lengths is a fifth of the time of a regex over the keys.
    length = pc.binary_length(text)
    trimmed_length = pc.binary_length(pc.utf8_trim_whitespace(text))
    if not pc.any(pc.or_(pc.not_equal(length, trimmed_length), pc.equal(length, 0))).as_py():
        return values
    stripped = values.str.strip()
    return stripped.where(stripped != "")


def _int64(values: pd.Series) -> pd.Series:
    return values.astype("Int64")


def _states(conditions: list[pd.Series], states: list[ClaimState], index: pd.Index) -> pd.Series:
    """First matching condition wins; no match → <NA>."""
    masks = [np.asarray(c.fillna(False), dtype=bool) for c in conditions]
    chosen = np.select(masks, [s.value for s in states], default="")
    result = pd.Series(chosen, index=index, dtype="str")
    return result.where(result != "")


# --- per entity ---------------------------------------------------------------------------


def _line_totals(claim_keys: pd.Series, line_keys: pd.Series, cents: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Per claim: the exact sum of its lines in cents (<NA> if a line amount is <NA>; 0 without
    lines) and the number of lines. Integer arithmetic only."""
    count = len(claim_keys)
    position = _positions(line_keys, claim_keys)
    matched = position >= 0
    position = position[matched]
    amounts = cents.to_numpy(dtype=np.int64, na_value=0)[matched]
    missing = cents.isna().to_numpy()[matched]
    totals = np.zeros(count, dtype=np.int64)
    np.add.at(totals, position, amounts)
    line_count = np.bincount(position, minlength=count).astype(np.int64)
    unknown = np.zeros(count, dtype=bool)
    unknown[position[missing]] = True
    return pd.Series(pd.arrays.IntegerArray(totals, unknown), index=claim_keys.index), line_count


def _oa_claims(raw: pd.DataFrame, lines: pd.DataFrame, tz: ZoneInfo) -> pd.DataFrame:
    node = raw["currentnodetype"].str.strip()
    last_log = raw["last_logtype"].str.strip()
    fkzt = raw["fkzt"].str.strip()
    deleted = raw["deleted"].fillna(0) == 1
    archived = node == "3"
    state = _states(
        [
            deleted,
            archived & (fkzt == FKZT_PAYING),
            archived & (fkzt == FKZT_PAID),
            archived,
            node.isin(["1", "2"]),
            (node == "0") & (last_log == "3"),
            (node == "0") & (last_log == "r"),
            node == "0",
        ],
        [
            ClaimState.VOIDED,
            ClaimState.PAYING,
            ClaimState.PAID,
            ClaimState.APPROVED,
            ClaimState.SUBMITTED,
            ClaimState.REJECTED,
            ClaimState.WITHDRAWN,
            ClaimState.DRAFT,
        ],
        raw.index,
    )
    created_src = _joined(raw["createdate"], raw["createtime"])
    changed_src = _joined(raw["lastoperatedate"], raw["lastoperatetime"])
    approved_src = _joined(raw["last_logdate"], raw["last_logtime"]).where(archived & last_log.isin(["0", "e"]))
    request_id = _int64(raw["requestid"])
    lines_total, line_count = _line_totals(request_id, lines["request_id"], lines["amount_cents"])
    frame = pd.DataFrame(
        {
            "request_id": request_id,
            "request_mark": raw["requestmark"],
            "claim_code": _code(raw["bxdh"]),
            "employee_code": _code(raw["sqr_workcode"]),
            "employee_status": _int64(raw["sqr_status"]),
            "department_code": _code(raw["sqbm_departmentmark"]),
            "amount_cents": parse_cents(raw["bxje"]),
            "currency": raw["bz"].str.strip().str.upper(),
            "state": state,
            "fkzt": fkzt,
            "fkrq": parse_date(raw["fkrq"]),
            "pzh": raw["pzh"],
            "approved_at": parse_local_time(approved_src, tz),
            "created_at": parse_local_time(created_src, tz),
            "changed_at": parse_local_time(changed_src, tz),
        },
        index=raw.index,
    )
    frame["lines_total_cents"] = lines_total
    frame["line_count"] = line_count
    frame = frame.loc[:, list(OA_CLAIM_COLUMNS)]
    frame["amount_cents_src"] = _unparsed(raw["bxje"], frame["amount_cents"])
    frame["fkrq_src"] = _unparsed(raw["fkrq"], frame["fkrq"])
    frame["approved_at_src"] = _unparsed(approved_src, frame["approved_at"])
    frame["created_at_src"] = _unparsed(created_src, frame["created_at"])
    frame["changed_at_src"] = _unparsed(changed_src, frame["changed_at"])
    return frame.reset_index(drop=True)


def _oa_lines(raw: pd.DataFrame) -> pd.DataFrame:
    request_id = _int64(raw["requestid"])
    frame = pd.DataFrame(
        {
            "claim_ref": request_id.astype("str"),
            "seq": _line_numbers(request_id, raw["id"]),
            "fee_type": raw["fylx"],
            "amount_cents": parse_cents(raw["je"]),
            "invoice_code": _code(raw["fpdm"]),
            "invoice_number": _code(raw["fphm"]),
            "invoice_date": parse_date(raw["kprq"]),
        }
    )
    frame["amount_cents_src"] = _unparsed(raw["je"], frame["amount_cents"])
    frame["invoice_date_src"] = _unparsed(raw["kprq"], frame["invoice_date"])
    frame["request_id"] = request_id  # dropped by canonicalize after the totals are taken
    return frame.reset_index(drop=True)


def _line_numbers(claim: pd.Series, line_id: pd.Series) -> np.ndarray:
    """1, 2, … per claim in the order of the lines' ids (OA lines have no line number)."""
    claims = claim.to_numpy(dtype=np.int64, na_value=-1)
    ids = line_id.to_numpy(dtype=np.int64, na_value=-1)
    order = np.lexsort((ids, claims))
    sorted_claims = claims[order]
    starts = np.r_[True, sorted_claims[1:] != sorted_claims[:-1]] if len(order) else np.zeros(0, dtype=bool)
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0)) if len(order) else order
    numbers = np.empty(len(order), dtype=np.int64)
    numbers[order] = np.arange(len(order)) - group_start + 1
    return numbers


def _expense_claims(raw: pd.DataFrame, lines: pd.DataFrame, payments: pd.DataFrame, tz: ZoneInfo) -> pd.DataFrame:
    state = raw["state"].str.strip()
    live_payment = payments.loc[payments["status"].isin(["PROCESSING", "SUCCESS"]), "claim_code"]
    paying_with_payment = pd.Series(_isin(raw["code"], live_payment.dropna()), index=raw.index)
    canonical = _states(
        [
            state == "draft",
            state.isin(["pending", "approving"]),
            state == "rejected",
            state == "nullify",
            state.isin(["paid", "archived"]),
            (state == "paying") & paying_with_payment,
            state == "paying",
        ],
        [
            ClaimState.DRAFT,
            ClaimState.SUBMITTED,
            ClaimState.REJECTED,
            ClaimState.VOIDED,
            ClaimState.PAID,
            ClaimState.PAYING,
            ClaimState.APPROVED,
        ],
        raw.index,
    )
    code = _code(raw["code"])
    lines_total, line_count = _line_totals(code, lines["claim_ref"], lines["amount_cents"])
    frame = pd.DataFrame(
        {
            "flow_id": raw["id"],
            "claim_code": code,
            "oa_request_id": _int64(raw["oa_request_id"]),
            "employee_code": _code(raw["submitter_code"]),
            "department_code": _code(raw["department_code"]),
            "amount_cents": parse_cents(raw["sum_amount"]),
            "pay_cents": parse_cents(raw["pay_money"]),
            "currency": raw["currency"].str.strip().str.upper(),
            "state": canonical,
            "raw_state": raw["state"],
            "approve_time": _to_tz(raw["approve_time"], tz),
            "pay_time": _to_tz(raw["pay_time"], tz),
            "voucher_no": raw["voucher_no"],
            "created_at": _to_tz(raw["create_time"], tz),
            "changed_at": _to_tz(raw["update_time"], tz),
        },
        index=raw.index,
    )
    frame["lines_total_cents"] = lines_total
    frame["line_count"] = line_count
    frame = frame.loc[:, list(EXPENSE_CLAIM_COLUMNS)]
    frame["amount_cents_src"] = _unparsed(raw["sum_amount"], frame["amount_cents"])
    frame["pay_cents_src"] = _unparsed(raw["pay_money"], frame["pay_cents"])
    return frame.reset_index(drop=True)


def _expense_lines(raw: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "claim_ref": _code(raw["code"]),
            "seq": _int64(raw["seq"]),
            "fee_type": raw["fee_type"],
            "amount_cents": parse_cents(raw["amount"]),
            "invoice_code": _code(raw["invoice_code"]),
            "invoice_number": _code(raw["invoice_number"]),
            "invoice_date": parse_date(raw["invoice_date"]),
        }
    )
    frame["amount_cents_src"] = _unparsed(raw["amount"], frame["amount_cents"])
    frame["invoice_date_src"] = _unparsed(raw["invoice_date"], frame["invoice_date"])
    return frame.reset_index(drop=True)


def _expense_payments(raw: pd.DataFrame, tz: ZoneInfo) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "payment_id": raw["id"],
            "claim_code": _code(raw["code"]),
            "amount_cents": parse_cents(raw["amount"]),
            "status": raw["status"].str.strip(),
            "payee_name": raw["payee_name"],
            "payee_account_masked": raw["payee_account_masked"],
            "created_at": _to_tz(raw["create_time"], tz),
            "finished_at": _to_tz(raw["finish_time"], tz),
            "changed_at": _to_tz(raw["update_time"], tz),
        }
    )
    frame = frame.loc[:, list(PAYMENT_COLUMNS)]
    frame["amount_cents_src"] = _unparsed(raw["amount"], frame["amount_cents"])
    return frame.reset_index(drop=True)


def _oa_employees(raw: pd.DataFrame, tz: ZoneInfo) -> pd.DataFrame:
    status = _int64(raw["status"])
    changed_src = _joined(raw["lastmoddate"], raw["lastmodtime"])
    frame = pd.DataFrame(
        {
            "employee_code": _code(raw["workcode"]),
            "name": raw["lastname"],
            "department_code": _code(raw["departmentmark"]),
            "active": (status <= 3).astype("boolean"),
            "status": status,
            "email": raw["email"],
            "changed_at": parse_local_time(changed_src, tz),
        }
    )
    frame = frame.loc[:, list(EMPLOYEE_COLUMNS)]
    frame["changed_at_src"] = _unparsed(changed_src, frame["changed_at"])
    return frame.reset_index(drop=True)


def _expense_employees(raw: pd.DataFrame, tz: ZoneInfo) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "employee_code": _code(raw["code"]),
            "name": raw["name"],
            "department_code": _code(raw["department_code"]),
            "active": raw["active"].astype("boolean"),
            "status": pd.array([pd.NA] * len(raw), dtype="Int64"),
            "email": raw["email"],
            "changed_at": _to_tz(raw["update_time"], tz),
        }
    )
    return frame.loc[:, list(EMPLOYEE_COLUMNS)].reset_index(drop=True)


def _oa_departments(raw: pd.DataFrame, tz: ZoneInfo) -> pd.DataFrame:
    changed_src = raw["modified"].str.strip()
    frame = pd.DataFrame(
        {
            "department_code": _code(raw["departmentmark"]),
            "name": raw["departmentname"],
            "parent_code": _code(raw["parent_departmentmark"]),
            "active": (raw["canceled"].fillna("0").str.strip() != "1").astype("boolean"),
            "changed_at": parse_local_time(changed_src, tz),
        }
    )
    frame = frame.loc[:, list(DEPARTMENT_COLUMNS)]
    frame["changed_at_src"] = _unparsed(changed_src, frame["changed_at"])
    return frame.reset_index(drop=True)


def _expense_departments(raw: pd.DataFrame, tz: ZoneInfo) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "department_code": _code(raw["code"]),
            "name": raw["name"],
            "parent_code": _code(raw["parent_code"]),
            "active": raw["active"].astype("boolean"),
            "changed_at": _to_tz(raw["update_time"], tz),
        }
    )
    return frame.loc[:, list(DEPARTMENT_COLUMNS)].reset_index(drop=True)


def canonicalize(raw: RawSides, settings: Settings) -> Sides:
    """Map raw frames (claimsync.extract.RawSides) onto the canonical model; never raises on bad values."""
    return canonicalize_frames(raw.frames(), settings, bucket=raw.bucket)


def canonicalize_frames(
    frames: dict[str, pd.DataFrame], settings: Settings, *, bucket: tuple[int, int] | None
) -> Sides:
    """:func:`canonicalize` of RawSides' frames by name, taking each out of ``frames`` once its
    canonical frame is built: a caller that holds no other reference to them frees each raw
    frame then, instead of holding both models whole (≈ 450 MiB at 1M claims). claimsync.extract
    calls the two steps, :func:`canonical_claims` per system and :func:`assemble_sides`, itself."""
    oa = canonical_claims("oa", frames, settings, bucket=bucket)
    expense = canonical_claims("expense", frames, settings, bucket=bucket)
    return assemble_sides(oa, expense, frames, settings, bucket=bucket)


@dataclass(frozen=True)
class SystemClaims:
    """One system's canonical claims, lines and (expense) payments; in a bucketed run, each
    claim's ``scope_bucket`` (claimsync.extract) in ``buckets``."""

    claims: pd.DataFrame
    lines: pd.DataFrame
    payments: pd.DataFrame | None
    buckets: np.ndarray | None = field(repr=False)


def canonical_claims(
    system: str, frames: dict[str, pd.DataFrame], settings: Settings, *, bucket: tuple[int, int] | None
) -> SystemClaims:
    """``system``'s claim frames (``oa_claims``/``oa_lines``, or ``expense_claims``/
    ``expense_lines``/``expense_payments``) in the canonical model, each taken out of
    ``frames`` once used. A system's needs nothing of the other's, so claimsync.extract
    canonicalizes each as soon as its own records are in."""
    tz = settings.tz
    payments = None
    if system == "oa":
        lines = _oa_lines(_hand_over(frames, "oa_lines"))
        raw_claims = frames.pop("oa_claims")
        claims = _oa_claims(raw_claims, lines, tz)
    else:
        lines = _expense_lines(_hand_over(frames, "expense_lines"))
        payments = _expense_payments(_hand_over(frames, "expense_payments"), tz)
        raw_claims = frames.pop("expense_claims")
        claims = _expense_claims(raw_claims, lines, payments, tz)
    buckets = None if bucket is None else _int64(raw_claims["scope_bucket"]).to_numpy()
    del raw_claims
    gc.collect()
    return SystemClaims(claims=claims, lines=lines, payments=payments, buckets=buckets)


def assemble_sides(
    oa: SystemClaims,
    expense: SystemClaims,
    org: dict[str, pd.DataFrame],
    settings: Settings,
    *,
    bucket: tuple[int, int] | None,
) -> Sides:
    """Both systems' canonical claims with the employees and departments of ``org`` (raw
    ``oa_employees``, ``oa_departments``, ``expense_employees``, ``expense_departments``,
    taken out of it) canonicalized."""
    tz = settings.tz
    scope = None
    if bucket is not None:
        scope = Scope(
            bucket=bucket,
            oa_buckets=pd.Series(oa.buckets, index=oa.claims["request_id"].to_numpy()),
            expense_buckets=pd.Series(expense.buckets, index=expense.claims["claim_code"].to_numpy()),
        )
    if expense.payments is None:
        raise ValueError("the expense side's SystemClaims carry no payments")
    return Sides(
        oa_claims=oa.claims,
        oa_lines=oa.lines.drop(columns="request_id"),
        oa_employees=_oa_employees(org.pop("oa_employees"), tz),
        oa_departments=_oa_departments(org.pop("oa_departments"), tz),
        expense_claims=expense.claims,
        expense_lines=expense.lines,
        expense_payments=expense.payments,
        expense_employees=_expense_employees(org.pop("expense_employees"), tz),
        expense_departments=_expense_departments(org.pop("expense_departments"), tz),
        scope=scope,
    )


def _hand_over(frames: dict[str, pd.DataFrame], name: str) -> pd.DataFrame:
    """Take ``name`` out of ``frames``, first collecting the raw frames taken before it (pandas
    keeps frames in reference cycles, so dropping the last reference does not free them)."""
    gc.collect()
    return frames.pop(name)
