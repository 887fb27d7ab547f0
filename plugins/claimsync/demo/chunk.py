"""Rows of the demo data set, as pyarrow tables, built from the plan one chunk at a time.

Each chunk draws from its own random stream (seed, chunk index), so its rows do not depend
on the other chunks and memory stays bounded by the chunk size.
"""

from __future__ import annotations

import functools
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from claimsync.demo import ids, vocab
from claimsync.demo.ids import (
    KIND_DEPARTMENT,
    KIND_DETAIL,
    KIND_FLOW,
    KIND_PAYMENT,
    KIND_STAFF,
    join,
    money,
    system_ids,
    take,
    with_nulls,
    zero_pad,
)
from claimsync.demo.plan import DAY, SLOTS_PER_BLOCK, Plan, other_request_id, request_id
from claimsync.demo.scenarios import (
    EV,
    EVENTS,
    EXPENSE_EVENTS,
    OA_EVENTS,
    Extra,
    Flow,
    Mod,
    Payment,
    ScenarioTable,
)
from claimsync.demo.scenarios import scenario_table as _scenario_table
from claimsync.rules import FEE_TYPES

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
Tables = dict[str, pa.Table]
Columns = dict[str, pa.Array]

# Column order of every table the demo fills, as the reference DDL has them.
OA_COLUMNS: Final = {
    "hrmdepartment": ("id", "departmentmark", "departmentname", "supdepid", "canceled", "modified"),
    "hrmresource": (
        "id", "workcode", "lastname", "departmentid", "status", "email", "mobile", "certificatenum",
        "lastmoddate", "lastmodtime",
    ),
    "workflow_requestbase": (
        "requestid", "workflowid", "requestmark", "requestname", "creater", "createdate", "createtime",
        "currentnodetype", "status", "lastoperator", "lastoperatedate", "lastoperatetime", "deleted",
    ),
    "workflow_requestlog": (
        "logid", "requestid", "nodeid", "logtype", "operator", "operatedate", "operatetime", "remark",
    ),
    "form": ("id", "requestid", "bxdh", "sqr", "sqbm", "bxje", "bz", "fkzt", "fkrq", "pzh"),
    "form_lines": ("id", "mainid", "fylx", "je", "fpdm", "fphm", "kprq", "sm"),
}  # fmt: skip
EXPENSE_COLUMNS: Final = {
    "department": ("id", "code", "name", "parent_id", "active", "update_time"),
    "staff": ("id", "code", "name", "department_id", "email", "cellphone", "active", "update_time"),
    "flow": (
        "id", "code", "form_type", "title", "submitter_id", "department_id", "sum_amount", "pay_money",
        "currency", "state", "oa_request_id", "create_time", "submit_time", "approve_time", "pay_time",
        "voucher_no", "update_time",
    ),
    "flow_detail": (
        "id", "flow_id", "seq", "fee_type", "amount", "invoice_code", "invoice_number", "invoice_date", "remark",
    ),
    "payment": (
        "id", "flow_id", "amount", "status", "payee_name", "payee_account", "create_time", "finish_time",
        "update_time",
    ),
    "flow_log": ("id", "flow_id", "action", "operator_id", "time", "comment"),
}  # fmt: skip

NODE_ID: Final = (380, 381, 382, 383)  # 申请人, 部门经理审批, 财务审核, 归档
NODE_STATUS: Final = ("申请人", "部门经理审批", "财务审核", "归档")
LINE_COUNT_P: Final = (0.28, 0.30, 0.20, 0.11, 0.07, 0.04)
INVOICE_KIND_P: Final = (0.15, 0.35, 0.50)  # code10, code12, 全电 among lines with an invoice
PAYMENT_STATUS: Final = ("", "PROCESSING", "FAILURE", "SUCCESS")

# Time from the previous event, per timeline column: ("u", low, high) uniform seconds, or
# ("ln", median, sigma, low, high) log-normal, clipped.
DURATIONS: Final = {
    "c": ("u", 0, 0),
    "s": ("ln", 1800, 1.5, 60, 3 * DAY),
    "x1": ("u", 60, 900),
    "a1": ("ln", 6 * 3600, 1.2, 300, 5 * DAY),
    "a2": ("ln", 8 * 3600, 1.2, 300, 6 * DAY),
    "xe": ("ln", 4 * 3600, 1.0, 300, 3 * DAY),
    "x2": ("u", 60, 900),
    "p1": ("ln", 1.5 * DAY, 0.8, 3600, 7 * DAY),
    "p2": ("ln", 6 * 3600, 1.0, 600, 3 * DAY),
    "p3": ("ln", 3 * DAY, 0.8, 3600, 15 * DAY),
    "v": ("ln", DAY, 1.2, 600, 10 * DAY),
    "xv": ("u", 60, 900),
}
EXTRA_EVENTS: Final = ("create", "submit", "agree", "pay", "paid", "nullify")
EXTRA_DURATIONS: Final = (
    ("u", 600, DAY),
    ("ln", 3600, 1.0, 60, DAY),
    ("ln", 8 * 3600, 1.0, 600, 4 * DAY),
    ("ln", DAY, 0.8, 3600, 5 * DAY),
    ("ln", 4 * 3600, 1.0, 600, 2 * DAY),
    ("ln", DAY, 1.0, 600, 5 * DAY),
)
EXTRA_SPEC: Final = {  # kind: (events, state, form type ("" = the synced one), code prefix ("" = claims'))
    Extra.DRAFT: ("create", "draft", "", ""),
    Extra.NULLIFIED: ("create nullify", "nullify", "", ""),
    Extra.LOAN: ("create submit agree pay paid", "paid", "loan", "J"),
    Extra.REQUISITION: ("create submit agree", "archived", "requisition", "S"),
    Extra.UNLINKED: ("create submit", "approving", "", ""),
    Extra.SECOND_CLAIM: ("create submit", "approving", "", ""),
    Extra.DRAFT_SHARED_INVOICE: ("create", "draft", "", ""),
}


