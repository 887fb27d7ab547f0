"""Reconciliation: compare the two systems' canonical frames and classify every difference.

Pure pandas (and a little numpy/pyarrow): no database, no Airflow. The rules are exactly
those of claimsync.rules (its docstring is the contract); this module only makes them
fast (merges, groupby, array gathers; no Python loop over claims).

Amount impact (``amount_impact_cents``, always ≥ 0, integer cents)
- ``missing_in_expense``, ``missing_in_oa``: the claim's amount (OA bxje / expense sum_amount);
- ``amount_mismatch``: |bxje − sum_amount| (when the currencies differ: the larger amount);
- ``lines_total_mismatch``: |header total − sum of the lines|;
- ``duplicate_invoice``: the duplicated amount, i.e. the invoice's amount on every live claim
  carrying it except the largest one (each claim counted once, an OA request and its linked
  claim being one claim);
- every other code: the claim amount (the OA amount of a pair, else the expense amount);
- an unknown amount counts as 0.

Counts
- ``oa_claims`` / ``expense_claims``: records compared; ``matched``: linked pairs outside
  any duplicate_link; ``clean_matched``: matched pairs with no exception on either record
  (in_flight included, as it is a difference too); ``match_rate`` = clean_matched / the
  larger of oa_claims and expense_claims (None when both are 0).

Duplicate keys: a request id or claim code seen twice is taken once (its first row); the
quality gate (claimsync.quality) reports such rows.

Buckets
-------
A bucketed extraction (claimsync.extract, ``bucket=(i, n)``) holds every *link group* (the
records connected by requestid ↔ oa_request_id and bxdh ↔ code) that one of its seed
records belongs to, so every rule except ``duplicate_invoice`` is decided inside a bucket.
A group is reported by exactly one bucket: the lowest bucket among its records that the
run's window selected (claimsync.canonical.Scope). ``duplicate_invoice`` spans claims of
any bucket: each bucket's result keeps its live invoice occurrences (one row per invoice
and claim, ``pending_invoices``) and :func:`merge_results` decides the code globally over
all buckets. So ``merge_results([reconcile(bucket i) for i in range(n)])`` equals the
single-process ``reconcile`` of the same data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from claimsync.canonical import Sides
from claimsync.config import Settings
from claimsync.model import EXCEPTION_COLUMNS
from claimsync.rules import (
    APPROVED_OR_LATER,
    FORWARD_ORDER,
    RECONCILE_CODES,
    SEVERITY,
    ClaimState,
    ExceptionCode,
)

__all__ = ["LINK_COLUMNS", "ReconResult", "link_claims", "merge_results", "reconcile"]

LINK_COLUMNS: Final = ("request_id", "claim_code", "link", "duplicate_link")

_OPEN: Final = frozenset({ClaimState.SUBMITTED, ClaimState.APPROVED, ClaimState.PAYING})
_DEAD: Final = frozenset({ClaimState.VOIDED, ClaimState.REJECTED, ClaimState.WITHDRAWN})
_AWAITING_CLAIM: Final = frozenset({ClaimState.SUBMITTED, ClaimState.APPROVED, ClaimState.PAYING, ClaimState.PAID})
_DETAIL_LIST: Final = 5  # how many keys a detail sentence names before "…"


@dataclass(frozen=True)
class ReconResult:
    """What one reconciliation found. ``exceptions`` has claimsync.model.EXCEPTION_COLUMNS,
    one row per (code, business_key), sorted by code then key.

    A bucket's result (from Sides with a bucket scope) is partial until
    :func:`merge_results`: ``pending_invoices`` holds what duplicate_invoice still needs.
    """

    as_of: datetime
    exceptions: pd.DataFrame
    oa_claims: int
    expense_claims: int
    matched: int
    clean_matched: int
    pending_invoices: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def counts(self) -> dict[str, int]:
        """Exceptions per reconcile code (every code, 0 included)."""
        found = self.exceptions["code"].value_counts()
        return {code.value: int(found.get(code.value, 0)) for code in RECONCILE_CODES}

    def amounts_cents(self) -> dict[str, int]:
        """Sum of amount impact per reconcile code, in cents (every code, 0 included)."""
        sums = self.exceptions.groupby("code", sort=False)["amount_impact_cents"].sum()
        return {code.value: int(sums.get(code.value, 0)) for code in RECONCILE_CODES}

    @property
    def match_rate(self) -> float | None:
        compared = max(self.oa_claims, self.expense_claims)
        return None if compared == 0 else self.clean_matched / compared

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "oa_claims": self.oa_claims,
            "expense_claims": self.expense_claims,
            "matched": self.matched,
            "clean_matched": self.clean_matched,
            "match_rate": self.match_rate,
            "exceptions": len(self.exceptions),
            "counts": self.counts(),
            "amounts_cents": self.amounts_cents(),
        }


# --- linking ------------------------------------------------------------------------------


def _unique_claims(sides: Sides) -> tuple[pd.DataFrame, pd.DataFrame]:
    # only the columns the rules read: the rest (and *_src) are not copied
    oa = sides.oa_claims.loc[:, [c for c in _NEEDED_COLUMNS if c in sides.oa_claims.columns]]
    oa = oa.astype({"request_id": "Int64", "claim_code": "str"})
    oa = oa[oa["request_id"].notna()].drop_duplicates("request_id").reset_index(drop=True)
    expense = sides.expense_claims.loc[:, [c for c in _NEEDED_COLUMNS if c in sides.expense_claims.columns]]
    expense = expense.astype({"claim_code": "str", "oa_request_id": "Int64"})
    expense = expense[expense["claim_code"].notna()].drop_duplicates("claim_code").reset_index(drop=True)
    return oa, expense


def _edges(oa: pd.DataFrame, expense: pd.DataFrame) -> pd.DataFrame:
    """Every OA request ↔ claim connection (positions into oa / expense) with its link kind.

    A claim *reaches* the request its oa_request_id names (``primary``) and every request
    whose bxdh is its code (``fallback`` when the claim has no oa_request_id; no link
    otherwise, but still a reach that can make a duplicate_link).
    """
    oa_pos = pd.Series(np.arange(len(oa)), index=pd.Index(oa["request_id"].to_numpy(dtype=np.int64)))
    named = expense["oa_request_id"]
    has_named = named.notna().to_numpy()
    target = oa_pos.reindex(named[has_named].to_numpy(dtype=np.int64)).to_numpy()
    ok = ~np.isnan(target)
    primary = pd.DataFrame(
        {
            "oa": target[ok].astype(np.int64),
            "expense": np.flatnonzero(has_named)[ok],
            "link": np.full(int(ok.sum()), "primary", dtype=object),
        }
    )
    with_code = oa["claim_code"].notna().to_numpy()
    code_pos = _positions(oa["claim_code"][with_code], expense["claim_code"])
    hit = code_pos >= 0
    oa_side = np.flatnonzero(with_code)[hit]
    expense_side = code_pos[hit]
    # bxdh may repeat across requests: index_in found each request's claim; that is all we need.
    named_id = expense["oa_request_id"].to_numpy(dtype=np.float64, na_value=np.nan)[expense_side]
    own_id = oa["request_id"].to_numpy(dtype=np.int64)[oa_side]
    kind = np.full(len(oa_side), None, dtype=object)  # filled in place: no text array per edge
    kind[np.isnan(named_id)] = "fallback"
    kind[named_id == own_id] = "primary"
    by_code = pd.DataFrame({"oa": oa_side, "expense": expense_side, "link": kind})
    edges = pd.concat([primary, by_code], ignore_index=True).drop_duplicates(["oa", "expense"], keep="first")
    return edges.reset_index(drop=True)


def _positions(keys: pd.Series | pa.Array | pa.ChunkedArray, universe: pd.Series) -> np.ndarray:
    """Position of each key's first equal in ``universe`` (-1: none), hashed in Arrow."""
    values = keys if isinstance(keys, pa.Array | pa.ChunkedArray) else _arrow(keys)
    found = pc.index_in(values, value_set=_arrow(universe, whole=True))
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _arrow(values: pd.Series, *, whole: bool = False) -> pa.Array | pa.ChunkedArray:
    """Text as Arrow ``large_string`` without copying pandas' own Arrow data where possible.

    Big frames hold chunked arrays; ``whole`` combines them (a value set must be one array).
    All-null or empty columns become typed text too.
    """
    array = pa.array(values, from_pandas=True)
    if not pa.types.is_large_string(array.type):
        array = array.cast(pa.large_string())
    if whole and isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array


