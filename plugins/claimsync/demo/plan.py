"""The global plan of a demo data set: who files what, in which state, and where the breaks are.

The plan holds one small record per OA expense request (a *slot*: scenario, claimant,
planted modifications, flow ordinal) and per expense-only document, but no rows: rows are
built chunk by chunk from it (claimsync.demo.chunk). Everything is drawn from
``numpy.random.default_rng`` seeded with the seed, so the same (scale, seed, as_of,
settings) give the same plan, rows and answer key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from claimsync.config import Settings
from claimsync.demo import ids, vocab
from claimsync.demo.answer import AnswerKey
from claimsync.demo.org import Org, build_org
from claimsync.demo.scenarios import (
    PLANT_CODE_ORDER,
    SCENARIO_ID,
    SCENARIOS,
    VARIANTS,
    Extra,
    Flow,
    Mod,
    Variant,
    scenario_table,
)
from claimsync.errors import ConfigError
from claimsync.rules import RECONCILE_CODES, ExceptionCode, expense_key, invoice_key, oa_key

I8 = npt.NDArray[np.int8]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

CHUNK = 50_000  # OA requests per chunk: bounds memory, and fixes the per-chunk random streams
SLOTS_PER_BLOCK = 19  # of every 20 consecutive OA request ids, 19 are expense requests
REQUEST_ID_BASE = 200_000
MAX_SCALE = 3_000_000  # invoice serials must stay below 10**8 (8-digit numbers)
PLANT_BUDGET = 0.4  # at most this share of OA requests carries a planted break
DAY = 86_400


def request_id(slot: npt.ArrayLike) -> I64:
    s = np.asarray(slot, dtype=np.int64)
    return REQUEST_ID_BASE + (s // SLOTS_PER_BLOCK) * 20 + s % SLOTS_PER_BLOCK


def other_request_id(block: npt.ArrayLike) -> I64:
    return REQUEST_ID_BASE + np.asarray(block, dtype=np.int64) * 20 + SLOTS_PER_BLOCK


@dataclass
class Group:
    """One planted break (or clean pattern): its OA requests and expense-only documents."""

    variant: int
    slots: list[int]
    extras: list[int] = field(default_factory=list)  # positions in the plan's extra arrays
    code: ExceptionCode | None = None
    key: str = ""


@dataclass
class Plan:
    scale: int
    seed: int
    as_of: datetime
    as_of_s: int
    grace_s: int
    limit: int  # latest change time of a record that must not be "recent"
    recent_ok: bool  # the grace window is wide enough to place records inside it
    timezone: str
    workflow_id: int
    form_type: str
    claim_prefix: str
    invoice_yy: int
    min_delta_cents: int  # a planted amount difference is at least this, beyond any tolerance
    org: Org
    # per OA expense request (slot)
    created: I64
    year: npt.NDArray[np.int16]
    scenario: npt.NDArray[np.int16]
    mods: I32
    emp: I32
    alt_emp: I32
    unknown: I64  # OA_UNKNOWN: hrmresource id; EXP_UNKNOWN: staff ordinal
    group: I32
    recent: B
    own_ordinal: I64  # ordinal of the request's own expense claim, -1 when none
    ref_ordinal: I64  # BXDH_OTHER: ordinal of the claim whose code OA bxdh carries
    ref_year: npt.NDArray[np.int16]  # … and the year in that code
    shared_serial: I64  # invoice serial shared within the group, -1 when none
    shared_kind: I8  # its invoice kind (claimsync.demo.ids.INVOICE_*)
    # per expense-only document (sorted by host slot)
    ex_host: I32
    ex_kind: I8
    ex_group: I32
    ex_oa_ref: I64
    ex_emp: I32
    ex_ordinal: I64
    ex_shared_serial: I64
    ex_shared_kind: I8
    # other OA workflows, one request per block of SLOTS_PER_BLOCK slots
    other_workflow: I32
    groups: list[Group]
    n_flows: int

    @property
    def blocks(self) -> int:
        return math.ceil(self.scale / SLOTS_PER_BLOCK)

    @property
    def oa_space(self) -> int:
        """Invoice serials: OA lines below this, the expense claims' own invoices above."""
        return (self.scale + 2) * 8

    @property
    def max_request_id(self) -> int:
        return int(other_request_id(self.blocks - 1))

    def extra_serial_base(self) -> int:
        return 2 * self.oa_space

    def shared_serial_base(self) -> int:
        return 2 * self.oa_space + (self.n_flows + 1) * 8

    def chunks(self) -> list[tuple[int, int]]:
        return [(lo, min(lo + CHUNK, self.scale)) for lo in range(0, self.scale, CHUNK)]

    def flow_code(self, ordinal: int, year: int) -> str:
        """The code of an expense claim (loans and requisitions use J and S instead of the prefix)."""
        return f"{self.claim_prefix}{year % 100:02d}{ordinal + 1:06d}"

    def answer_key(self, seconds: float) -> AnswerKey:
        exceptions: dict[str, list[str]] = {code.value: [] for code in RECONCILE_CODES}
        fixed: dict[str, list[str]] = {code.value: [] for code in RECONCILE_CODES}
        details: dict[str, dict[str, str]] = {code.value: {} for code in RECONCILE_CODES}
        for group in self.groups:
            if group.code is None:
                continue
            variant = VARIANTS[group.variant]
            exceptions[group.code.value].append(group.key)
            details[group.code.value][group.key] = variant.label
            if variant.fixed_by_sync:
                fixed[group.code.value].append(group.key)
        for code, keys in exceptions.items():
            if len(set(keys)) != len(keys):
                raise AssertionError(f"demo plan planted {code} twice on one business key")
        return AnswerKey(
            seed=self.seed,
            scale=self.scale,
            as_of=self.as_of,
            claims=self.scale,
            seconds=seconds,
            exceptions={code: tuple(sorted(keys)) for code, keys in exceptions.items()},
            fixed_by_sync={code: tuple(sorted(keys)) for code, keys in fixed.items()},
            grace_seconds=self.grace_s,
            details={code: dict(sorted(d.items())) for code, d in details.items()},
        )