@functools.cache
def scenario_table() -> ScenarioTable:
    return _scenario_table()


@functools.cache
def _remarks() -> tuple[pa.Array, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """All line remarks flattened, with each fee type's offset and count."""
    templates = vocab.remark_templates()
    flat = [text for group in templates for text in group]
    counts = np.array([len(group) for group in templates], dtype=np.int64)
    return pa.array(flat, type=pa.string()), np.cumsum(counts) - counts, counts


def _draw(rng: np.random.Generator, spec: tuple[object, ...], n: int) -> npt.NDArray[np.float64]:
    if spec[0] == "u":
        low, high = float(spec[1]), float(spec[2])  # type: ignore[arg-type]
        return rng.uniform(low, high, n) if high > low else np.zeros(n)
    median, sigma, low, high = (float(x) for x in spec[1:])  # type: ignore[arg-type]
    return np.clip(median * np.exp(sigma * rng.standard_normal(n)), low, high)


def _fit(rng: np.random.Generator, plan: Plan, start: I64, gaps: npt.NDArray[np.float64], recent: B) -> I64:
    """Event times: ``start`` plus the cumulative ``gaps``, squeezed to end by ``plan.limit``;
    a ``recent`` row is stretched or squeezed so its last event falls inside the grace window."""
    cum = np.cumsum(gaps, axis=1)
    total = cum[:, -1]
    safe_total = np.where(total > 0, total, 1.0)
    factor = np.minimum(1.0, (plan.limit - start) / safe_total)
    if plan.recent_ok and recent.any():
        target = plan.as_of_s - rng.uniform(60, plan.grace_s - 60, len(start))
        factor = np.where(recent, (target - start) / safe_total, factor)
    return start[:, None] + np.floor(cum * factor[:, None]).astype(np.int64)


def _local_text(plan: Plan, epoch: I64) -> pa.Array:
    return ids.wall_text(ids.local_seconds(epoch, plan.timezone))


def _nullable_int(values: I64, null: B) -> pa.Array:
    return pa.array(values, mask=null, type=pa.int64())


def _staff_id(ordinal: I64) -> pa.Array:
    return system_ids(KIND_STAFF, ordinal)


def _dept_id(index: I64) -> pa.Array:
    return system_ids(KIND_DEPARTMENT, index)


def org_tables(plan: Plan) -> tuple[Tables, Tables]:
    """hrmdepartment and hrmresource (OA); department and staff (expense)."""
    org = plan.org
    n_dept = len(org.dept_code)
    d_idx = np.arange(n_dept, dtype=np.int64)
    modified = _local_text(plan, org.dept_changed)
    hrmdepartment = pa.table(
        {
            "id": pa.array(d_idx + 1),
            "departmentmark": pa.array(org.dept_code),
            "departmentname": pa.array(org.dept_name),
            "supdepid": _nullable_int(org.dept_parent.astype(np.int64) + 1, org.dept_parent < 0),
            "canceled": pa.array(np.where(org.dept_canceled, "1", "0")),
            "modified": modified,
        }
    )
    in_exp = np.flatnonzero(org.dept_in_expense)
    parent = org.dept_parent[in_exp].astype(np.int64)
    department = pa.table(
        {
            "id": _dept_id(in_exp),
            "code": pa.array([org.dept_code[i] for i in in_exp]),
            "name": pa.array([org.dept_name[i] for i in in_exp]),
            "parent_id": with_nulls(_dept_id(np.maximum(parent, 0)), parent < 0),
            "active": pa.array(~org.dept_canceled[in_exp]),
            "update_time": ids.timestamptz(org.dept_changed[in_exp] + 3600),
        }
    )
    n = org.size
    e_idx = np.arange(n, dtype=np.int64)
    changed = _local_text(plan, org.changed)
    hrmresource = pa.table(
        {
            "id": pa.array(e_idx + 1),
            "workcode": pa.array(org.workcode),
            "lastname": pa.array(org.name),
            "departmentid": pa.array(org.dept.astype(np.int64) + 1),
            "status": pa.array(org.status.astype(np.int64)),
            "email": pa.array(org.email, type=pa.string()),
            "mobile": pa.array(org.mobile, type=pa.string()),
            "certificatenum": pa.array(org.id_number, type=pa.string()),
            "lastmoddate": ids.date_part(changed),
            "lastmodtime": ids.time_part(changed),
        }
    )
    in_staff = np.flatnonzero(org.in_staff)
    staff = pa.table(
        {
            "id": _staff_id(in_staff),
            "code": pa.array([org.workcode[i] for i in in_staff]),
            "name": pa.array([org.staff_name[i] for i in in_staff]),
            "department_id": _dept_id(org.staff_dept[in_staff].astype(np.int64)),
            "email": pa.array([org.email[i] for i in in_staff], type=pa.string()),
            "cellphone": pa.array([org.mobile[i] for i in in_staff], type=pa.string()),
            "active": pa.array(org.staff_active[in_staff]),
            "update_time": ids.timestamptz(org.staff_changed[in_staff] + 600),
        }
    )
    return (
        {"hrmdepartment": hrmdepartment, "hrmresource": hrmresource},
        {"department": department, "staff": staff},
    )


class _Lines:
    """Claim lines of one chunk: one row per line, ``owner`` = position of the claim in the chunk."""

    def __init__(self, rng: np.random.Generator, plan: Plan, count: npt.NDArray[np.int64], start: I64) -> None:
        n = len(count)
        total = int(count.sum())
        self.offsets = np.cumsum(count) - count
        self.owner = np.repeat(np.arange(n), count)
        self.seq = np.arange(total) - np.repeat(self.offsets, count) + 1
        self.main = rng.choice(len(FEE_TYPES), size=n, p=np.array(vocab.FEE_MAIN_WEIGHTS))
        cdf = np.cumsum(np.array(vocab.FEE_LINE_WEIGHTS), axis=1)
        pick = (rng.random(total)[:, None] > cdf[self.main[self.owner]]).sum(axis=1)
        self.fee = np.where(self.seq == 1, self.main[self.owner], np.minimum(pick, len(FEE_TYPES) - 1))
        spec = np.array([a[:4] for a in vocab.FEE_AMOUNTS], dtype=np.float64)
        whole = np.array([a[4] for a in vocab.FEE_AMOUNTS], dtype=bool)
        yuan = spec[self.fee, 0] * np.exp(spec[self.fee, 1] * rng.standard_normal(total))
        yuan = np.clip(yuan, spec[self.fee, 2], spec[self.fee, 3])
        cents = np.round(yuan * 100).astype(np.int64)
        self.cents = np.where(whole[self.fee], (cents // 100) * 100, cents)
        no_invoice = rng.random(total) < np.array(vocab.FEE_NO_INVOICE)[self.fee]
        kind = rng.choice(3, size=total, p=np.array(INVOICE_KIND_P)).astype(np.int8) + 1
        self.kind = np.where(no_invoice, ids.INVOICE_NONE, kind).astype(np.int8)
        issued = start[self.owner] - rng.integers(3600, 30 * DAY, total)
        self.kprq = ids.date_part(_local_text(plan, issued))
        flat, first, per_fee = _remarks()
        self.remark = flat.take(pa.array(first[self.fee] + rng.integers(0, 1 << 30, total) % per_fee[self.fee]))

    def totals(self, cents: I64) -> I64:
        """Sum of line amounts per claim (0 for a claim with no lines)."""
        result = np.zeros(len(self.offsets), dtype=np.int64)
        np.add.at(result, self.owner, cents)
        return result


def build_chunk(plan: Plan, lo: int, hi: int, index: int) -> tuple[Tables, Tables]:
    """OA and expense rows for OA requests ``lo``..``hi`` (slots) and the documents hosted there."""
    rng = np.random.default_rng([plan.seed, 2, index])
    chunk = _Chunk(rng, plan, lo, hi)
    other = _other_requests(rng, plan, lo, hi)
    extra = _extra_documents(rng, plan, lo, hi)
    oa_tables = _tables(
        {
            "workflow_requestbase": [chunk.requests(), *other["requests"]],
            "workflow_requestlog": chunk.approval_log() + other["logs"],
            "form": [chunk.form()],
            "form_lines": [chunk.form_lines()],
        }
    )
    expense_tables = _tables(
        {
            "flow": [chunk.claims(), *extra["flows"]],
            "flow_detail": [chunk.claim_lines(), *extra["details"]],
            "payment": chunk.payments() + extra["payments"],
            "flow_log": chunk.flow_log() + extra["logs"],
        }
    )
    return oa_tables, expense_tables


class _Chunk:
    """The OA expense requests of one chunk and their own expense claims.

    The constructor draws everything the tables share (timeline, lines, amounts, people);
    each method then builds one table's columns.
    """

    def __init__(self, rng: np.random.Generator, plan: Plan, lo: int, hi: int) -> None:
        self.rng, self.plan, self.lo, self.hi = rng, plan, lo, hi
        table = scenario_table()
        org = plan.org
        n = self.n = hi - lo
        self.slot = np.arange(lo, hi, dtype=np.int64)
        self.rid = request_id(self.slot)
        sc = self.sc = plan.scenario[lo:hi].astype(np.int64)
        mods = self.mods = plan.mods[lo:hi]
        emp = self.emp = plan.emp[lo:hi].astype(np.int64)
        self.created = plan.created[lo:hi]

        # timeline: one column per event, squeezed before the grace window (or into it)
        present = self.present = table.present[sc]
        gaps = np.stack([_draw(rng, DURATIONS[name], n) for name in EVENTS], axis=1) * present
        times = self.times = _fit(rng, plan, self.created, gaps, plan.recent[lo:hi])
        oa_cols = [EV[e] for e in OA_EVENTS]
        exp_cols = [EV[e] for e in EXPENSE_EVENTS]
        oa_last_col = np.array(oa_cols)[np.argmax(np.where(present[:, oa_cols], times[:, oa_cols], -1), axis=1)]
        self.oa_last_event = np.array(EVENTS)[oa_last_col]
        self.oa_cursor = times[np.arange(n), oa_last_col]
        self.exp_cursor = np.max(np.where(present[:, exp_cols], times[:, exp_cols], -1), axis=1)

        # lines and amounts (cents): OA and expense start equal; planted breaks move them apart
        count = rng.choice(6, size=n, p=np.array(LINE_COUNT_P)).astype(np.int64) + 1
        lines = self.lines = _Lines(rng, plan, count, self.created)
        owner = lines.owner
        first_line = lines.seq == 1
        self.oa_serial = (self.slot[owner] + 1) * 8 + lines.seq
        self.exp_serial = self.oa_serial.copy()
        self.exp_serial[(mods[owner] & Mod.EXP_OWN_INVOICES) != 0] += plan.oa_space
        self.oa_kind = lines.kind.copy()
        self.exp_kind = lines.kind.copy()
        for flag, serial, kind in (
            (Mod.OA_LINE0_SHARED, self.oa_serial, self.oa_kind),
            (Mod.EXP_LINE0_SHARED, self.exp_serial, self.exp_kind),
        ):
            hit = first_line & ((mods[owner] & flag) != 0)
            serial[hit] = plan.shared_serial[lo:hi][owner[hit]]
            kind[hit] = plan.shared_kind[lo:hi][owner[hit]]
        self.oa_cents = lines.cents.copy()
        self.exp_cents = lines.cents.copy()
        self.bxje = lines.totals(lines.cents)
        self.sum_amount = self.bxje.copy()
        first_cents = lines.cents[lines.offsets]
        delta = np.maximum(plan.min_delta_cents, np.round(first_cents * rng.uniform(0.05, 0.3, n))).astype(np.int64)
        delta = np.where((rng.random(n) < 0.5) & (first_cents > delta + 100), -delta, delta)
        for flags, cents in ((Mod.OA_LINE_OFF, self.oa_cents), (Mod.EXP_LINE_OFF | Mod.EXP_AMOUNT_OFF, self.exp_cents)):
            off = (mods & flags) != 0
            cents[lines.offsets[off]] += delta[off]
        off = (mods & Mod.EXP_AMOUNT_OFF) != 0
        self.sum_amount[off] += delta[off]

        state = table.state[sc]
        self.state = np.where((state == "approving") & (rng.random(n) < 0.04), "pending", state)  # 合思: transient
        cut = np.isin(state, ("paying", "paid", "archived")) & (rng.random(n) < 0.03) & (mods == 0)
        cut_cents = (np.round(self.sum_amount * rng.uniform(0.05, 0.2, n)).astype(np.int64) // 100) * 100
        self.pay_money = np.where(cut, self.sum_amount - cut_cents, self.sum_amount)  # 核减 by finance

        # people
        self.names = pa.array(org.name, type=pa.string())
        self.approver = org.approver[emp].astype(np.int64)
        self.reviewer = org.finance[rng.integers(0, len(org.finance), n)].astype(np.int64)
        self.submitter = np.where((mods & Mod.EXP_OTHER_EMPLOYEE) != 0, plan.alt_emp[lo:hi], emp).astype(np.int64)
        known = (mods & Mod.EXP_UNKNOWN_EMPLOYEE) == 0
        self.submitter_ordinal = np.where(known, self.submitter, plan.unknown[lo:hi])
        self.a1_log = table.a1_log[sc]
        self.force_archived = (table.a2_log[sc] == "0") & (rng.random(n) < 0.04)
        self.a2_log = np.where(self.force_archived, "e", table.a2_log[sc])

        # names and codes shared by both systems
        created_text = _local_text(plan, self.created)
        self.createdate = ids.date_part(created_text)
        self.createtime = ids.time_part(created_text)
        self.request_name = join(
            take(FEE_TYPES, lines.main), "报销-", self.names.take(pa.array(emp)), "-", self.createdate
        )
        self.request_mark = join(
            "FYBX-", pc.utf8_slice_codeunits(self.createdate, 0, 4), "-", zero_pad(self.slot + 1, 6)
        )
        self.flow_kind = table.flow[sc]
        self.own_ordinal = plan.own_ordinal[lo:hi]
        self.own_code = _claim_codes(plan.claim_prefix, plan.year[lo:hi], self.own_ordinal)
        archive_month = _yyyymm(_local_text(plan, self.at("p3")))
        self.voucher = join("记-", archive_month, "-", zero_pad(np.maximum(self.own_ordinal, 0) + 1, 6))
        self.archived = table.pzh[sc]
        self.fkzt = table.fkzt[sc]
        self.fkrq_from = table.fkrq_from[sc]
        self.payment_kind = table.payment[sc]
        self.xe_action = table.xe_action[sc]

    def at(self, event: str) -> I64:
        return np.asarray(self.times[:, EV[event]], dtype=np.int64)

    def has(self, event: str) -> B:
        return np.asarray(self.present[:, EV[event]], dtype=bool)

    # --- OA -----------------------------------------------------------------------------------
    def requests(self) -> Columns:
        by_approver = (self.oa_last_event == "a1") & np.isin(self.a1_log, ("0", "3"))
        last_operator = np.where(
            by_approver, self.approver, np.where(self.oa_last_event == "a2", self.reviewer, self.emp)
        )
        cursor = _local_text(self.plan, self.oa_cursor)
        table = scenario_table()
        return {
            "requestid": pa.array(self.rid),
            "workflowid": pa.array(np.full(self.n, self.plan.workflow_id, dtype=np.int64)),
            "requestmark": self.request_mark,
            "requestname": self.request_name,
            "creater": pa.array(self.emp + 1),
            "createdate": self.createdate,
            "createtime": self.createtime,
            "currentnodetype": pa.array(table.cnt[self.sc]),
            "status": take(NODE_STATUS, table.node[self.sc]),
            "lastoperator": pa.array(last_operator + 1),
            "lastoperatedate": ids.date_part(cursor),
            "lastoperatetime": ids.time_part(cursor),
            "deleted": pa.array(table.deleted[self.sc].astype(np.int64)),
        }

    def approval_log(self) -> list[Columns]:
        """workflow_requestlog: submit, a comment now and then, the manager's and finance's decisions."""
        n, rng = self.n, self.rng
        parts: list[Columns] = []

        def remark(choices: tuple[str, ...]) -> pa.Array:
            return take(choices, rng.integers(0, len(choices), n))

        def add(
            mask: B, *, k: int, when: I64, logtype: npt.NDArray[np.str_], node: I64, who: I64, text: pa.Array
        ) -> None:
            if not mask.any():
                return
            wall = _local_text(self.plan, when[mask])
            parts.append(
                {
                    "logid": pa.array(self.rid[mask] * 8 + k),
                    "requestid": pa.array(self.rid[mask]),
                    "nodeid": pa.array(node[mask]),
                    "logtype": pa.array(logtype[mask]),
                    "operator": pa.array(who[mask] + 1),
                    "operatedate": ids.date_part(wall),
                    "operatetime": ids.time_part(wall),
                    "remark": text.filter(pa.array(mask)),
                }
            )

        def node(i: int) -> I64:
            return np.full(n, NODE_ID[i], dtype=np.int64)

        s, a1, a2 = self.at("s"), self.at("a1"), self.at("a2")
        add(self.has("s"), k=1, when=s, logtype=np.full(n, "2"), node=node(0), who=self.emp,
            text=pa.nulls(n, pa.string()))  # fmt: skip
        comment = self.has("a1") & (rng.random(n) < 0.1)
        add(comment, k=2, when=s + (a1 - s) // 2, logtype=np.full(n, "9"), node=node(1), who=self.emp,
            text=remark(vocab.COMMENT_REMARKS))  # fmt: skip
        decided = np.isin(self.a1_log, ("0", "3"))
        a1_text = _choose(
            self.a1_log,
            {"0": remark(vocab.APPROVE_REMARKS), "3": remark(vocab.SEND_BACK_REMARKS)},
            remark(vocab.WITHDRAW_REMARKS),
        )
        add(self.has("a1"), k=3, when=a1, logtype=self.a1_log, node=np.where(decided, node(1), node(0)),
            who=np.where(decided, self.approver, self.emp), text=a1_text)  # fmt: skip
        a2_text = _choose(
            self.a2_log,
            {"0": remark(vocab.APPROVE_REMARKS), "3": remark(vocab.SEND_BACK_REMARKS)},
            remark(vocab.FORCE_ARCHIVE_REMARKS),
        )
        a2_who = np.where(self.force_archived, self.plan.org.finance_head, self.reviewer)
        add(self.has("a2"), k=4, when=a2, logtype=self.a2_log, node=node(2), who=a2_who, text=a2_text)
        return parts

    def form(self) -> Columns:
        plan, mods, lo, hi = self.plan, self.mods, self.lo, self.hi
        other_claim = (mods & Mod.BXDH_OTHER) != 0
        ref_code = _claim_codes(plan.claim_prefix, plan.ref_year[lo:hi], plan.ref_ordinal[lo:hi])
        bxdh = pc.if_else(pa.array(other_claim), ref_code, self.own_code)
        no_bxdh = ~other_claim & ((self.flow_kind == Flow.NONE) | ((mods & Mod.NO_BXDH) != 0))
        sqr = np.where((mods & Mod.OA_UNKNOWN_EMPLOYEE) != 0, plan.unknown[lo:hi], self.emp + 1)
        fkrq_time = self.times[np.arange(self.n), np.maximum(self.fkrq_from, 0)]
        return {
            "id": pa.array(self.slot + 1),
            "requestid": pa.array(self.rid),
            "bxdh": with_nulls(bxdh, no_bxdh),
            "sqr": pa.array(sqr),
            "sqbm": pa.array(plan.org.dept[self.emp].astype(np.int64) + 1),
            "bxje": money(self.bxje),
            "bz": pa.array(np.full(self.n, "CNY")),
            "fkzt": with_nulls(pa.array(self.fkzt), self.fkzt == ""),
            "fkrq": with_nulls(ids.date_part(_local_text(plan, fkrq_time)), self.fkrq_from < 0),
            "pzh": with_nulls(self.voucher, ~self.archived),
        }

    def form_lines(self) -> Columns:
        lines = self.lines
        fpdm, fphm = ids.invoice_texts(self.oa_serial, self.oa_kind, self.plan.invoice_yy)
        main_id = self.slot[lines.owner] + 1
        return {
            "id": pa.array(main_id * 8 + lines.seq),
            "mainid": pa.array(main_id),
            "fylx": take(FEE_TYPES, lines.fee),
            "je": money(self.oa_cents),
            "fpdm": fpdm,
            "fphm": fphm,
            "kprq": with_nulls(lines.kprq, self.oa_kind == ids.INVOICE_NONE),
            "sm": lines.remark,
        }

    # --- expense: the requests' own claims ----------------------------------------------------
    @functools.cached_property
    def _f(self) -> npt.NDArray[np.intp]:
        """Positions of the requests that have a (real) claim in expense."""
        return np.flatnonzero(self.flow_kind == Flow.REAL)

    @functools.cached_property
    def _flow_id(self) -> pa.Array:
        return system_ids(KIND_FLOW, self.own_ordinal[self._f])

    def claims(self) -> Columns:
        f, plan = self._f, self.plan
        take_f = pa.array(f)
        state = self.state[f]
        approved = np.isin(state, ("paying", "paid", "archived"))
        paid = np.isin(state, ("paid", "archived"))
        approve_time = np.where(self.has("a2")[f], self.at("a2")[f], self.at("xe")[f])
        return {
            "id": self._flow_id,
            "code": self.own_code.take(take_f),
            "form_type": pa.array(np.full(len(f), plan.form_type)),
            "title": self.request_name.take(take_f),
            "submitter_id": _staff_id(self.submitter_ordinal[f]),
            "department_id": _dept_id(plan.org.staff_dept[self.submitter[f]].astype(np.int64)),
            "sum_amount": money(self.sum_amount[f]),
            "pay_money": money(self.pay_money[f]),
            "currency": pa.array(np.where((self.mods[f] & Mod.EXP_CURRENCY) != 0, "HKD", "CNY")),
            "state": pa.array(state),
            "oa_request_id": _nullable_int(self.rid[f], (self.mods[f] & Mod.NO_OA_REQUEST_ID) != 0),
            "create_time": ids.timestamptz(self.at("x1")[f]),
            "submit_time": ids.timestamptz(self.at("s")[f]),
            "approve_time": with_nulls(ids.timestamptz(approve_time), ~approved),
            "pay_time": with_nulls(ids.timestamptz(self.at("p2")[f]), ~paid),
            "voucher_no": with_nulls(self.voucher.take(take_f), ~self.archived[f]),
            "update_time": ids.timestamptz(self.exp_cursor[f]),
        }

    def claim_lines(self) -> Columns:
        lines = self.lines
        lf = np.flatnonzero((self.flow_kind == Flow.REAL)[lines.owner])
        ordinal = self.own_ordinal[lines.owner[lf]]
        code, number = ids.invoice_texts(self.exp_serial[lf], self.exp_kind[lf], self.plan.invoice_yy)
        take_lf = pa.array(lf)
        return {
            "id": system_ids(KIND_DETAIL, ordinal * 8 + lines.seq[lf]),
            "flow_id": system_ids(KIND_FLOW, ordinal),
            "seq": pa.array(lines.seq[lf]),
            "fee_type": take(FEE_TYPES, lines.fee[lf]),
            "amount": money(self.exp_cents[lf]),
            "invoice_code": code,
            "invoice_number": number,
            "invoice_date": with_nulls(lines.kprq.take(take_lf), self.exp_kind[lf] == ids.INVOICE_NONE),
            "remark": lines.remark.take(take_lf),
        }

    def payments(self) -> list[Columns]:
        """One payment per paying/paid claim; a few paid claims failed once before."""
        f, org = self._f, self.plan.org
        ordinal = self.own_ordinal[f]
        kind = self.payment_kind[f]
        p = np.flatnonzero(kind != Payment.NONE)
        payee = self.submitter[f][p]
        amount = self.pay_money[f][p]
        p1, p2, x2 = self.at("p1")[f][p], self.at("p2")[f][p], self.at("x2")[f][p]
        finished = kind[p] != Payment.PROCESSING
        parts: list[Columns] = [
            {
                "id": system_ids(KIND_PAYMENT, ordinal[p] * 2 + 1),
                "flow_id": self._flow_id.take(pa.array(p)),
                "amount": money(amount),
                "status": take(PAYMENT_STATUS, kind[p]),
                "payee_name": self.names.take(pa.array(payee)),
                "payee_account": take(org.account, payee),
                "create_time": ids.timestamptz(p1),
                "finish_time": with_nulls(ids.timestamptz(p2), ~finished),
                "update_time": ids.timestamptz(np.where(finished, p2, p1)),
            }
        ]
        retried = (kind[p] == Payment.SUCCESS) & (self.rng.random(len(p)) < 0.03)
        if retried.any():
            tried = x2[retried] + (p1[retried] - x2[retried]) // 3
            failed = tried + (p1[retried] - x2[retried]) // 3
            parts.append(
                {
                    "id": system_ids(KIND_PAYMENT, ordinal[p][retried] * 2),
                    "flow_id": self._flow_id.take(pa.array(p[retried])),
                    "amount": money(amount[retried]),
                    "status": pa.array(np.full(int(retried.sum()), "FAILURE")),
                    "payee_name": self.names.take(pa.array(payee[retried])),
                    "payee_account": take(org.account, payee[retried]),
                    "create_time": ids.timestamptz(tried),
                    "finish_time": ids.timestamptz(failed),
                    "update_time": ids.timestamptz(failed),
                }
            )
        return parts

    def flow_log(self) -> list[Columns]:
        """flow_log: claimsync's own sync rows, expense-side decisions, payments, voiding."""
        f = self._f
        m = len(f)
        ordinal = self.own_ordinal[f]
        parts: list[Columns] = []

        def add(mask: B, *, k: int, event: str, action: str, who: I64 | None, text: pa.Array) -> None:
            if not mask.any():
                return
            size = int(mask.sum())
            parts.append(
                {
                    "id": pa.array(ordinal[mask] * 8 + k),
                    "flow_id": self._flow_id.filter(pa.array(mask)),
                    "action": pa.array(np.full(size, action)),
                    "operator_id": pa.nulls(size, pa.string()) if who is None else _staff_id(who[mask]),
                    "time": ids.timestamptz(self.at(event)[f][mask]),
                    "comment": text.filter(pa.array(mask)),
                }
            )

        def same(text: str) -> pa.Array:
            return pa.array(np.full(m, text))

        a1_log, a2_log = self.a1_log[f], self.a2_log[f]
        outcome = np.where(
            a2_log == "0", "OA审批通过",
            np.where(a2_log == "e", "OA流程已强制归档", np.where(a1_log == "r", "OA流程已撤回", "OA流程已退回")),
        )  # fmt: skip
        reject = self.xe_action[f] == "freeflow.reject"
        xe = self.has("xe")[f]
        approver, finance = self.approver[f], self.reviewer[f]
        paid_ok = self.payment_kind[f] == Payment.SUCCESS
        add(self.has("x1")[f], k=1, event="x1", action="claimsync.sync", who=None,
            text=join("由OA流程 ", self.request_mark.take(pa.array(f)), " 同步创建"))  # fmt: skip
        add(xe & reject, k=2, event="xe", action="freeflow.reject", who=approver,
            text=take(vocab.SEND_BACK_REMARKS, self.rng.integers(0, len(vocab.SEND_BACK_REMARKS), m)))  # fmt: skip
        add(xe & ~reject, k=2, event="xe", action="freeflow.agree", who=approver, text=same("同意"))
        add(self.has("x2")[f], k=3, event="x2", action="claimsync.sync", who=None, text=pa.array(outcome))
        add(self.has("p1")[f], k=4, event="p1", action="freeflow.pay", who=finance, text=same("发起支付"))
        add(self.has("p2")[f], k=5, event="p2", action="freeflow.pay", who=finance,
            text=pa.array(np.where(paid_ok, "支付成功", "支付失败：收款账户信息有误")))  # fmt: skip
        add(self.has("xv")[f], k=7, event="xv", action="freeflow.nullify", who=self.submitter[f],
            text=same("关联OA流程已删除，单据作废"))  # fmt: skip
        return parts


def _claim_codes(prefix: str, year: npt.NDArray[np.int16], ordinal: I64) -> pa.Array:
    """``B`` + two-digit year + ordinal + 1 (at least six digits): ``B26000123``."""
    yy = zero_pad((year % 100).astype(np.int64), 2)
    return join(prefix, yy, zero_pad(np.maximum(ordinal, 0) + 1, 6))


def _tables(parts: dict[str, list[Columns]]) -> Tables:
    """One table per name from its column sets (empty sets dropped); names with no rows are left out."""
    result: Tables = {}
    for name, sets in parts.items():
        tables = [pa.table(cols) for cols in sets if len(next(iter(cols.values())))]
        if tables:
            result[name] = pa.concat_tables(tables, promote_options="permissive")
    return result


def _choose(codes: npt.NDArray[np.str_], by_code: dict[str, pa.Array], default: pa.Array) -> pa.Array:
    """Per row, the array of ``by_code[codes[row]]`` (``default`` for other codes)."""
    result = default
    for code, values in by_code.items():
        result = pc.if_else(pa.array(codes == code), values, result)
    return result


def _yyyymm(wall: pa.Array) -> pa.Array:
    return join(pc.utf8_slice_codeunits(wall, 0, 4), pc.utf8_slice_codeunits(wall, 5, 7))


def _other_requests(rng: np.random.Generator, plan: Plan, lo: int, hi: int) -> dict[str, list[Columns]]:
    """Requests of other OA workflows (请假, 出差, 采购) whose block starts in this chunk: ignored by claimsync."""
    first, last = -(-lo // SLOTS_PER_BLOCK), -(-hi // SLOTS_PER_BLOCK)
    blocks = np.arange(first, last, dtype=np.int64)
    n = len(blocks)
    if n == 0:
        return {"requests": [], "logs": []}
    org = plan.org
    host = blocks * SLOTS_PER_BLOCK
    creater = org.active[rng.integers(0, len(org.active), n)].astype(np.int64)
    approver = org.approver[creater].astype(np.int64)
    archived = rng.random(n) < 0.8
    gaps = np.stack(
        [
            rng.uniform(0, 200, n),
            _draw(rng, DURATIONS["s"], n),
            _draw(rng, DURATIONS["a1"], n) * archived,
            _draw(rng, DURATIONS["a2"], n) * archived,
        ],
        axis=1,
    )
    times = _fit(rng, plan, plan.created[host], gaps, np.zeros(n, dtype=bool))
    rid = other_request_id(blocks)
    kind = blocks % len(vocab.OTHER_WORKFLOWS)
    wf = plan.other_workflow[blocks].astype(np.int64)
    created_text = _local_text(plan, times[:, 0])
    createdate = ids.date_part(created_text)
    last_text = _local_text(plan, np.where(archived, times[:, 3], times[:, 1]))
    names = pa.array(org.name, type=pa.string())
    requests: Columns = {
        "requestid": pa.array(rid),
        "workflowid": pa.array(wf),
        "requestmark": join(
            take([p for _, _, p in vocab.OTHER_WORKFLOWS], kind),
            "-",
            pc.utf8_slice_codeunits(createdate, 0, 4),
            "-",
            zero_pad(blocks + 1, 6),
        ),
        "requestname": join(
            take([w for _, w, _ in vocab.OTHER_WORKFLOWS], kind), "-", names.take(pa.array(creater)), "-", createdate
        ),
        "creater": pa.array(creater + 1),
        "createdate": createdate,
        "createtime": ids.time_part(created_text),
        "currentnodetype": pa.array(np.where(archived, "3", "1")),
        "status": pa.array(np.where(archived, "归档", "部门经理审批")),
        "lastoperator": pa.array(np.where(archived, approver, creater) + 1),
        "lastoperatedate": ids.date_part(last_text),
        "lastoperatetime": ids.time_part(last_text),
        "deleted": pa.array(np.zeros(n, dtype=np.int64)),
    }
    logs: list[Columns] = []
    for k, col, logtype, who, mask in (
        (1, 1, "2", creater, np.ones(n, dtype=bool)),
        (3, 2, "0", approver, archived),
        (4, 3, "0", approver, archived),
    ):
        if not mask.any():
            continue
        text = _local_text(plan, times[mask, col])
        logs.append(
            {
                "logid": pa.array(rid[mask] * 8 + k),
                "requestid": pa.array(rid[mask]),
                "nodeid": pa.array(wf[mask] * 10 + col - 1),
                "logtype": pa.array(np.full(int(mask.sum()), logtype)),
                "operator": pa.array(who[mask] + 1),
                "operatedate": ids.date_part(text),
                "operatetime": ids.time_part(text),
                "remark": pa.nulls(int(mask.sum()), pa.string())
                if k == 1
                else take(vocab.APPROVE_REMARKS, np.zeros(int(mask.sum()), np.int64)),
            }
        )
    return {"requests": [requests], "logs": logs}


def _extra_documents(rng: np.random.Generator, plan: Plan, lo: int, hi: int) -> dict[str, list[Columns]]:
    """Expense documents hosted in this chunk that have no OA request of their own."""
    a, b = np.searchsorted(plan.ex_host, [lo, hi], side="left")
    result: dict[str, list[Columns]] = {"flows": [], "details": [], "payments": [], "logs": []}
    n = int(b - a)
    if n == 0:
        return result
    org = plan.org
    kind = plan.ex_kind[a:b].astype(np.int64)
    host = plan.ex_host[a:b].astype(np.int64)
    ordinal = plan.ex_ordinal[a:b]
    emp = plan.ex_emp[a:b].astype(np.int64)
    spec = [EXTRA_SPEC[Extra(k)] for k in range(len(EXTRA_SPEC))]
    present = np.array([[e in s[0].split() for e in EXTRA_EVENTS] for s in spec])[kind]
    gaps = np.stack([_draw(rng, d, n) for d in EXTRA_DURATIONS], axis=1) * present
    times = _fit(rng, plan, plan.created[host], gaps, np.zeros(n, dtype=bool))
    ev = {name: times[:, i] for i, name in enumerate(EXTRA_EVENTS)}
    has = {name: present[:, i] for i, name in enumerate(EXTRA_EVENTS)}
    last = np.max(np.where(present, times, -1), axis=1)

    count = rng.integers(1, 5, n).astype(np.int64)
    count[kind == Extra.REQUISITION] = 1 + (rng.random(int((kind == Extra.REQUISITION).sum())) < 0.4)
    count[kind == Extra.LOAN] = 0
    lines = _Lines(rng, plan, count, plan.created[host])
    owner = lines.owner
    serial = plan.extra_serial_base() + ordinal[owner] * 8 + lines.seq
    inv_kind = np.where(kind[owner] == Extra.REQUISITION, ids.INVOICE_NONE, lines.kind).astype(np.int8)
    shared = (lines.seq == 1) & (plan.ex_shared_serial[a:b][owner] >= 0)
    serial[shared] = plan.ex_shared_serial[a:b][owner[shared]]
    inv_kind[shared] = plan.ex_shared_kind[a:b][owner[shared]]
    total = lines.totals(lines.cents)
    total = np.where(kind == Extra.LOAN, rng.integers(10, 200, n) * 10_000, total)

    flow_id = system_ids(KIND_FLOW, ordinal)
    prefix = np.array([s[3] or plan.claim_prefix for s in spec])[kind]
    form_type = np.array([s[2] or plan.form_type for s in spec])[kind]
    title_head = np.where(
        kind == Extra.LOAN,
        "借款",
        np.where(kind == Extra.REQUISITION, "出差费用申请", np.array(FEE_TYPES)[lines.main] + "报销"),
    )
    names = pa.array(org.name, type=pa.string())
    created_text = _local_text(plan, ev["create"])
    result["flows"].append(
        {
            "id": flow_id,
            "code": join(
                pa.array(prefix), zero_pad((plan.year[host] % 100).astype(np.int64), 2), zero_pad(ordinal + 1, 6)
            ),
            "form_type": pa.array(form_type),
            "title": join(pa.array(title_head), "-", names.take(pa.array(emp)), "-", ids.date_part(created_text)),
            "submitter_id": _staff_id(emp),
            "department_id": _dept_id(org.staff_dept[emp].astype(np.int64)),
            "sum_amount": money(total),
            "pay_money": money(total),
            "currency": pa.array(np.full(n, "CNY")),
            "state": pa.array(np.array([s[1] for s in spec])[kind]),
            "oa_request_id": _nullable_int(plan.ex_oa_ref[a:b], plan.ex_oa_ref[a:b] < 0),
            "create_time": ids.timestamptz(ev["create"]),
            "submit_time": with_nulls(ids.timestamptz(ev["submit"]), ~has["submit"]),
            "approve_time": with_nulls(ids.timestamptz(ev["agree"]), ~has["agree"]),
            "pay_time": with_nulls(ids.timestamptz(ev["paid"]), ~has["paid"]),
            "voucher_no": pa.nulls(n, pa.string()),
            "update_time": ids.timestamptz(last),
        }
    )
    if len(owner):
        code, number = ids.invoice_texts(serial, inv_kind, plan.invoice_yy)
        result["details"].append(
            {
                "id": system_ids(KIND_DETAIL, ordinal[owner] * 8 + lines.seq),
                "flow_id": flow_id.take(pa.array(owner)),
                "seq": pa.array(lines.seq),
                "fee_type": take(FEE_TYPES, lines.fee),
                "amount": money(lines.cents),
                "invoice_code": code,
                "invoice_number": number,
                "invoice_date": with_nulls(lines.kprq, inv_kind == ids.INVOICE_NONE),
                "remark": lines.remark,
            }
        )
    paid = np.flatnonzero(has["paid"])
    if len(paid):
        result["payments"].append(
            {
                "id": system_ids(KIND_PAYMENT, ordinal[paid] * 2 + 1),
                "flow_id": flow_id.take(pa.array(paid)),
                "amount": money(total[paid]),
                "status": pa.array(np.full(len(paid), "SUCCESS")),
                "payee_name": names.take(pa.array(emp[paid])),
                "payee_account": take(org.account, emp[paid]),
                "create_time": ids.timestamptz(ev["pay"][paid]),
                "finish_time": ids.timestamptz(ev["paid"][paid]),
                "update_time": ids.timestamptz(ev["paid"][paid]),
            }
        )
    approver = org.approver[emp].astype(np.int64)
    finance = org.finance[rng.integers(0, len(org.finance), n)].astype(np.int64)
    for k, event, action, who, text in (
        (1, "submit", "freeflow.submit", emp, "提交送审"),
        (2, "agree", "freeflow.agree", approver, "同意"),
        (4, "pay", "freeflow.pay", finance, "发起支付"),
        (5, "paid", "freeflow.pay", finance, "支付成功"),
        (7, "nullify", "freeflow.nullify", emp, "重复填写，作废"),
    ):
        mask = has[event]
        if not mask.any():
            continue
        m = int(mask.sum())
        result["logs"].append(
            {
                "id": pa.array(ordinal[mask] * 8 + k),
                "flow_id": flow_id.filter(pa.array(mask)),
                "action": pa.array(np.full(m, action)),
                "operator_id": _staff_id(who[mask]),
                "time": ids.timestamptz(ev[event][mask]),
                "comment": pa.array(np.full(m, text)),
            }
        )
    return result