def _duplicate_members(edges: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.Series, pd.Series]:
    """Edges inside a duplicate_link, and the hubs: requests reached by ≥ 2 claims, claims reaching ≥ 2."""
    per_request = edges.groupby("oa", sort=False)["expense"].nunique()
    per_claim = edges.groupby("expense", sort=False)["oa"].nunique()
    request_hubs = per_request[per_request >= 2]
    claim_hubs = per_claim[per_claim >= 2]
    in_dup = edges["oa"].isin(request_hubs.index).to_numpy() | edges["expense"].isin(claim_hubs.index).to_numpy()
    return (
        np.unique(edges["oa"].to_numpy()[in_dup]),
        np.unique(edges["expense"].to_numpy()[in_dup]),
        request_hubs,
        claim_hubs,
    )


def link_claims(sides: Sides) -> pd.DataFrame:
    """How OA requests and expense claims link (claimsync.rules "Linking").

    One row per request ↔ claim connection: ``request_id`` (Int64), ``claim_code``, ``link``
    (``'primary'`` by oa_request_id, ``'fallback'`` by bxdh = code, or None for a claim
    whose bxdh match is not a link because its oa_request_id names another request), and
    ``duplicate_link`` (True for every connection of a record in a duplicate_link); plus one
    row per request with no connection (claim_code <NA>) and per claim with none
    (request_id <NA>), link None, duplicate_link False. A pair to sync is a row with a link
    and no duplicate_link.
    """
    oa, expense = _unique_claims(sides)
    return _link_frame(oa, expense, _edges(oa, expense))


