"""Plan the write-back: from both systems' canonical records to :class:`~claimsync.writeback.PlannedWrite`.

Each rule is one row of SOURCE_SYSTEMS.md "Who owns what" (default direction):

**org** (OA → expense), per department / employee code:
- a department or an active employee (OA status ≤ 3) missing in expense is created;
- an existing one gets OA's name, parent / department, active flag (and for staff email,
  cellphone) where they differ. Expense-only departments and staff are left alone.

**claims**, per linked pair (claimsync.rules "Linking"; pairs in a duplicate_link are left
for a person):
- *new request*: an OA request submitted or approved, with no claim and no ``bxdh`` yet,
  becomes a new expense ``flow`` with its lines and ``oa_request_id``; OA ``bxdh`` then gets
  the new code (that write depends on the claim being created). A request whose ``bxdh``
  already names a code had a claim once: it is a break for a person, not a new claim.
- *claim code*: ``settings.claim_code_prefix`` + ``yy`` (the request's creation year in
  settings.timezone) + the OA requestid zero-padded to 9 digits, e.g. ``B26000200123``.
  Derived, not allocated, so every rerun plans the same code for the same request and no
  sequence has to be reserved anywhere; nine digits keep claimsync's codes apart from the
  expense system's own (合思 numbers its documents ``B26000123``: six digits). Should a
  code still be taken, the insert becomes a write_conflict, never an overwrite.
- *approval decision*: OA approved & expense submitted → expense ``paying`` (canonical
  approved) with ``approve_time``; OA rejected/withdrawn & expense submitted → ``rejected``.
- *payment*: expense ahead of OA in approved..paid → OA ``fkzt`` 支付中 / 已支付 with
  ``fkrq`` (payment date) and ``pzh`` (voucher); an approved claim whose payment failed →
  支付失败. A linked OA request without ``bxdh`` gets the claim's code.

Nothing moves backwards on the forward lifecycle (rules.FORWARD_ORDER) and no field the
other side owns is written. Before-images are the values as extracted (blank OA text
counts as null), so the compare-and-set in claimsync.writeback catches any change a
person made in between. Money goes into images as Decimal, times tz-aware.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final

from claimsync.config import Settings
from claimsync.model import cents_to_decimal
from claimsync.rules import FKZT_FAILED, FKZT_PAID, FKZT_PAYING, FORWARD_ORDER, ClaimState
from claimsync.writeback import PlannedWrite

if TYPE_CHECKING:
    import pandas as pd

    from claimsync.canonical import Sides

PARTS: Final = ("org", "claims")
CLAIM_CODE_DIGITS: Final = 9
_RANK: Final = {state.value: rank for state, rank in FORWARD_ORDER.items()}
_FKZT_FOR: Final = {ClaimState.PAYING.value: FKZT_PAYING, ClaimState.PAID.value: FKZT_PAID}


@dataclass(frozen=True)
class PlanDetails:
    """Values a write needs that the canonical model does not carry, read by key (claimsync.sync).

    ``request_titles`` / ``request_submitted``: OA requestname and first submission time of the
    requests that get a new claim; ``line_remarks``: (requestid, line seq) → 说明.
    ``oa_phones`` / ``expense_phones``: mobile numbers by employee code (personal data, never
    shown unmasked); None when not read, and then cellphone is not synced.
    """

    request_titles: Mapping[int, str] = field(default_factory=dict)
    request_submitted: Mapping[int, datetime] = field(default_factory=dict)
    line_remarks: Mapping[tuple[int, int], str] = field(default_factory=dict)
    oa_phones: Mapping[str, str | None] | None = None
    expense_phones: Mapping[str, str | None] | None = None


def claim_code(prefix: str, request_id: int, created_at: datetime | None, tz_year: int) -> str:
    """The expense claim code claimsync gives OA request ``request_id``: stable across reruns."""
    year = created_at.year if created_at is not None else tz_year
    return f"{prefix}{year % 100:02d}{request_id:0{CLAIM_CODE_DIGITS}d}"


def flow_id(request_id: int) -> str:
    """The system id of the claim claimsync creates for an OA request (never a 合思 id: prefix CS)."""
    return f"CS{request_id}"


def org_id(kind: str, code: str) -> str:
    """A stable system id for a department ('D') or staff ('S') claimsync creates: CS + kind + hash of the code."""
    return f"CS{kind}" + hashlib.sha256(code.encode()).hexdigest()[:24]


# --- values -----------------------------------------------------------------------------------


def _py(value: Any) -> Any:
    """A frame value as a plain Python value for an image: NA → None, Timestamp → datetime."""
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return value.item()
    return value


def _blank_none(value: Any) -> Any:
    """OA text as claimsync reads it: surrounding blanks dropped, empty = null."""
    value = _py(value)
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _times(values: pd.Series) -> list[datetime | None]:
    """Tz-aware timestamps as datetimes (null → None), without boxing each into a pandas Timestamp."""
    import pandas as pd

    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        return [None if v is None or v is pd.NaT else v for v in _column(values.to_frame("v"), "v")]
    tz = values.dt.tz
    micros = values.dt.as_unit("us").array.asi8.tolist()
    missing = values.isna().to_numpy().tolist()
    return [
        None if gone else datetime.fromtimestamp(us // 1_000_000, tz).replace(microsecond=us % 1_000_000)
        for us, gone in zip(micros, missing, strict=True)
    ]


def _column(frame: pd.DataFrame, name: str) -> list[Any]:
    """A column as plain Python values, null as None (vectorised: no per-value conversion).

    Timestamps stay pandas Timestamps (a datetime: images take them as they are).
    """
    if name not in frame.columns:
        return [None] * len(frame)
    values = frame[name]
    return values.astype(object).where(values.notna(), None).tolist()


def _differs(a: pd.Series, b: pd.Series) -> pd.Series:
    """Element-wise 'not equal', with null equal to null (pandas' == says <NA> there)."""
    both_null = a.isna() & b.isna()
    equal = (a == b).fillna(False).astype(bool)
    return ~(equal | both_null)


def _iso_date(value: Any) -> str | None:
    value = _py(value)
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# --- org: OA → expense departments and staff -------------------------------------------------


def _depth_order(codes: list[str], parents: list[str | None]) -> list[int]:
    """Positions of ``codes`` ordered parents first (depth within this set), then by code."""
    parent_of = dict(zip(codes, parents, strict=True))

    def depth(code: str) -> int:
        seen = {code}
        d = 0
        parent = parent_of.get(code)
        while parent is not None and parent in parent_of and parent not in seen:
            seen.add(parent)
            d += 1
            parent = parent_of.get(parent)
        return d

    return sorted(range(len(codes)), key=lambda i: (depth(codes[i]), codes[i]))


def _field_updates(
    merged: pd.DataFrame, fields: Sequence[tuple[str, str, str]], key: str
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """For rows present on both sides: (key, before, after) of the fields that differ.

    ``fields``: (image field, OA column, expense column) of ``merged``.
    """
    import numpy as np

    if merged.empty:
        return []
    masks = {name: _differs(merged[oa_col], merged[exp_col]).to_numpy() for name, oa_col, exp_col in fields}
    any_change = np.logical_or.reduce(list(masks.values())) if masks else np.zeros(len(merged), dtype=bool)
    rows = merged.loc[any_change]
    if rows.empty:
        return []
    keys = _column(rows, key)
    changed = {name: masks[name][any_change] for name, _, _ in fields}
    values = {name: (_column(rows, oa_col), _column(rows, exp_col)) for name, oa_col, exp_col in fields}
    out = []
    for i, record_key in enumerate(keys):
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for name, _, _ in fields:
            if changed[name][i]:
                after[name] = values[name][0][i]
                before[name] = values[name][1][i]
        out.append((str(record_key), before, after))
    return out


def plan_org_writes(sides: Sides, settings: Settings, details: PlanDetails | None = None) -> list[PlannedWrite]:
    """Departments and staff from OA to expense (see the module docstring)."""
    details = details or PlanDetails()
    writes: list[PlannedWrite] = []

    # Departments.
    oa = sides.oa_departments.dropna(subset=["department_code"]).drop_duplicates("department_code")
    exp = sides.expense_departments.dropna(subset=["department_code"]).drop_duplicates("department_code")
    merged = oa.merge(exp, on="department_code", how="left", suffixes=("_oa", "_ex"), indicator=True)
    new = merged[(merged["_merge"] == "left_only") & merged["active_oa"].fillna(False).astype(bool)]
    codes = [str(c) for c in new["department_code"].tolist()]
    names, parents = _column(new, "name_oa"), _column(new, "parent_code_oa")
    for i in _depth_order(codes, parents):
        writes.append(
            PlannedWrite(
                "expense",
                "department",
                "insert",
                codes[i],
                None,
                {"id": org_id("D", codes[i]), "code": codes[i], "name": names[i], "parent_code": parents[i],
                 "active": True},
                f"OA department {codes[i]} created in expense",
            )
        )  # fmt: skip
    both = merged[merged["_merge"] == "both"]
    fields = [("name", "name_oa", "name_ex"), ("parent_code", "parent_code_oa", "parent_code_ex"),
              ("active", "active_oa", "active_ex")]  # fmt: skip
    for key, before, after in _field_updates(both, fields, "department_code"):
        writes.append(
            PlannedWrite(
                "expense", "department", "update", key, before, after,
                f"OA department {key}: {', '.join(sorted(after))} from OA",
            )
        )  # fmt: skip

    # Staff.
    oa_staff = sides.oa_employees.dropna(subset=["employee_code"]).drop_duplicates("employee_code").copy()
    exp_staff = sides.expense_employees.dropna(subset=["employee_code"]).drop_duplicates("employee_code").copy()
    oa_phones, exp_phones = details.oa_phones, details.expense_phones
    sync_phones = oa_phones is not None and exp_phones is not None
    if oa_phones is not None and exp_phones is not None:
        oa_staff["cellphone"] = [_blank_none(oa_phones.get(c)) for c in oa_staff["employee_code"].tolist()]
        exp_staff["cellphone"] = [exp_phones.get(c) for c in exp_staff["employee_code"].tolist()]
    merged = oa_staff.merge(exp_staff, on="employee_code", how="left", suffixes=("_oa", "_ex"), indicator=True)
    new = merged[(merged["_merge"] == "left_only") & merged["active_oa"].fillna(False).astype(bool)]
    new = new.sort_values("employee_code")
    phones = _column(new, "cellphone_oa")
    for code, name, dept, email, phone in zip(
        _column(new, "employee_code"), _column(new, "name_oa"), _column(new, "department_code_oa"),
        _column(new, "email_oa"), phones, strict=True,
    ):  # fmt: skip
        after = {"id": org_id("S", code), "code": code, "name": name, "department_code": dept, "email": email,
                 "active": True}  # fmt: skip
        if sync_phones:
            after["cellphone"] = phone
        writes.append(PlannedWrite("expense", "staff", "insert", code, None, after, f"OA employee {code} joined"))
    both = merged[merged["_merge"] == "both"].copy()
    both["active_oa"] = both["active_oa"].astype("boolean")
    fields = [("name", "name_oa", "name_ex"), ("department_code", "department_code_oa", "department_code_ex"),
              ("email", "email_oa", "email_ex"), ("active", "active_oa", "active_ex")]  # fmt: skip
    if sync_phones:
        fields.append(("cellphone", "cellphone_oa", "cellphone_ex"))
    # An employee whose OA status is unknown keeps the expense active flag (no write on a guess).
    both.loc[both["active_oa"].isna(), "active_oa"] = both.loc[both["active_oa"].isna(), "active_ex"]
    for key, before, after in _field_updates(both.reset_index(drop=True), fields, "employee_code"):
        writes.append(
            PlannedWrite(
                "expense", "staff", "update", key, before, after,
                f"OA employee {key}: {', '.join(sorted(after))} from OA",
            )
        )  # fmt: skip
    return writes


# --- claims -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Links:
    pairs: pd.DataFrame  # request_id, claim_code: one claim per request, not in a duplicate_link
    linked_requests: pd.Series  # every OA request any claim reaches (duplicates included)


def _links(sides: Sides, links: pd.DataFrame) -> _Links:
    """Pairs from claimsync.reconcile.link_claims' frame (request_id, claim_code, link,
    duplicate_link): rows with a link and no duplicate_link."""
    frame = links.reset_index(drop=True)
    linked = frame.dropna(subset=["request_id", "claim_code"])
    requests = linked["request_id"].drop_duplicates()
    if "link" in linked.columns:  # a bxdh match that is not a link connects but does not pair
        linked = linked[linked["link"].notna()]
    if "duplicate_link" in linked.columns:
        linked = linked[~linked["duplicate_link"].fillna(False).astype(bool)]
    pairs = linked.loc[:, ["request_id", "claim_code"]].drop_duplicates()
    # A request or claim that still appears twice is a duplicate link whatever the flags say.
    pairs = pairs[~pairs["request_id"].duplicated(keep=False) & ~pairs["claim_code"].duplicated(keep=False)]
    pairs = pairs.astype({"request_id": "int64"})
    return _Links(pairs.reset_index(drop=True), requests)


def _new_claim_rows(sides: Sides, links: _Links) -> pd.DataFrame:
    """OA requests that get a new expense claim: submitted/approved, no claim, no bxdh yet."""
    oa = sides.oa_claims
    wanted = (
        oa["state"].isin([ClaimState.SUBMITTED.value, ClaimState.APPROVED.value]).fillna(False).astype(bool)
        & oa["claim_code"].isna()
        & oa["employee_code"].notna()
        & oa["amount_cents"].notna()
        & oa["currency"].notna()
        & ~oa["request_id"].isin(links.linked_requests)
    )
    return oa.loc[wanted].drop_duplicates("request_id").sort_values("request_id")


def new_claim_request_ids(sides: Sides, links: pd.DataFrame) -> list[int]:
    """The OA requests a claims plan will create expense claims for (to read their details by key)."""
    return [int(r) for r in _new_claim_rows(sides, _links(sides, links))["request_id"].tolist()]


def _new_claims(
    sides: Sides, links: _Links, settings: Settings, details: PlanDetails, as_of: datetime
) -> list[PlannedWrite]:
    new = _new_claim_rows(sides, links)
    if new.empty:
        return []
    lines = sides.oa_lines
    wanted_refs = set(new["request_id"].astype("str").tolist())
    by_request: dict[int, list[dict[str, Any]]] = {}
    incomplete: set[int] = set()
    mine = lines[lines["claim_ref"].isin(wanted_refs)].sort_values(["claim_ref", "seq"])
    for ref, seq, fee, cents, inv_code, inv_no, inv_date in zip(
        _column(mine, "claim_ref"), _column(mine, "seq"), _column(mine, "fee_type"), _column(mine, "amount_cents"),
        _column(mine, "invoice_code"), _column(mine, "invoice_number"), _column(mine, "invoice_date"), strict=True,
    ):  # fmt: skip
        request_id = int(ref)
        if cents is None:
            incomplete.add(request_id)
            continue
        by_request.setdefault(request_id, []).append(
            {
                "seq": int(seq),
                "fee_type": fee,
                "amount": str(cents_to_decimal(int(cents))),
                "invoice_code": inv_code,
                "invoice_number": inv_no,
                "invoice_date": _iso_date(inv_date),
                "remark": details.line_remarks.get((request_id, int(seq))),
            }
        )
    writes: list[PlannedWrite] = []
    year = as_of.astimezone(settings.tz).year
    for rid, mark, state, emp, dept, cents, currency, approved_at, created_at, changed_at in zip(
        _column(new, "request_id"), _column(new, "request_mark"), _column(new, "state"),
        _column(new, "employee_code"), _column(new, "department_code"), _column(new, "amount_cents"),
        _column(new, "currency"), _column(new, "approved_at"), _column(new, "created_at"),
        _column(new, "changed_at"), strict=True,
    ):  # fmt: skip
        request_id = int(rid)
        if request_id in incomplete:
            continue  # a line without a valid amount: left for the quality gate / a person
        created_local = created_at.astimezone(settings.tz) if created_at is not None else None
        code = claim_code(settings.claim_code_prefix, request_id, created_local, year)
        approved = state == ClaimState.APPROVED.value
        amount = cents_to_decimal(int(cents))
        after: dict[str, Any] = {
            "id": flow_id(request_id),
            "code": code,
            "form_type": settings.mapping.expense_form_type,
            "title": details.request_titles.get(request_id) or mark,
            "submitter_code": emp,
            "department_code": dept,
            "sum_amount": amount,
            "pay_money": amount,
            "currency": currency,
            "oa_request_id": request_id,
            "create_time": created_at,
            "submit_time": details.request_submitted.get(request_id) or created_at,
            "state": "paying" if approved else "approving",
            "approve_time": (approved_at or changed_at) if approved else None,
            "lines": by_request.get(request_id, []),
        }
        status = "approved" if approved else "submitted"
        writes.append(
            PlannedWrite("expense", "flow", "insert", code, None, after, f"OA request {request_id} ({status}) created")
        )
        writes.append(
            PlannedWrite(
                "oa",
                settings.mapping.oa_form_table,
                "update",
                str(request_id),
                {"bxdh": None},
                {"bxdh": code},
                f"expense claim {code} created for this request",
                depends_on=f"expense:flow:{code}",
            )
        )
    return writes


def _paired(sides: Sides, links: _Links) -> pd.DataFrame:
    """One row per linked pair: OA columns as is, expense columns prefixed ``ex_``."""
    import pandas as pd

    oa = sides.oa_claims.drop_duplicates("request_id")
    oa = oa.loc[:, ["request_id", "state", "claim_code", "fkzt", "fkrq", "pzh", "approved_at", "changed_at"]]
    oa = oa.rename(columns={"claim_code": "bxdh"}).astype({"request_id": "int64"})
    ex = sides.expense_claims.drop_duplicates("claim_code")
    ex = ex.loc[:, ["claim_code", "state", "raw_state", "approve_time", "pay_time", "voucher_no"]]
    ex = ex.rename(columns={c: f"ex_{c}" for c in ex.columns if c != "claim_code"})
    pairs = links.pairs.merge(oa, on="request_id", how="inner").merge(ex, on="claim_code", how="inner")
    payments = sides.expense_payments
    failed = payments.loc[payments["status"] == "FAILURE", "claim_code"].dropna()
    pairs["ex_payment_failed"] = pairs["claim_code"].isin(failed)
    # When the claim's last successful payment finished: the payment date if pay_time is empty.
    succeeded = payments.loc[payments["status"] == "SUCCESS"].dropna(subset=["claim_code", "finished_at"])
    paid_at = succeeded.groupby("claim_code")["finished_at"].max().rename("ex_paid_at")
    pairs = pairs.merge(paid_at, left_on="claim_code", right_index=True, how="left")
    del pd
    return pairs.reset_index(drop=True)


def _approval_writes(pairs: pd.DataFrame) -> list[PlannedWrite]:
    submitted = pairs["ex_state"] == ClaimState.SUBMITTED.value
    approve = pairs[(pairs["state"] == ClaimState.APPROVED.value) & submitted]
    reject = pairs[pairs["state"].isin([ClaimState.REJECTED.value, ClaimState.WITHDRAWN.value]) & submitted]
    # Vectorised first: the approval time (archiving log, else the last OA action) and the note.
    when = approve["approved_at"].where(approve["approved_at"].notna(), approve["changed_at"])
    notes = "OA request " + approve["request_id"].astype("str") + " approved: " + approve["ex_raw_state"] + " → paying"
    writes = [
        PlannedWrite(
            "expense", "flow", "update", code,
            {"state": raw, "approve_time": before_time}, {"state": "paying", "approve_time": at}, note,
        )
        for code, raw, before_time, at, note in zip(
            _column(approve, "claim_code"), _column(approve, "ex_raw_state"), _times(approve["ex_approve_time"]),
            _times(when), notes.tolist(), strict=True,
        )
    ]  # fmt: skip
    for rid, code, raw, oa_state in zip(
        _column(reject, "request_id"), _column(reject, "claim_code"), _column(reject, "ex_raw_state"),
        _column(reject, "state"), strict=True,
    ):  # fmt: skip
        writes.append(
            PlannedWrite(
                "expense", "flow", "update", str(code), {"state": raw}, {"state": "rejected"},
                f"OA request {rid} {oa_state}: {raw} → rejected",
            )
        )  # fmt: skip
    return writes


def _text(values: pd.Series) -> pd.Series:
    """Text as claimsync reads OA text: surrounding blanks dropped, empty = null (vectorised)."""
    stripped = values.astype("str").str.strip()
    return stripped.where(stripped != "")


def _dates_text(values: pd.Series) -> pd.Series:
    """Dates (or anything with a date) → 'YYYY-MM-DD' text, null stays null (vectorised)."""
    import pandas as pd

    if isinstance(values.dtype, pd.ArrowDtype):  # date32 from canonicalize: Arrow casts it to ISO text
        return values.astype("str")
    parsed = pd.to_datetime(values.astype(object).where(values.notna(), None), errors="coerce")
    return parsed.dt.strftime("%Y-%m-%d").astype("str")


def _local_dates(values: pd.Series, settings: Settings) -> pd.Series:
    """Instants → 'YYYY-MM-DD' in settings.timezone (null stays null)."""
    import pandas as pd

    instants = pd.to_datetime(values, utc=True)
    return instants.dt.tz_convert(settings.tz).dt.strftime("%Y-%m-%d").astype("str")


def _oa_writes(pairs: pd.DataFrame, settings: Settings) -> list[PlannedWrite]:
    """Payment status/date/voucher (expense → OA) and a missing bxdh, one write per OA request.

    Vectorised: the desired value of each field is computed for every pair at once; only the
    pairs with something to change become PlannedWrites.
    """

    if pairs.empty:
        return []
    oa_rank = pairs["state"].map(_RANK)
    ex_rank = pairs["ex_state"].map(_RANK)
    in_payment = (
        pairs["state"].isin(["approved", "paying", "paid"]).fillna(False).astype(bool)
        & pairs["ex_state"].isin(["approved", "paying", "paid"]).fillna(False).astype(bool)
        & (ex_rank >= oa_rank).fillna(False).astype(bool)
    )
    current = {
        "bxdh": _text(pairs["bxdh"]),
        "fkzt": _text(pairs["fkzt"]),
        "fkrq": _dates_text(pairs["fkrq"]),
        "pzh": _text(pairs["pzh"]),
    }
    ex_state = pairs["ex_state"].astype("str")
    fkzt_to = ex_state.map(_FKZT_FOR).astype("str")
    failed = (
        (ex_state == ClaimState.APPROVED.value)
        & pairs["ex_payment_failed"].fillna(False).astype(bool)
        & current["fkzt"].isna()
    )
    fkzt_to = fkzt_to.mask(failed.to_numpy(), FKZT_FAILED)
    paid = ex_state == ClaimState.PAID.value
    paid_on = _local_dates(pairs["ex_pay_time"].where(pairs["ex_pay_time"].notna(), pairs["ex_paid_at"]), settings)
    desired = {
        "bxdh": pairs["claim_code"].astype("str").where(current["bxdh"].isna()),
        "fkzt": fkzt_to.where(in_payment),
        "fkrq": paid_on.where(in_payment & paid),
        "pzh": _text(pairs["ex_voucher_no"]).where(in_payment),
    }
    changes = {name: (desired[name].notna() & _differs(desired[name], current[name])).to_numpy() for name in desired}
    any_change = changes["bxdh"] | changes["fkzt"] | changes["fkrq"] | changes["pzh"]
    rows = pairs.loc[any_change]
    picked = {name: mask[any_change] for name, mask in changes.items()}
    values = {name: (_column(desired[name].loc[any_change].to_frame("v"), "v"),
                     _column(current[name].loc[any_change].to_frame("v"), "v")) for name in desired}  # fmt: skip
    writes = []
    for i, (rid, code, state) in enumerate(
        zip(_column(rows, "request_id"), _column(rows, "claim_code"), _column(rows, "ex_state"), strict=True)
    ):
        after = {name: values[name][0][i] for name in desired if picked[name][i]}
        before = {name: values[name][1][i] for name in after}
        what = ", ".join(after)
        writes.append(
            PlannedWrite(
                "oa", settings.mapping.oa_form_table, "update", str(rid), before, after,
                f"expense claim {code} ({state}): {what}",
            )
        )  # fmt: skip
    return writes


def plan_claim_writes(
    sides: Sides,
    links: pd.DataFrame,
    settings: Settings,
    *,
    as_of: datetime,
    details: PlanDetails | None = None,
) -> list[PlannedWrite]:
    """New requests, approval decisions and payment status (see the module docstring)."""
    details = details or PlanDetails()
    linked = _links(sides, links)
    pairs = _paired(sides, linked)
    return [
        *_new_claims(sides, linked, settings, details, as_of),
        *_approval_writes(pairs),
        *_oa_writes(pairs, settings),
    ]


def plan_writes(
    sides: Sides,
    links: pd.DataFrame | None,
    settings: Settings,
    *,
    as_of: datetime,
    parts: Iterable[str] = PARTS,
    details: PlanDetails | None = None,
) -> list[PlannedWrite]:
    """Every write one sync should make, in apply order within each table.

    ``links`` is claimsync.reconcile.link_claims(sides) (needed for the claims part);
    ``parts`` picks ``org`` and/or ``claims``.
    """
    parts = tuple(parts)
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown plan parts {sorted(unknown)}")
    writes: list[PlannedWrite] = []
    if "org" in parts:
        writes += plan_org_writes(sides, settings, details)
    if "claims" in parts:
        if links is None:
            raise ValueError("planning the claims needs the links (claimsync.reconcile.link_claims)")
        writes += plan_claim_writes(sides, links, settings, as_of=as_of, details=details)
    return _merge_same_record(writes)


def _merge_same_record(writes: list[PlannedWrite]) -> list[PlannedWrite]:
    """One write per record: two updates of the same row become one (their fields are disjoint)."""
    seen: dict[tuple[str, str, str], int] = {}
    out: list[PlannedWrite] = []
    for w in writes:
        key = (w.target, w.table, w.record_key)
        if key not in seen:
            seen[key] = len(out)
            out.append(w)
            continue
        first = out[seen[key]]
        if first.operation != "update" or w.operation != "update" or set(first.after) & set(w.after):
            raise ValueError(f"the plan writes {w.business_key} twice with overlapping fields")
        out[seen[key]] = PlannedWrite(
            w.target, w.table, "update", w.record_key,
            {**(first.before or {}), **(w.before or {})}, {**first.after, **w.after},
            f"{first.note}; {w.note}", first.depends_on or w.depends_on,
        )  # fmt: skip
    return out


def plan_shape(writes: Sequence[PlannedWrite]) -> dict[str, int]:
    """``{'expense.flow.insert': n, …}``: what a plan does, for summaries and the breaker."""
    shape: dict[str, int] = {}
    for w in writes:
        key = f"{w.target}.{w.table}.{w.operation}"
        shape[key] = shape.get(key, 0) + 1
    return dict(sorted(shape.items()))


__all__ = [
    "PARTS",
    "PlanDetails",
    "claim_code",
    "flow_id",
    "new_claim_request_ids",
    "org_id",
    "plan_claim_writes",
    "plan_org_writes",
    "plan_shape",
    "plan_writes",
]