def _allocate(scale: int, *, inactive: bool, other_requests: int) -> list[int]:
    """Variant ids to plant, round-robin over codes (every code once before any twice)."""
    per_code: dict[ExceptionCode, list[int]] = {code: [] for code in PLANT_CODE_ORDER}
    for vid, variant in enumerate(VARIANTS):
        if variant.code is None:
            continue
        if variant.name == "employee_mismatch.inactive" and not inactive:
            continue
        per_code[variant.code].append(vid)
    target = {code: max(len(v), scale // 200) for code, v in per_code.items()}
    planted = dict.fromkeys(PLANT_CODE_ORDER, 0)
    budget = int(scale * PLANT_BUDGET)
    other_used = 0
    chosen: list[int] = []
    progress = True
    while progress:
        progress = False
        for code in PLANT_CODE_ORDER:
            variants = per_code[code]
            if planted[code] >= target[code] or not variants:
                continue
            vid = variants[planted[code] % len(variants)]
            variant = VARIANTS[vid]
            if variant.extra_link == "other_workflow":
                if other_used >= other_requests:
                    vid = next(v for v in variants if not VARIANTS[v].extra_link)
                    variant = VARIANTS[vid]
                else:
                    other_used += 1
            if len(variant.members) > budget:
                continue
            budget -= len(variant.members)
            planted[code] += 1
            chosen.append(vid)
            progress = True
    resubmitted = VARIANTS.index(next(v for v in VARIANTS if v.name == "clean.resubmitted"))
    chosen += [resubmitted] * min(scale // 400, budget // 2)
    return chosen


def build_plan(*, scale: int, seed: int, as_of: datetime, settings: Settings) -> Plan:
    if scale < 1:
        raise ConfigError(f"the demo needs at least one OA request, got scale {scale}")
    if scale > MAX_SCALE:
        raise ConfigError(f"the demo generates at most {MAX_SCALE:,} OA requests, got scale {scale:,}")
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=settings.tz)
    rng = np.random.default_rng([seed, 1])
    as_of_s = math.floor(as_of.timestamp())
    grace_s = math.ceil(settings.grace.total_seconds())
    limit = as_of_s - grace_s - 120
    recent_ok = grace_s >= 180
    tz = settings.timezone

    org = build_org(rng, max(40, scale // 8), before=limit)

    # Creation times grow with the request id, over the 90 days before the grace window.
    end = limit - 300
    start = min(as_of_s - 90 * DAY, end - DAY)
    created = start + np.floor((np.arange(scale) + rng.random(scale)) * ((end - start) / scale)).astype(np.int64)
    local_created = ids.local_seconds(created, tz)
    year = local_created.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    age_days = (as_of_s - created) / DAY

    # Clean scenarios, more advanced the older the request.
    table = scenario_table()
    scenario = np.zeros(scale, dtype=np.int16)
    u = rng.random(scale)
    for lo, hi, attr in ((0, 3, "clean_weight_young"), (3, 14, "clean_weight_mid"), (14, 1e9, "clean_weight_old")):
        weights = np.array([getattr(s, attr) for s in SCENARIOS])
        cdf = np.cumsum(weights / weights.sum())
        mask = (age_days >= lo) & (age_days < hi)
        scenario[mask] = np.minimum(np.searchsorted(cdf, u[mask], side="right"), len(SCENARIOS) - 1)

    emp_any = org.eligible[rng.integers(0, len(org.eligible), scale)]
    emp_active = org.active[rng.integers(0, len(org.active), scale)]
    emp = np.where(table.open[scenario], emp_active, emp_any).astype(np.int32)

    mods = np.zeros(scale, dtype=np.int32)
    link = rng.random(scale)
    mods[link < 0.07] |= Mod.NO_BXDH
    mods[(link >= 0.07) & (link < 0.10)] |= Mod.NO_OA_REQUEST_ID
    clean_extra = rng.random(scale)

    recent = np.zeros(scale, dtype=bool)
    if recent_ok:
        has_events = table.present[scenario][:, 1:].any(axis=1)
        recent = has_events & (rng.random(scale) < 0.005)
        if scale >= 50 and recent.sum() < 2:
            recent[rng.choice(np.flatnonzero(has_events), size=2, replace=False)] = True

    # Other workflows' requests (请假, 出差, 采购), one per block of slots.
    blocks = math.ceil(scale / SLOTS_PER_BLOCK)
    wf_ids = [wf if wf != settings.mapping.oa_workflow_id else wf + 100 for wf, _, _ in vocab.OTHER_WORKFLOWS]
    other_kind = np.arange(blocks) % len(wf_ids)
    other_workflow = np.array(wf_ids, dtype=np.int32)[other_kind]
    leave_blocks = np.flatnonzero(other_kind == 0)  # 请假申请: never linked from expense

    # Planted breaks: variants to plant, then random distinct requests for their members.
    chosen = _allocate(scale, inactive=len(org.inactive) > 0, other_requests=len(leave_blocks))
    n_members = sum(len(VARIANTS[v].members) for v in chosen)
    member_slots = rng.choice(scale, size=n_members, replace=False) if n_members else np.zeros(0, np.int64)
    alt_emp = np.full(scale, -1, dtype=np.int32)
    unknown = np.full(scale, -1, dtype=np.int64)
    group_of = np.full(scale, -1, dtype=np.int32)
    groups: list[Group] = []
    ex_rows: list[tuple[int, int, int, int, int]] = []  # host, kind, group, oa_ref, emp
    leave_pick = rng.permutation(leave_blocks)
    leave_used = 0
    pos = 0
    for g, vid in enumerate(chosen):
        variant = VARIANTS[vid]
        slots = sorted(int(s) for s in member_slots[pos : pos + len(variant.members)])
        pos += len(variant.members)
        group = Group(vid, slots)
        claimant = int(org.active[rng.integers(0, len(org.active))])
        for slot, member in zip(slots, variant.members, strict=True):
            scenario[slot] = SCENARIO_ID[member.scenario]
            mods[slot] = member.mods
            group_of[slot] = g
            recent[slot] = variant.recent and recent_ok
            emp[slot] = claimant
            if member.mods & Mod.INACTIVE_EMPLOYEE:
                emp[slot] = org.inactive[rng.integers(0, len(org.inactive))]
            if member.mods & Mod.EXP_OTHER_EMPLOYEE:
                other = claimant
                while other == claimant:
                    other = int(org.active[rng.integers(0, len(org.active))])
                alt_emp[slot] = other
            if member.mods & Mod.OA_UNKNOWN_EMPLOYEE:
                unknown[slot] = org.size + 1000 + g
            if member.mods & Mod.EXP_UNKNOWN_EMPLOYEE:
                unknown[slot] = org.size + 1000 + g
        host = slots[0] if slots else int(rng.integers(0, scale))
        for kind in variant.extras:
            oa_ref = -1
            if variant.extra_link == "other_workflow":
                oa_ref = int(other_request_id(leave_pick[leave_used]))
                leave_used += 1
            elif variant.extra_link == "missing_request":
                oa_ref = int(other_request_id(blocks - 1)) + 1000 + g
            group.extras.append(len(ex_rows))
            ex_rows.append((host, int(kind), g, oa_ref, claimant))
        groups.append(group)

    # Clean expense-only documents: native drafts, voided drafts, loans; requisitions for 出差申请.
    for slot in np.flatnonzero(clean_extra < 0.04).tolist():
        u = clean_extra[slot]
        native = Extra.DRAFT if u < 0.02 else Extra.NULLIFIED if u < 0.028 else Extra.LOAN
        who = org.eligible if native is not Extra.LOAN else org.active
        ex_rows.append((slot, int(native), -1, -1, int(who[rng.integers(0, len(who))])))
    for block in np.flatnonzero(other_kind == 1):
        ex_rows.append(
            (
                int(block) * SLOTS_PER_BLOCK,
                int(Extra.REQUISITION),
                -1,
                int(other_request_id(block)),
                int(org.active[rng.integers(0, len(org.active))]),
            )
        )
    ex = np.array(ex_rows, dtype=np.int64).reshape(-1, 5)
    order = np.lexsort((np.arange(len(ex)), ex[:, 0]))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    ex = ex[order]
    for group in groups:
        group.extras = [int(inverse[i]) for i in group.extras]

    # Flow ordinals (claim codes): per slot its own claim (or the ghost of one), then its extras.
    own = (table.flow[scenario] != Flow.NONE).astype(np.int64)
    ex_host = ex[:, 0].astype(np.int32)
    per_slot = own + np.bincount(ex_host, minlength=scale)
    first = np.cumsum(per_slot) - per_slot
    own_ordinal = np.where(own == 1, first, -1)
    rank = np.arange(len(ex)) - np.searchsorted(ex_host, ex_host, side="left")
    ex_ordinal = first[ex_host] + own[ex_host] + rank
    n_flows = int(per_slot.sum())

    plan = Plan(
        scale=scale,
        seed=seed,
        as_of=as_of,
        as_of_s=as_of_s,
        grace_s=grace_s,
        limit=limit,
        recent_ok=recent_ok,
        timezone=tz,
        workflow_id=settings.mapping.oa_workflow_id,
        form_type=settings.mapping.expense_form_type,
        claim_prefix=settings.claim_code_prefix,
        invoice_yy=as_of.astimezone(settings.tz).year % 100,
        min_delta_cents=_min_delta_cents(settings),
        org=org,
        created=created,
        year=year.astype(np.int16),
        scenario=scenario,
        mods=mods,
        emp=emp,
        alt_emp=alt_emp,
        unknown=unknown,
        group=group_of,
        recent=recent,
        own_ordinal=own_ordinal.astype(np.int64),
        ref_ordinal=np.full(scale, -1, dtype=np.int64),
        ref_year=np.zeros(scale, dtype=np.int16),
        shared_serial=np.full(scale, -1, dtype=np.int64),
        shared_kind=np.zeros(scale, dtype=np.int8),
        ex_host=ex_host,
        ex_kind=ex[:, 1].astype(np.int8),
        ex_group=ex[:, 2].astype(np.int32),
        ex_oa_ref=ex[:, 3],
        ex_emp=ex[:, 4].astype(np.int32),
        ex_ordinal=ex_ordinal.astype(np.int64),
        ex_shared_serial=np.full(len(ex), -1, dtype=np.int64),
        ex_shared_kind=np.zeros(len(ex), dtype=np.int8),
        other_workflow=other_workflow,
        groups=groups,
        n_flows=n_flows,
    )
    if plan.shared_serial_base() + len(groups) >= 10**8:
        raise ConfigError(f"scale {scale:,} is too large for the demo's invoice numbering")
    for g, group in enumerate(groups):
        _resolve_group(plan, g, group)
    _invoice_keys(plan)
    return plan


def _min_delta_cents(settings: Settings) -> int:
    widest = max([settings.default_tolerance, *settings.tolerances.values()])
    return max(100, 2 * math.ceil(widest * 100) + 100)


def _group_claim(plan: Plan, group: Group) -> tuple[int, int]:
    """(ordinal, year) of the claim a group is about: its first expense-only claim, else the first request's own."""
    if group.extras:
        e = group.extras[0]
        return int(plan.ex_ordinal[e]), int(plan.year[plan.ex_host[e]])
    return int(plan.own_ordinal[group.slots[0]]), int(plan.year[group.slots[0]])


def _resolve_group(plan: Plan, g: int, group: Group) -> None:
    """Cross-references (bxdh of another claim, shared invoice) and the exception the group raises."""
    variant: Variant = VARIANTS[group.variant]
    serial = plan.shared_serial_base() + g
    shares = any(m.mods & (Mod.OA_LINE0_SHARED | Mod.EXP_LINE0_SHARED) for m in variant.members)
    full_e = any(m.mods & Mod.SHARED_FULL_E_INVOICE for m in variant.members)
    kind = ids.INVOICE_FULL_E if full_e else (ids.INVOICE_CODE10 if g % 2 else ids.INVOICE_CODE12)
    for slot, member in zip(group.slots, variant.members, strict=True):
        if member.mods & Mod.BXDH_OTHER:
            plan.ref_ordinal[slot], plan.ref_year[slot] = _group_claim(plan, group)
        if shares:
            plan.shared_serial[slot] = serial
            plan.shared_kind[slot] = kind
    for e in group.extras:
        if plan.ex_kind[e] == Extra.DRAFT_SHARED_INVOICE:
            plan.ex_shared_serial[e] = serial
            plan.ex_shared_kind[e] = kind
    if variant.code is None:
        return
    group.code = variant.code
    if variant.recent and not plan.recent_ok:
        assert variant.in_flight_of is not None
        group.code = variant.in_flight_of
    if variant.key_on == "oa":
        group.key = oa_key(int(request_id(group.slots[0])))
    elif variant.key_on == "exp":
        group.key = expense_key(plan.flow_code(*_group_claim(plan, group)))


def _invoice_keys(plan: Plan) -> None:
    """Business keys of the duplicate_invoice groups: their shared invoice (all at once: it is vectorised)."""
    groups = [
        (g, group) for g, group in enumerate(plan.groups) if group.code and VARIANTS[group.variant].key_on == "inv"
    ]
    if not groups:
        return
    slots = [group.slots[0] for _, group in groups]
    code, number = ids.invoice_texts(plan.shared_serial[slots], plan.shared_kind[slots], plan.invoice_yy)
    for (_, group), c, num in zip(groups, code.to_pylist(), number.to_pylist(), strict=True):
        group.key = invoice_key(c, str(num))