def _link_frame(oa: pd.DataFrame, expense: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    dup_oa, dup_expense, _, _ = _duplicate_members(edges)
    in_dup = edges["oa"].isin(dup_oa).to_numpy() | edges["expense"].isin(dup_expense).to_numpy()
    connected = pd.DataFrame(
        {
            "request_id": oa["request_id"].to_numpy()[edges["oa"].to_numpy()],
            "claim_code": expense["claim_code"].to_numpy()[edges["expense"].to_numpy()],
            "link": edges["link"].to_numpy(),
            "duplicate_link": in_dup,
        }
    )
    lone_oa = np.setdiff1d(np.arange(len(oa)), edges["oa"].to_numpy())
    lone_expense = np.setdiff1d(np.arange(len(expense)), edges["expense"].to_numpy())
    frame = pd.concat(
        [
            connected,
            pd.DataFrame({"request_id": oa["request_id"].to_numpy()[lone_oa], "link": None, "duplicate_link": False}),
            pd.DataFrame(
                {"claim_code": expense["claim_code"].to_numpy()[lone_expense], "link": None, "duplicate_link": False}
            ),
        ],
        ignore_index=True,
    )
    frame["request_id"] = frame["request_id"].astype("Int64")
    frame["claim_code"] = frame["claim_code"].astype("str")
    frame["link"] = frame["link"].astype("object").where(frame["link"].notna(), None)
    frame["duplicate_link"] = frame["duplicate_link"].astype(bool)
    return frame.loc[:, list(LINK_COLUMNS)]


def _components(n_oa: int, n_expense: int, edges: pd.DataFrame) -> np.ndarray:
    """Connected-component label of every record (OA records first, then claims)."""
    labels = np.arange(n_oa + n_expense)
    u = edges["oa"].to_numpy(dtype=np.int64)
    v = edges["expense"].to_numpy(dtype=np.int64) + n_oa
    while len(u):
        low = np.minimum(labels[u], labels[v])
        new = labels.copy()
        np.minimum.at(new, u, low)
        np.minimum.at(new, v, low)
        new = new[new]  # pointer jumping: follow labels to their own labels
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


# --- exception rows -----------------------------------------------------------------------


def _fmt(cents: pd.Series) -> pd.Series:
    """Integer cents → ``'1234.56'`` text, vectorised; <NA> → ``'?'``."""
    values = cents.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(values)
    whole = np.where(missing, 0, values).astype(np.int64)
    sign = np.where(whole < 0, "-", "")
    magnitude = np.abs(whole)
    text = (
        pd.Series(sign, dtype="str")
        + pd.Series(magnitude // 100, dtype="str")
        + "."
        + pd.Series(magnitude % 100, dtype="str").str.zfill(2)
    )
    text[missing] = "?"
    text.index = cents.index
    return text


def _text(values: pd.Series) -> pd.Series:
    return values.astype("str").fillna("?")


@dataclass(frozen=True)
class _Rows:
    """Records (or pairs) an exception can be about: positions into the OA and expense frames.

    ``oa_pos``/``expense_pos`` are None for a one-sided set; ``node`` is the record that owns
    the exception (for bucket ownership and clean-pair accounting).
    """

    oa: pd.DataFrame
    expense: pd.DataFrame
    oa_pos: np.ndarray | None
    expense_pos: np.ndarray | None
    node: np.ndarray

    def __len__(self) -> int:
        return len(self.node)

    def oa_col(self, column: str, where: np.ndarray) -> pd.Series:
        assert self.oa_pos is not None
        return self.oa[column].take(self.oa_pos[where]).reset_index(drop=True)

    def expense_col(self, column: str, where: np.ndarray) -> pd.Series:
        assert self.expense_pos is not None
        return self.expense[column].take(self.expense_pos[where]).reset_index(drop=True)

    def frame(self, where: np.ndarray) -> pd.DataFrame:
        """The descriptive columns of exceptions on the rows at ``where``."""
        n = len(where)

        def empty(dtype: Any) -> pd.Series:
            blank: pd.Series = pd.Series(pd.NA, index=range(n), dtype=dtype)
            return blank

        has_oa, has_expense = self.oa_pos is not None, self.expense_pos is not None

        def oa(column: str, dtype: Any) -> pd.Series:
            return self.oa_col(column, where).astype(dtype) if has_oa else empty(dtype)

        def expense(column: str, dtype: Any) -> pd.Series:
            return self.expense_col(column, where).astype(dtype) if has_expense else empty(dtype)

        key = "oa:" + oa("request_id", "str") if has_oa else "exp:" + expense("claim_code", "str")
        return pd.DataFrame(
            {
                "business_key": key,
                "oa_request_id": oa("request_id", "Int64") if has_oa else expense("oa_request_id", "Int64"),
                "claim_code": expense("claim_code", "str") if has_expense else oa("claim_code", "str"),
                "employee_code": oa("employee_code", "str").fillna(expense("employee_code", "str")),
                "department_code": oa("department_code", "str").fillna(expense("department_code", "str")),
                "oa_amount_cents": oa("amount_cents", "Int64"),
                "expense_amount_cents": expense("amount_cents", "Int64"),
                "currency": oa("currency", "str").fillna(expense("currency", "str")),
                "oa_state": oa("state", "str"),
                "expense_state": expense("state", "str"),
                "node": self.node[where],
            }
        )


@dataclass
class _Found:
    """Exception rows gathered rule by rule; detail text is built only for the rows found."""

    frames: list[pd.DataFrame] = field(default_factory=list)

    def add(
        self,
        code: ExceptionCode,
        rows: _Rows,
        mask: np.ndarray,
        impact: np.ndarray,
        detail: Callable[[np.ndarray], pd.Series],
    ) -> None:
        where = np.flatnonzero(np.asarray(mask, dtype=bool))
        if not len(where):
            return
        frame = rows.frame(where)
        frame["code"] = code.value
        frame["severity"] = SEVERITY[code].value
        frame["amount_impact_cents"] = np.abs(np.asarray(impact, dtype=np.int64)[where])
        frame["detail"] = detail(where).to_numpy()
        self.frames.append(frame)


def _cents(values: pd.Series) -> np.ndarray:
    """Int64 cents as int64, <NA> as 0 (an unknown amount has no impact)."""
    return values.to_numpy(dtype=np.int64, na_value=0)


def _map_small(values: pd.Series, mapping: Callable[[Any], Any], dtype: Any) -> np.ndarray:
    """Apply ``mapping`` to each distinct value once (states, currencies: few distinct values)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped = np.array([mapping(u) for u in uniques] + [mapping(None)], dtype=dtype)
    return mapped[codes]  # code -1 (missing) picks the trailing mapping(None)


def _tolerance_cents(currency: pd.Series, settings: Settings) -> np.ndarray:
    """Each row's tolerance in whole cents (an integer difference d exceeds t ⟺ d > floor(t))."""
    default = int(settings.default_tolerance * 100)
    table = {code.strip().upper(): int(value * 100) for code, value in settings.tolerances.items()}

    def cents(code: Any) -> int:
        return table.get(str(code).strip().upper(), default) if isinstance(code, str) else default

    return _map_small(currency, cents, np.int64)


def _in(states: pd.Series, allowed: frozenset[ClaimState]) -> np.ndarray:
    return states.isin([s.value for s in allowed]).to_numpy(dtype=bool)


def _is(states: pd.Series, state: ClaimState) -> np.ndarray:
    return (states == state.value).fillna(False).to_numpy(dtype=bool)


def _joined_keys(groups: pd.Series, prefix: str) -> pd.Series:
    """Per group: ``'prefix1, prefix2, …'`` naming up to _DETAIL_LIST members."""

    def name(values: pd.Series) -> str:
        listed = sorted(values.astype(str).tolist())
        head = ", ".join(prefix + v for v in listed[:_DETAIL_LIST])
        return head + (", …" if len(listed) > _DETAIL_LIST else "")

    return groups.groupby(level=0).agg(name)


# --- the rules ---------------------------------------------------------------------------

_NEEDED_COLUMNS: Final = (
    "request_id",
    "oa_request_id",
    "claim_code",
    "employee_code",
    "employee_status",
    "department_code",
    "amount_cents",
    "currency",
    "state",
    "changed_at",
    "lines_total_cents",
    "line_count",
)


@dataclass
class _Evaluation:
    exceptions: pd.DataFrame
    invoices: pd.DataFrame
    oa_claims: int
    expense_claims: int
    matched: int
    clean_matched: int


def _flags(size: int, positions: np.ndarray) -> np.ndarray:
    flags = np.zeros(size, dtype=bool)
    flags[positions] = True
    return flags


def _evaluate(sides: Sides, as_of: datetime, settings: Settings) -> _Evaluation:
    oa, expense = _unique_claims(sides)
    n_oa, n_expense = len(oa), len(expense)
    invoice_lines = _invoice_lines(sides, oa, expense)  # first: the largest transient, while little else is held
    edges = _edges(oa, expense)
    dup_oa, dup_expense, request_hubs, claim_hubs = _duplicate_members(edges)
    labels = _components(n_oa, n_expense, edges)

    oa_in_dup, expense_in_dup = _flags(n_oa, dup_oa), _flags(n_expense, dup_expense)
    linked = edges[edges["link"].notna()]
    oa_linked = _flags(n_oa, linked["oa"].to_numpy(dtype=np.int64))
    expense_linked = _flags(n_expense, linked["expense"].to_numpy(dtype=np.int64))
    pairs = linked[~oa_in_dup[linked["oa"].to_numpy()] & ~expense_in_dup[linked["expense"].to_numpy()]]
    pair_oa = pairs["oa"].to_numpy(dtype=np.int64)
    pair_expense = pairs["expense"].to_numpy(dtype=np.int64)
    oa_paired, expense_paired = _flags(n_oa, pair_oa), _flags(n_expense, pair_expense)

    cutoff = pd.Timestamp(as_of) - pd.Timedelta(settings.grace)
    oa_recent = (oa["changed_at"] > cutoff).fillna(False).to_numpy(dtype=bool)
    expense_recent = (expense["changed_at"] > cutoff).fillna(False).to_numpy(dtype=bool)

    oa_rows = _Rows(oa, expense, np.arange(n_oa), None, np.arange(n_oa))
    expense_rows = _Rows(oa, expense, None, np.arange(n_expense), np.arange(n_expense) + n_oa)
    pair_rows = _Rows(oa, expense, pair_oa, pair_expense, pair_oa)
    found = _Found()
    oa_amount, expense_amount = _cents(oa["amount_cents"]), _cents(expense["amount_cents"])

    def oa_state_text(w: np.ndarray) -> pd.Series:
        return _text(oa_rows.oa_col("state", w))

    # missing_in_expense / in_flight: unlinked OA requests that await a claim
    awaiting = ~oa_linked & ~oa_in_dup & _in(oa["state"], _AWAITING_CLAIM)
    found.add(
        ExceptionCode.MISSING_IN_EXPENSE,
        oa_rows,
        awaiting & ~oa_recent,
        oa_amount,
        lambda w: "OA request " + oa_state_text(w) + " has no expense claim linked to it",
    )
    found.add(
        ExceptionCode.IN_FLIGHT,
        oa_rows,
        awaiting & oa_recent,
        oa_amount,
        lambda w: "OA request " + oa_state_text(w) + " has no expense claim yet; it changed within the grace window",
    )

    # missing_in_oa: unlinked claims that are neither draft nor voided
    bypassed = (
        ~expense_linked
        & ~expense_in_dup
        & expense["state"].notna().to_numpy()
        & ~_in(expense["state"], frozenset({ClaimState.DRAFT, ClaimState.VOIDED}))
    )

    def bypassed_detail(w: np.ndarray) -> pd.Series:
        named = expense_rows.expense_col("oa_request_id", w)
        text = "expense claim " + _text(expense_rows.expense_col("state", w)) + " links no OA request"
        return text + ("; its oa_request_id " + _text(named) + " names no request of the workflow").where(
            named.notna(), ""
        )

    found.add(ExceptionCode.MISSING_IN_OA, expense_rows, bypassed, expense_amount, bypassed_detail)

    # pairwise rules
    oa_state = oa["state"].take(pair_oa).reset_index(drop=True)
    expense_state = expense["state"].take(pair_expense).reset_index(drop=True)
    pair_amount = np.where(
        oa["amount_cents"].notna().to_numpy()[pair_oa], oa_amount[pair_oa], expense_amount[pair_expense]
    )

    def states(w: np.ndarray) -> tuple[pd.Series, pd.Series]:
        return _text(oa_state.iloc[w].reset_index(drop=True)), _text(expense_state.iloc[w].reset_index(drop=True))

    pwa = _in(expense_state, frozenset({ClaimState.PAYING, ClaimState.PAID})) & (
        oa_state.notna().to_numpy() & ~_in(oa_state, APPROVED_OR_LATER)
    )

    def pwa_detail(w: np.ndarray) -> pd.Series:
        o, e = states(w)
        return "expense " + e + " while OA is " + o

    found.add(ExceptionCode.PAID_WITHOUT_APPROVAL, pair_rows, pwa, pair_amount, pwa_detail)

    forward = {s.value: float(order) for s, order in FORWARD_ORDER.items()}
    oa_order = _map_small(oa_state, lambda v: forward.get(v, np.nan), np.float64)
    expense_order = _map_small(expense_state, lambda v: forward.get(v, np.nan), np.float64)
    normalized_oa = oa_state.replace(ClaimState.WITHDRAWN.value, ClaimState.REJECTED.value)
    differ = (
        (normalized_oa != expense_state).fillna(False).to_numpy(dtype=bool)
        & oa_state.notna().to_numpy()
        & expense_state.notna().to_numpy()
    )
    # the differences the next sync resolves (claimsync.rules "status_mismatch")
    explained = (
        (_is(oa_state, ClaimState.APPROVED) & _is(expense_state, ClaimState.SUBMITTED))
        | (
            _in(oa_state, frozenset({ClaimState.REJECTED, ClaimState.WITHDRAWN}))
            & _is(expense_state, ClaimState.SUBMITTED)
        )
        | (_in(oa_state, APPROVED_OR_LATER) & _in(expense_state, APPROVED_OR_LATER) & (expense_order > oa_order))
    )
    status = differ & ~pwa & ~explained
    pair_recent = oa_recent[pair_oa] | expense_recent[pair_expense]

    def status_detail(w: np.ndarray) -> pd.Series:
        o, e = states(w)
        return "state: OA " + o + " ≠ expense " + e

    found.add(ExceptionCode.STATUS_MISMATCH, pair_rows, status & ~pair_recent, pair_amount, status_detail)
    found.add(
        ExceptionCode.IN_FLIGHT,
        pair_rows,
        status & pair_recent,
        pair_amount,
        lambda w: status_detail(w) + "; changed within the grace window",
    )

    # amount_mismatch
    a = oa["amount_cents"].take(pair_oa).reset_index(drop=True)
    b = expense["amount_cents"].take(pair_expense).reset_index(drop=True)
    both_amounts = a.notna().to_numpy() & b.notna().to_numpy()
    diff = np.abs(_cents(a) - _cents(b))
    oa_currency = _currency(oa["currency"]).take(pair_oa).reset_index(drop=True)
    expense_currency = _currency(expense["currency"]).take(pair_expense).reset_index(drop=True)
    currency_differs = (
        (oa_currency != expense_currency).fillna(False).to_numpy(dtype=bool)
        & oa_currency.notna().to_numpy()
        & expense_currency.notna().to_numpy()
    )
    over = diff > _tolerance_cents(oa_currency.fillna(expense_currency), settings)
    not_voided = ~_is(oa_state, ClaimState.VOIDED) & ~_is(expense_state, ClaimState.VOIDED)
    amount_mismatch = not_voided & both_amounts & (currency_differs | over)

    def amount_detail(w: np.ndarray) -> pd.Series:
        money = ("bxje " + _fmt(a.iloc[w]) + " ≠ sum_amount " + _fmt(b.iloc[w])).reset_index(drop=True)
        currencies = (
            "bz " + _text(oa_currency.iloc[w]) + " ≠ currency " + _text(expense_currency.iloc[w])
        ).reset_index(drop=True)
        return currencies.where(currency_differs[w], money)

    impact = np.where(currency_differs, np.maximum(_cents(a), _cents(b)), diff)
    found.add(ExceptionCode.AMOUNT_MISMATCH, pair_rows, amount_mismatch, impact, amount_detail)

    # lines_total_mismatch: per side, every claim that is not voided
    for frame, rows, header in ((oa, oa_rows, "bxje"), (expense, expense_rows, "sum_amount")):
        total, lines = frame["amount_cents"], frame["lines_total_cents"]
        gap = np.abs(_cents(total) - _cents(lines))
        mismatch = (
            total.notna().to_numpy()
            & lines.notna().to_numpy()
            & ~_is(frame["state"], ClaimState.VOIDED)
            & (gap > _tolerance_cents(frame["currency"], settings))
        )

        def lines_detail(w: np.ndarray, frame: pd.DataFrame = frame, header: str = header) -> pd.Series:
            part = frame.iloc[w].reset_index(drop=True)
            return (
                header
                + " "
                + _fmt(part["amount_cents"])
                + " ≠ lines total "
                + _fmt(part["lines_total_cents"])
                + " ("
                + part["line_count"].astype("str")
                + " lines)"
            )

        found.add(ExceptionCode.LINES_TOTAL_MISMATCH, rows, mismatch, gap, lines_detail)

    _employee_rules(
        found,
        oa=oa,
        expense=expense,
        oa_rows=oa_rows,
        expense_rows=expense_rows,
        pair_rows=pair_rows,
        oa_paired=oa_paired,
        expense_paired=expense_paired,
        pair_amount=pair_amount,
    )
    _duplicate_link_rules(
        found,
        oa=oa,
        expense=expense,
        edges=edges,
        request_hubs=request_hubs,
        claim_hubs=claim_hubs,
        oa_rows=oa_rows,
        expense_rows=expense_rows,
    )

    exceptions = _frame(found.frames)

    # bucket ownership: a link group is reported by the lowest bucket whose window selected a record of it
    owned = np.ones(n_oa + n_expense, dtype=bool)
    scope = sides.scope
    if scope is not None and scope.bucket is not None:
        record_bucket = np.concatenate(
            [
                scope.oa_buckets.reindex(oa["request_id"].to_numpy()).to_numpy(dtype=np.float64, na_value=np.inf),
                scope.expense_buckets.reindex(expense["claim_code"].to_numpy()).to_numpy(
                    dtype=np.float64, na_value=np.inf
                ),
            ]
        )
        owner = np.full(n_oa + n_expense, np.inf)
        np.minimum.at(owner, labels, record_bucket)
        owned = owner[labels] == scope.bucket[0]
    exceptions = exceptions[owned[exceptions["node"].to_numpy(dtype=np.int64)]]

    # a pair is clean when no exception names either of its records
    flagged = _flags(n_oa + n_expense, exceptions["node"].to_numpy(dtype=np.int64))
    clean = ~flagged[pair_oa] & ~flagged[pair_expense + n_oa]
    pair_owned = owned[pair_oa]
    invoices = _invoice_occurrences(
        invoice_lines,
        oa=oa,
        expense=expense,
        labels=labels,
        owned=owned,
        pair_oa=pair_oa,
        pair_expense=pair_expense,
        clean=clean,
        repeated_only=scope is None or scope.bucket is None,
    )
    return _Evaluation(
        exceptions=exceptions.drop(columns="node"),
        invoices=invoices,
        oa_claims=int(owned[:n_oa].sum()),
        expense_claims=int(owned[n_oa:].sum()),
        matched=int(pair_owned.sum()),
        clean_matched=int((pair_owned & clean).sum()),
    )


def _currency(values: pd.Series) -> pd.Series:
    return values.astype("str").str.strip().str.upper()


def _employee_rules(
    found: _Found,
    *,
    oa: pd.DataFrame,
    expense: pd.DataFrame,
    oa_rows: _Rows,
    expense_rows: _Rows,
    pair_rows: _Rows,
    oa_paired: np.ndarray,
    expense_paired: np.ndarray,
    pair_amount: np.ndarray,
) -> None:
    """employee_mismatch: one row per claim key, naming every reason that applies."""
    oa_alive = ~_is(oa["state"], ClaimState.VOIDED)
    expense_alive = ~_is(expense["state"], ClaimState.VOIDED)
    oa_code, expense_code = oa["employee_code"], expense["employee_code"]
    oa_unknown = oa_alive & oa_code.isna().to_numpy()
    oa_inactive = (
        oa_alive
        & _in(oa["state"], _OPEN)
        & (oa["employee_status"] > 3).fillna(False).to_numpy(dtype=bool)
        & oa_code.notna().to_numpy()
    )
    expense_unknown = expense_alive & expense_code.isna().to_numpy()
    assert pair_rows.oa_pos is not None
    assert pair_rows.expense_pos is not None
    p_oa, p_expense = pair_rows.oa_pos, pair_rows.expense_pos
    p_oa_code = oa_code.take(p_oa).reset_index(drop=True)
    p_expense_code = expense_code.take(p_expense).reset_index(drop=True)
    claimant_differs = (
        oa_alive[p_oa]
        & expense_alive[p_expense]
        & p_oa_code.notna().to_numpy()
        & p_expense_code.notna().to_numpy()
        & (p_oa_code != p_expense_code).fillna(False).to_numpy(dtype=bool)
    )

    def oa_reasons(positions: np.ndarray) -> pd.Series:
        part = oa.iloc[positions].reset_index(drop=True)
        unknown = pd.Series(np.where(oa_unknown[positions], "OA claimant unknown", ""), dtype="str")
        inactive = (
            "OA claimant " + _text(part["employee_code"]) + " inactive (status " + _text(part["employee_status"]) + ")"
        ).where(oa_inactive[positions], "")
        return _join_reasons([unknown, inactive])

    def expense_reasons(positions: np.ndarray) -> pd.Series:
        return pd.Series(np.where(expense_unknown[positions], "expense submitter unknown", ""), dtype="str")

    def pair_detail(w: np.ndarray) -> pd.Series:
        differs = (
            "claimant "
            + _text(p_oa_code.iloc[w].reset_index(drop=True))
            + " (OA) ≠ "
            + _text(p_expense_code.iloc[w].reset_index(drop=True))
            + " (expense)"
        ).where(claimant_differs[w], "")
        return _join_reasons([oa_reasons(p_oa[w]), differs, expense_reasons(p_expense[w])])

    pair_mask = claimant_differs | oa_unknown[p_oa] | oa_inactive[p_oa] | expense_unknown[p_expense]
    found.add(ExceptionCode.EMPLOYEE_MISMATCH, pair_rows, pair_mask, pair_amount, pair_detail)
    found.add(
        ExceptionCode.EMPLOYEE_MISMATCH,
        oa_rows,
        ~oa_paired & (oa_unknown | oa_inactive),
        _cents(oa["amount_cents"]),
        oa_reasons,
    )
    found.add(
        ExceptionCode.EMPLOYEE_MISMATCH,
        expense_rows,
        ~expense_paired & expense_unknown,
        _cents(expense["amount_cents"]),
        expense_reasons,
    )


def _duplicate_link_rules(
    found: _Found,
    *,
    oa: pd.DataFrame,
    expense: pd.DataFrame,
    edges: pd.DataFrame,
    request_hubs: pd.Series,
    claim_hubs: pd.Series,
    oa_rows: _Rows,
    expense_rows: _Rows,
) -> None:
    """duplicate_link: a request reached by ≥ 2 claims (key oa:), a claim reaching ≥ 2 requests (key exp:)."""
    if len(request_hubs):
        reach = edges[edges["oa"].isin(request_hubs.index)]
        request_names = _joined_keys(
            pd.Series(expense["claim_code"].to_numpy()[reach["expense"].to_numpy()], index=reach["oa"].to_numpy()), ""
        )

        def request_detail(w: np.ndarray) -> pd.Series:
            counts = request_hubs.reindex(w).astype("str").to_numpy()
            return pd.Series("OA request reached by " + counts + " claims: " + request_names.reindex(w).to_numpy())

        found.add(
            ExceptionCode.DUPLICATE_LINK,
            oa_rows,
            _flags(len(oa), request_hubs.index.to_numpy(dtype=np.int64)),
            _cents(oa["amount_cents"]),
            request_detail,
        )
    if len(claim_hubs):
        reach = edges[edges["expense"].isin(claim_hubs.index)]
        claim_names = _joined_keys(
            pd.Series(oa["request_id"].to_numpy()[reach["oa"].to_numpy()], index=reach["expense"].to_numpy()), ""
        )

        def claim_detail(w: np.ndarray) -> pd.Series:
            counts = claim_hubs.reindex(w).astype("str").to_numpy()
            return pd.Series("claim reaches " + counts + " OA requests: " + claim_names.reindex(w).to_numpy())

        found.add(
            ExceptionCode.DUPLICATE_LINK,
            expense_rows,
            _flags(len(expense), claim_hubs.index.to_numpy(dtype=np.int64)),
            _cents(expense["amount_cents"]),
            claim_detail,
        )


def _join_reasons(reasons: list[pd.Series]) -> pd.Series:
    joined = reasons[0].reset_index(drop=True)
    for following in reasons[1:]:
        reason = following.reset_index(drop=True)
        both = (joined != "").to_numpy() & (reason != "").to_numpy()
        joined = joined + pd.Series(np.where(both, "; ", ""), dtype="str") + reason
    return joined


def _frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return _empty_exceptions().assign(node=pd.Series([], dtype=np.int64))
    merged = pd.concat(frames, ignore_index=True)
    return merged.loc[:, [*EXCEPTION_COLUMNS, "node"]]


def _empty_exceptions() -> pd.DataFrame:
    dtypes = {
        "oa_request_id": "Int64",
        "oa_amount_cents": "Int64",
        "expense_amount_cents": "Int64",
        "amount_impact_cents": "int64",
    }
    return pd.DataFrame({c: pd.Series([], dtype=dtypes.get(c, "str")) for c in EXCEPTION_COLUMNS})


# --- duplicate_invoice --------------------------------------------------------------------

_NO_REQUEST: Final = np.iinfo(np.int64).max
_INVOICE_COLUMNS: Final = (
    "invoice_code",
    "invoice_number",
    "unit_request",
    "unit_code",
    "amount_cents",
    "currency",
    "clean_pair",
)


@dataclass(frozen=True)
class _InvoiceLines:
    """The lines with an invoice number of live records, reduced to what duplicate_invoice needs.

    Taken before the reconcile builds its working set (while that is small), so that the
    text of the invoices is hashed only once and only integer arrays are kept.
    """

    number_text: pa.ChunkedArray  # both sides' invoice numbers, OA lines first (views of the frames)
    code_text: pa.ChunkedArray
    selected: np.ndarray  # position of each line in number_text / code_text
    node: np.ndarray  # its record: OA claims 0…n_oa-1, then expense claims
    amount: np.ndarray  # cents
    invoice: np.ndarray  # equal ids: equal claimsync.rules.invoice_key
    code_kept: np.ndarray  # whether the invoice code is part of the key

    def where(self, keep: np.ndarray) -> _InvoiceLines:
        return replace(
            self,
            selected=self.selected[keep],
            node=self.node[keep],
            amount=self.amount[keep],
            invoice=self.invoice[keep],
            code_kept=self.code_kept[keep],
        )


def _invoice_lines(sides: Sides, oa: pd.DataFrame, expense: pd.DataFrame) -> _InvoiceLines | None:
    """The lines of live records (claimsync.rules: a voided or deleted record has no invoices)."""
    n_oa = len(oa)
    oa_ref = pd.Index(oa["request_id"].to_numpy(dtype=np.int64))
    present = []
    for lines, frame, offset in ((sides.oa_lines, oa, 0), (sides.expense_lines, expense, n_oa)):
        if lines.empty:
            continue
        with_number = np.flatnonzero(lines["invoice_number"].notna().to_numpy())
        refs = _arrow(lines["claim_ref"]).take(pa.array(with_number))
        if offset == 0:  # OA lines name their request by its id (as text)
            record = oa_ref.get_indexer(pc.cast(refs, pa.int64(), safe=False).to_numpy(zero_copy_only=False))
        else:
            record = _positions(refs, expense["claim_code"])
        del refs
        keep = record >= 0
        record = record[keep]
        live = ~_in(frame["state"], _DEAD)[record]
        present.append((lines, with_number[keep][live], _small(record[live] + offset)))
        del with_number, record, keep, live
    if not present:
        return None
    starts = np.cumsum([0] + [len(lines) for lines, _, _ in present[:-1]])
    selected = _small(np.concatenate([rows + start for (_, rows, _), start in zip(present, starts, strict=True)]))
    node = np.concatenate([n for _, _, n in present])
    amount = np.concatenate([_cents(lines["amount_cents"])[rows] for lines, rows, _ in present])
    number_text = pa.chunked_array(_chunks(_arrow(lines["invoice_number"]) for lines, _, _ in present))
    code_text = pa.chunked_array(_chunks(_arrow(lines["invoice_code"]) for lines, _, _ in present))
    del present
    invoice, code_kept = _invoice_ids(number_text, code_text, selected)
    return _InvoiceLines(number_text, code_text, selected, node, amount, invoice, code_kept)


def _small(positions: np.ndarray) -> np.ndarray:
    """Positions as int32 when they fit (halves the per-line arrays)."""
    if len(positions) and int(positions.max()) > np.iinfo(np.int32).max:
        return positions
    return positions.astype(np.int32, copy=False)


def _invoice_occurrences(
    lines: _InvoiceLines | None,
    *,
    oa: pd.DataFrame,
    expense: pd.DataFrame,
    labels: np.ndarray,
    owned: np.ndarray,
    pair_oa: np.ndarray,
    pair_expense: np.ndarray,
    clean: np.ndarray,
    repeated_only: bool,
) -> pd.DataFrame:
    """One row per (invoice, unit) on the live records of the owned link groups.

    ``repeated_only`` keeps only invoices already on two units here: enough when these
    Sides hold everything (no other bucket can add a unit).

    A unit is a link group (an OA request and its linked claim count as one claim), named
    by its smallest request id, or its smallest claim code when it has no OA request. The
    invoice is ``(invoice_code, invoice_number)`` with the code blanked for a 20-digit 全电
    number or when absent (claimsync.rules.invoice_key).
    """
    if lines is not None and not owned.all():
        lines = lines.where(owned[lines.node])
    if lines is None or not len(lines.node):
        return _invoice_frame(pd.DataFrame({c: [] for c in _INVOICE_COLUMNS}))
    n_oa = len(oa)
    n = len(labels)
    request_ids = np.full(n, _NO_REQUEST, dtype=np.int64)
    request_ids[:n_oa] = oa["request_id"].to_numpy(dtype=np.int64)
    unit_request = np.full(n, _NO_REQUEST, dtype=np.int64)
    np.minimum.at(unit_request, labels, request_ids)
    del request_ids
    clean_pair = np.zeros(n, dtype=bool)
    clean_pair[pair_oa[clean]] = True
    clean_pair[pair_expense[clean] + n_oa] = True

    label = labels[lines.node]
    unit, group, claim_codes = _units(unit_request, label, expense, labels[n_oa:])
    chosen, amount, clean = _collapse(
        lines.invoice, unit, lines.amount, clean_pair[lines.node], repeated_only=repeated_only
    )
    del unit
    currency = pd.concat([oa["currency"], expense["currency"]], ignore_index=True).astype("str")
    chosen_lines = pa.array(lines.selected[chosen])
    frame = pd.DataFrame(
        {
            "invoice_code": _texts(lines.code_text.take(chosen_lines)).fillna("").where(lines.code_kept[chosen], ""),
            "invoice_number": _texts(lines.number_text.take(chosen_lines)),
            "unit_request": unit_request[label[chosen]],
            "unit_code": claim_codes[group[chosen]],
            "amount_cents": amount,
            "currency": currency.take(lines.node[chosen]).to_numpy(),
            "clean_pair": clean,
        }
    )
    return _invoice_frame(frame)


def _texts(values: pa.ChunkedArray) -> pd.Series:
    """Arrow text as a pandas ``str`` Series, without a Python object per value."""
    texts: pd.Series = values.to_pandas().astype("str")
    return texts


def _invoice_ids(
    number_text: pa.ChunkedArray, code_text: pa.ChunkedArray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Invoice ids of the lines at ``rows`` (equal ids: equal claimsync.rules.invoice_key), and
    whether each line's invoice code is part of its key.

    A 20-digit 全电 number stands alone, as does one without a code. Both texts are grouped as
    integer ids by Arrow's dictionary encoding (hashing in C++: about 0.6 s for five million
    invoice numbers at 1M claims); only small arrays are kept.
    """
    number_id, number_count = _text_ids(number_text)
    number_id = number_id[rows]
    code_id, _ = _text_ids(code_text)
    code_id = code_id[rows]
    code_kept = (code_id >= 0) & ~_length_is(number_text, 20)[rows] & ~_length_is(code_text, 0)[rows]
    key = np.where(code_kept, code_id.astype(np.int64) + 1, 0) * (number_count + 1) + number_id
    del code_id, number_id
    invoice, _ = pd.factorize(key)
    return _small(invoice), code_kept


def _length_is(text: pa.ChunkedArray, length: int) -> np.ndarray:
    """Whether each value has ``length`` characters (False for null)."""
    same = pc.equal(pc.utf8_length(text), length).fill_null(False)
    return (
        np.concatenate([c.to_numpy(zero_copy_only=False) for c in same.chunks])
        if same.num_chunks
        else np.zeros(0, bool)
    )


def _text_ids(text: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """Equal-text ids (int32, -1 for null) of every value, and the id count.

    The chunks are combined first: unifying per-chunk dictionaries costs quadratic time in
    the number of chunks (20 s instead of 1 s for the invoice numbers at 1M claims).
    """
    encoded = pc.dictionary_encode(text.combine_chunks())
    count = len(encoded.dictionary)
    ids = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    return ids, count


def _units(
    unit_request: np.ndarray, label: np.ndarray, expense: pd.DataFrame, expense_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense unit numbers of the lines of link groups ``label``; the group of each line, and the
    claim code naming each group without an OA request ('' for the others).

    Worked out per link group, then spread to the lines: the claim codes are read only for the
    few expense claims without an OA request.
    """
    group, groups = pd.factorize(label)  # in order of first appearance: units numbered as the lines run
    group_request = unit_request[groups]
    claim_only = group_request == _NO_REQUEST
    names = np.full(len(groups), "", dtype=object)
    if not claim_only.any():
        unit, _ = pd.factorize(group_request)
        return _small(unit)[group], _small(group), names
    # groups without an OA request are named by their smallest claim code
    rows = np.flatnonzero(np.isin(expense_labels, groups[claim_only]))
    codes = pd.Series(expense["claim_code"].take(rows).to_numpy(), index=expense_labels[rows])
    names[claim_only] = codes.groupby(level=0).min().reindex(groups[claim_only]).to_numpy()
    code_number, _ = pd.factorize(names[claim_only])
    key = group_request.copy()
    key[claim_only] = -1 - code_number
    unit, _ = pd.factorize(key)
    return _small(unit)[group], _small(group), names


def _collapse(
    invoice: np.ndarray, unit: np.ndarray, amount: np.ndarray, clean: np.ndarray, *, repeated_only: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows to keep (one per invoice and unit), each unit's largest amount, and its clean flag.

    With ``repeated_only``, only invoices on two or more units are kept.
    """
    if not len(invoice):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    pair = invoice.astype(np.int64) * (int(unit.max()) + 1) + unit
    order = _small(np.argsort(pair, kind="stable"))
    pair = pair[order]
    starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
    del pair
    chosen = order[starts]
    largest = np.maximum.reduceat(amount[order], starts)
    all_clean = np.minimum.reduceat(clean[order].astype(np.int8), starts).astype(bool)
    if repeated_only:
        repeated = np.bincount(invoice[chosen])[invoice[chosen]] >= 2
        chosen, largest, all_clean = chosen[repeated], largest[repeated], all_clean[repeated]
    return chosen, largest, all_clean


def _invoice_frame(frame: pd.DataFrame) -> pd.DataFrame:
    typed = frame.astype(
        {
            "invoice_code": "str",
            "invoice_number": "str",
            "unit_request": np.int64,
            "unit_code": "str",
            "amount_cents": np.int64,
            "currency": "str",
            "clean_pair": bool,
        }
    )
    return typed.loc[:, list(_INVOICE_COLUMNS)]


def _chunks(arrays: Iterable[pa.Array | pa.ChunkedArray]) -> list[pa.Array]:
    out: list[pa.Array] = []
    for array in arrays:
        out.extend(array.chunks if isinstance(array, pa.ChunkedArray) else [array])
    return out


def _per_unit(occurrences: pd.DataFrame, *, repeated_only: bool = False) -> pd.DataFrame:
    """Merge buckets' occurrences: one row per (invoice, unit), largest amount, clean if all rows are."""
    frame = _invoice_frame(occurrences).reset_index(drop=True)
    if frame.empty:
        return frame
    number, _ = pd.factorize(frame["invoice_number"])
    code, _ = pd.factorize(frame["invoice_code"])
    invoice, _ = pd.factorize(code.astype(np.int64) * (int(number.max()) + 1) + number)
    unit_request = frame["unit_request"].to_numpy(dtype=np.int64)
    claim_only = unit_request == _NO_REQUEST
    key = unit_request.copy()
    if claim_only.any():
        code_number, _ = pd.factorize(frame["unit_code"].to_numpy()[claim_only])
        key[claim_only] = -1 - code_number
    unit, _ = pd.factorize(key)
    chosen, amount, clean = _collapse(
        invoice,
        unit,
        frame["amount_cents"].to_numpy(dtype=np.int64),
        frame["clean_pair"].to_numpy(dtype=bool),
        repeated_only=repeated_only,
    )
    collapsed = frame.take(chosen).reset_index(drop=True)
    collapsed["amount_cents"] = amount
    collapsed["clean_pair"] = clean
    return collapsed


def _duplicate_invoices(occurrences: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """duplicate_invoice rows over all occurrences, and how many clean pairs they spoil."""
    repeated = _per_unit(occurrences, repeated_only=True)
    if repeated.empty:
        return _empty_exceptions(), 0
    repeated["unit"] = ("oa:" + repeated["unit_request"].astype("str")).where(
        repeated["unit_request"] != _NO_REQUEST, "exp:" + repeated["unit_code"]
    )
    repeated["key"] = ("inv:" + repeated["invoice_number"]).where(
        repeated["invoice_code"] == "", "inv:" + repeated["invoice_code"] + ":" + repeated["invoice_number"]
    )
    spoiled = int(repeated.loc[repeated["clean_pair"], "unit"].nunique())
    repeated = repeated.sort_values(["key", "unit"], kind="stable")
    grouped = repeated.groupby("key", sort=True)
    amounts = grouped["amount_cents"]
    count = grouped.size()
    named = repeated[grouped.cumcount().to_numpy() < _DETAIL_LIST].groupby("key", sort=True)["unit"].agg(", ".join)
    more: pd.Series = pd.Series(np.where(count.to_numpy() > _DETAIL_LIST, ", …", ""), index=count.index, dtype="str")
    rows = _empty_exceptions().reindex(range(len(count)))
    rows["code"] = ExceptionCode.DUPLICATE_INVOICE.value
    rows["severity"] = SEVERITY[ExceptionCode.DUPLICATE_INVOICE].value
    rows["business_key"] = count.index.astype("str")
    rows["amount_impact_cents"] = (amounts.sum() - amounts.max()).to_numpy(dtype=np.int64)
    rows["currency"] = grouped["currency"].min().to_numpy()
    rows["detail"] = ("invoice on " + count.astype("str") + " live claims: " + named + more).to_numpy()
    return rows.loc[:, list(EXCEPTION_COLUMNS)], spoiled


# --- entry points -------------------------------------------------------------------------


def reconcile(sides: Sides, *, as_of: datetime, settings: Settings) -> ReconResult:
    """Apply claimsync.rules to ``sides`` at ``as_of`` (tz-aware); see the module docstring."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be tz-aware")
    evaluation = _evaluate(sides, as_of, settings)
    result = ReconResult(
        as_of=as_of,
        exceptions=_sorted(evaluation.exceptions),
        oa_claims=evaluation.oa_claims,
        expense_claims=evaluation.expense_claims,
        matched=evaluation.matched,
        clean_matched=evaluation.clean_matched,
        pending_invoices=evaluation.invoices,
    )
    if sides.scope is not None and sides.scope.bucket is not None:
        return result
    return merge_results([result])


def merge_results(results: Sequence[ReconResult]) -> ReconResult:
    """Combine bucket results into one; decides duplicate_invoice over all of them."""
    if not results:
        raise ValueError("merge_results needs at least one result")
    pending = [r.pending_invoices for r in results if r.pending_invoices is not None and len(r.pending_invoices)]
    invoices = pd.concat(pending, ignore_index=True) if pending else None
    duplicate, spoiled = _duplicate_invoices(invoices) if invoices is not None else (_empty_exceptions(), 0)
    exceptions = pd.concat([r.exceptions for r in results] + [duplicate], ignore_index=True)
    merged = ReconResult(
        as_of=results[0].as_of,
        exceptions=_sorted(exceptions.drop_duplicates(["code", "business_key"], keep="first")),
        oa_claims=sum(r.oa_claims for r in results),
        expense_claims=sum(r.expense_claims for r in results),
        matched=sum(r.matched for r in results),
        clean_matched=sum(r.clean_matched for r in results) - spoiled,
        pending_invoices=None,
    )
    return replace(merged)


def _sorted(exceptions: pd.DataFrame) -> pd.DataFrame:
    frame = exceptions.sort_values(["code", "business_key"], kind="stable").reset_index(drop=True)
    frame["amount_impact_cents"] = frame["amount_impact_cents"].astype(np.int64)
    return frame.loc[:, list(EXCEPTION_COLUMNS)]
