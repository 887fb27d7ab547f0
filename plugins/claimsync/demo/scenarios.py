"""What each generated OA request and its expense claim look like, and which breaks are planted.

A *scenario* fixes one OA expense request's lifecycle and that of its expense claim (if
any): which events happened (in timeline order), the stored states, the payment. Clean
scenarios raise no exception under claimsync.rules; the ``X_*`` ones are differences a
sync explains (rules.py: "no planned write explains it") and raise nothing either.
``P_*`` scenarios exist only for planted breaks.

A *variant* is one kind of planted break: the scenarios of the OA requests it takes, the
expense-only claims it adds, and the exception (code, key) it must raise — exactly one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from claimsync.rules import FKZT_FAILED, FKZT_PAID, FKZT_PAYING, ClaimState, ExceptionCode

# Timeline columns, in the order events happen. OA: C S A1 A2 V; expense: X1 XE X2 P1 P2 P3 XV.
EVENTS: Final = ("c", "s", "x1", "a1", "a2", "xe", "x2", "p1", "p2", "p3", "v", "xv")
EV: Final = {name: i for i, name in enumerate(EVENTS)}
OA_EVENTS: Final = ("c", "s", "a1", "a2", "v")
EXPENSE_EVENTS: Final = ("x1", "xe", "x2", "p1", "p2", "p3", "xv")


class Payment(IntEnum):
    NONE = 0
    PROCESSING = 1
    FAILURE = 2
    SUCCESS = 3


class Flow(IntEnum):
    NONE = 0  # no expense claim for this request
    REAL = 1  # a linked expense claim
    GHOST = 2  # a claim code was issued and written to OA bxdh, but the claim is gone


@dataclass(frozen=True)
class Scenario:
    name: str
    events: str  # space-separated EVENTS present
    cnt: str  # OA currentnodetype
    node: int  # OA current node: 0 creator, 1 manager, 2 finance review, 3 archive
    a1_log: str = ""  # OA log type of the manager's decision: '0' approve, '3' send back, 'r' withdraw
    a2_log: str = ""  # OA log type of finance's decision: '0' approve (archive), '3' send back
    deleted: bool = False
    fkzt: str | None = None
    fkrq_from: str = ""  # event whose date is OA 付款日期
    pzh: bool = False  # OA 凭证号 written (archived in expense)
    flow: Flow = Flow.REAL
    state: str = ""  # expense flow.state
    payment: Payment = Payment.NONE
    xe_action: str = ""  # expense-side decision taken without OA: freeflow.reject / freeflow.agree
    oa_canonical: ClaimState = ClaimState.DRAFT
    expense_canonical: ClaimState | None = None
    clean_weight_young: float = 0.0  # share among clean requests younger than 3 days
    clean_weight_mid: float = 0.0  # 3-14 days
    clean_weight_old: float = 0.0  # older

    @property
    def open(self) -> bool:
        """Either side open (submitted/approved/paying): the claimant must be active in OA."""
        opened = {ClaimState.SUBMITTED, ClaimState.APPROVED, ClaimState.PAYING}
        return self.oa_canonical in opened or self.expense_canonical in opened

    @property
    def live(self) -> bool:
        """Both sides live for duplicate_invoice (not voided/rejected/withdrawn)."""
        dead = {ClaimState.VOIDED, ClaimState.REJECTED, ClaimState.WITHDRAWN}
        return self.oa_canonical not in dead and self.expense_canonical not in dead


S, A, R, W, P, V = (
    ClaimState.SUBMITTED,
    ClaimState.APPROVED,
    ClaimState.REJECTED,
    ClaimState.WITHDRAWN,
    ClaimState.PAID,
    ClaimState.VOIDED,
)
_APPROVED_OA = "c s x1 a1 a2"

SCENARIOS: Final[tuple[Scenario, ...]] = (
    # --- clean: both sides agree -------------------------------------------------------------
    Scenario("draft", "c", "0", 0, flow=Flow.NONE, clean_weight_young=0.07, clean_weight_mid=0.03,
             clean_weight_old=0.015),
    Scenario("draft_deleted", "c v", "0", 0, deleted=True, flow=Flow.NONE, oa_canonical=V,
             clean_weight_young=0.003, clean_weight_mid=0.004, clean_weight_old=0.004),
    Scenario("at_manager", "c s x1", "1", 1, state="approving", oa_canonical=S, expense_canonical=S,
             clean_weight_young=0.40, clean_weight_mid=0.10, clean_weight_old=0.02),
    Scenario("at_finance", "c s x1 a1", "2", 2, a1_log="0", state="approving", oa_canonical=S,
             expense_canonical=S, clean_weight_young=0.18, clean_weight_mid=0.10, clean_weight_old=0.02),
    Scenario("sent_back_by_manager", "c s x1 a1 x2", "0", 0, a1_log="3", state="rejected", oa_canonical=R,
             expense_canonical=R, clean_weight_young=0.04, clean_weight_mid=0.04, clean_weight_old=0.035),
    Scenario("sent_back_by_finance", "c s x1 a1 a2 x2", "0", 0, a1_log="0", a2_log="3", state="rejected",
             oa_canonical=R, expense_canonical=R, clean_weight_young=0.02, clean_weight_mid=0.025,
             clean_weight_old=0.02),
    Scenario("withdrawn", "c s x1 a1 x2", "0", 0, a1_log="r", state="rejected", oa_canonical=W,
             expense_canonical=R, clean_weight_young=0.03, clean_weight_mid=0.025, clean_weight_old=0.02),
    Scenario("approved", _APPROVED_OA + " x2", "3", 3, a1_log="0", a2_log="0", state="paying", oa_canonical=A,
             expense_canonical=A, clean_weight_young=0.12, clean_weight_mid=0.15, clean_weight_old=0.04),
    Scenario("payment_failed", _APPROVED_OA + " x2 p1 p2", "3", 3, a1_log="0", a2_log="0", fkzt=FKZT_FAILED,
             state="paying", payment=Payment.FAILURE, oa_canonical=A, expense_canonical=A,
             clean_weight_young=0.002, clean_weight_mid=0.008, clean_weight_old=0.006),
    Scenario("paying", _APPROVED_OA + " x2 p1", "3", 3, a1_log="0", a2_log="0", fkzt=FKZT_PAYING, state="paying",
             payment=Payment.PROCESSING, oa_canonical=ClaimState.PAYING, expense_canonical=ClaimState.PAYING,
             clean_weight_young=0.04, clean_weight_mid=0.08, clean_weight_old=0.02),
    Scenario("paid", _APPROVED_OA + " x2 p1 p2", "3", 3, a1_log="0", a2_log="0", fkzt=FKZT_PAID, fkrq_from="p2",
             state="paid", payment=Payment.SUCCESS, oa_canonical=P, expense_canonical=P,
             clean_weight_young=0.02, clean_weight_mid=0.25, clean_weight_old=0.33),
    Scenario("archived", _APPROVED_OA + " x2 p1 p2 p3", "3", 3, a1_log="0", a2_log="0", fkzt=FKZT_PAID,
             fkrq_from="p2", pzh=True, state="archived", payment=Payment.SUCCESS, oa_canonical=P,
             expense_canonical=P, clean_weight_young=0.0, clean_weight_mid=0.06, clean_weight_old=0.40),
    Scenario("voided", "c s x1 a1 v xv", "0", 0, a1_log="r", deleted=True, state="nullify", oa_canonical=V,
             expense_canonical=V, clean_weight_young=0.01, clean_weight_mid=0.02, clean_weight_old=0.025),
    # --- clean: a difference the next sync writes away (no exception) ------------------------
    Scenario("x_approved_expense_approving", _APPROVED_OA, "3", 3, a1_log="0", a2_log="0", state="approving",
             oa_canonical=A, expense_canonical=S, clean_weight_young=0.03, clean_weight_mid=0.012,
             clean_weight_old=0.006),
    Scenario("x_sent_back_expense_approving", "c s x1 a1", "0", 0, a1_log="3", state="approving", oa_canonical=R,
             expense_canonical=S, clean_weight_young=0.01, clean_weight_mid=0.006, clean_weight_old=0.004),
    Scenario("x_withdrawn_expense_approving", "c s x1 a1", "0", 0, a1_log="r", state="approving",
             oa_canonical=W, expense_canonical=S, clean_weight_young=0.01, clean_weight_mid=0.005,
             clean_weight_old=0.003),
    Scenario("x_approved_expense_paying", _APPROVED_OA + " x2 p1", "3", 3, a1_log="0", a2_log="0", state="paying",
             payment=Payment.PROCESSING, oa_canonical=A, expense_canonical=ClaimState.PAYING,
             clean_weight_young=0.01, clean_weight_mid=0.01, clean_weight_old=0.004),
    Scenario("x_approved_expense_paid", _APPROVED_OA + " x2 p1 p2", "3", 3, a1_log="0", a2_log="0", state="paid",
             payment=Payment.SUCCESS, oa_canonical=A, expense_canonical=P, clean_weight_young=0.005,
             clean_weight_mid=0.01, clean_weight_old=0.01),
    # --- planted breaks only ----------------------------------------------------------------
    Scenario("p_submitted_no_claim", "c s", "1", 1, flow=Flow.NONE, oa_canonical=S),
    Scenario("p_approved_claim_gone", "c s a1 a2", "3", 3, a1_log="0", a2_log="0", flow=Flow.GHOST, oa_canonical=A),
    Scenario("p_submitted_expense_rejected", "c s x1 xe", "1", 1, state="rejected", xe_action="freeflow.reject",
             oa_canonical=S, expense_canonical=R),
    Scenario("p_paid_expense_paying", _APPROVED_OA + " x2 p1", "3", 3, a1_log="0", a2_log="0", fkzt=FKZT_PAID,
             fkrq_from="p1", state="paying", payment=Payment.PROCESSING, oa_canonical=P,
             expense_canonical=ClaimState.PAYING),
    Scenario("p_deleted_expense_approving", "c s x1 v", "1", 1, deleted=True, state="approving", oa_canonical=V,
             expense_canonical=S),
    Scenario("p_submitted_expense_paid", "c s x1 xe p1 p2", "1", 1, state="paid", payment=Payment.SUCCESS,
             xe_action="freeflow.agree", oa_canonical=S, expense_canonical=P),
    Scenario("p_sent_back_expense_paying", "c s x1 a1 xe p1", "0", 0, a1_log="3", state="paying",
             payment=Payment.PROCESSING, xe_action="freeflow.agree", oa_canonical=R,
             expense_canonical=ClaimState.PAYING),
)  # fmt: skip
SCENARIO_ID: Final = {s.name: i for i, s in enumerate(SCENARIOS)}


@dataclass(frozen=True)
class ScenarioTable:
    """Per-scenario attributes as arrays indexed by scenario id (for vectorised lookups)."""

    present: npt.NDArray[np.bool_]  # (scenario, event)
    cnt: npt.NDArray[np.str_]
    node: npt.NDArray[np.int64]
    a1_log: npt.NDArray[np.str_]
    a2_log: npt.NDArray[np.str_]
    deleted: npt.NDArray[np.bool_]
    fkzt: npt.NDArray[np.str_]
    fkrq_from: npt.NDArray[np.int64]
    pzh: npt.NDArray[np.bool_]
    flow: npt.NDArray[np.int64]
    state: npt.NDArray[np.str_]
    payment: npt.NDArray[np.int64]
    xe_action: npt.NDArray[np.str_]
    open: npt.NDArray[np.bool_]
    live: npt.NDArray[np.bool_]


def scenario_table() -> ScenarioTable:
    present = np.zeros((len(SCENARIOS), len(EVENTS)), dtype=bool)
    for i, sc in enumerate(SCENARIOS):
        for name in sc.events.split():
            present[i, EV[name]] = True
    return ScenarioTable(
        present=present,
        cnt=np.array([s.cnt for s in SCENARIOS], dtype=np.str_),
        node=np.array([s.node for s in SCENARIOS], dtype=np.int64),
        a1_log=np.array([s.a1_log for s in SCENARIOS], dtype=np.str_),
        a2_log=np.array([s.a2_log for s in SCENARIOS], dtype=np.str_),
        deleted=np.array([s.deleted for s in SCENARIOS], dtype=np.bool_),
        fkzt=np.array([s.fkzt or "" for s in SCENARIOS], dtype=np.str_),
        fkrq_from=np.array([EV[s.fkrq_from] if s.fkrq_from else -1 for s in SCENARIOS], dtype=np.int64),
        pzh=np.array([s.pzh for s in SCENARIOS], dtype=np.bool_),
        flow=np.array([int(s.flow) for s in SCENARIOS], dtype=np.int64),
        state=np.array([s.state for s in SCENARIOS], dtype=np.str_),
        payment=np.array([int(s.payment) for s in SCENARIOS], dtype=np.int64),
        xe_action=np.array([s.xe_action for s in SCENARIOS], dtype=np.str_),
        open=np.array([s.open for s in SCENARIOS], dtype=np.bool_),
        live=np.array([s.live for s in SCENARIOS], dtype=np.bool_),
    )


class Extra(IntEnum):
    """Expense documents with no OA request of their own."""

    DRAFT = 0  # an expense-native draft (clean)
    NULLIFIED = 1  # an expense-native claim voided before submission (clean)
    LOAN = 2  # form_type loan (ignored by claimsync)
    REQUISITION = 3  # form_type requisition, linked to an OA 出差申请 (ignored)
    UNLINKED = 4  # a claim in approval with no OA request (planted: missing_in_oa)
    SECOND_CLAIM = 5  # a second claim for an OA request, linked by bxdh (planted: duplicate_link)
    DRAFT_SHARED_INVOICE = 6  # an expense draft reusing an OA draft's 全电 invoice (planted: duplicate_invoice)


EXTRA_STATE: Final = {
    Extra.DRAFT: "draft",
    Extra.NULLIFIED: "nullify",
    Extra.UNLINKED: "approving",
    Extra.SECOND_CLAIM: "approving",
    Extra.DRAFT_SHARED_INVOICE: "draft",
}


class Mod(IntEnum):
    """Per-request modifications a planted break applies on top of its scenario (bit flags)."""

    OA_LINE0_SHARED = 1 << 0  # OA line 1 carries the group's shared invoice
    EXP_LINE0_SHARED = 1 << 1  # expense line 1 carries the group's shared invoice
    EXP_OWN_INVOICES = 1 << 2  # expense lines carry invoices of their own (not the OA ones)
    OA_LINE_OFF = 1 << 3  # OA line 1 amount changed, header kept
    EXP_LINE_OFF = 1 << 4  # expense line 1 amount changed, header kept
    EXP_AMOUNT_OFF = 1 << 5  # expense line 1 and header changed together
    EXP_CURRENCY = 1 << 6  # expense currency HKD, same figures
    EXP_OTHER_EMPLOYEE = 1 << 7  # expense submitter is another employee
    OA_UNKNOWN_EMPLOYEE = 1 << 8  # OA 申请人 names no hrmresource row
    EXP_UNKNOWN_EMPLOYEE = 1 << 9  # expense submitter names no staff row
    BXDH_OTHER = 1 << 10  # OA bxdh is another claim's code (the group's)
    NO_BXDH = 1 << 11  # OA bxdh not written (link by oa_request_id only)
    NO_OA_REQUEST_ID = 1 << 12  # expense oa_request_id empty (link by bxdh only)
    INACTIVE_EMPLOYEE = 1 << 13  # claimant left the company (OA status > 3)
    SHARED_FULL_E_INVOICE = 1 << 14  # the shared invoice is a 20-digit 全电 number


@dataclass(frozen=True)
class Member:
    scenario: str
    mods: int = 0


@dataclass(frozen=True)
class Variant:
    """One kind of planted break (or, with ``code`` None, a clean multi-request pattern)."""

    name: str
    code: ExceptionCode | None
    label: str  # what was planted, for the answer key's details
    members: tuple[Member, ...]  # OA requests, in time order
    extras: tuple[Extra, ...] = ()  # expense-only claims, hosted at the first member (or anywhere)
    key_on: str = "oa"  # "oa" (first member), "exp" (the group's claim), "inv" (shared invoice)
    fixed_by_sync: bool = False
    recent: bool = False  # the break happens inside the grace window (in_flight)
    in_flight_of: ExceptionCode | None = None  # what a recent variant raises when the window is empty
    extra_link: str = ""  # UNLINKED claims: "" none, "other_workflow", "missing_request"


_SHARED = Mod.OA_LINE0_SHARED | Mod.EXP_LINE0_SHARED
E = ExceptionCode

VARIANTS: Final[tuple[Variant, ...]] = (
    Variant("missing_in_expense.not_synced", E.MISSING_IN_EXPENSE,
            "OA request submitted, no expense claim yet (sync will create it)",
            (Member("p_submitted_no_claim", Mod.NO_BXDH),), fixed_by_sync=True),
    Variant("missing_in_expense.claim_gone", E.MISSING_IN_EXPENSE,
            "OA request approved, its bxdh names a claim that no longer exists in expense",
            (Member("p_approved_claim_gone"),)),
    Variant("missing_in_oa.unlinked", E.MISSING_IN_OA, "expense claim in approval with no OA request",
            (), (Extra.UNLINKED,), key_on="exp"),
    Variant("missing_in_oa.other_workflow", E.MISSING_IN_OA,
            "expense claim whose oa_request_id names an OA request of another workflow (请假申请)",
            (), (Extra.UNLINKED,), key_on="exp", extra_link="other_workflow"),
    Variant("missing_in_oa.no_such_request", E.MISSING_IN_OA,
            "expense claim whose oa_request_id names no OA request at all",
            (), (Extra.UNLINKED,), key_on="exp", extra_link="missing_request"),
    Variant("status_mismatch.expense_rejected", E.STATUS_MISMATCH,
            "OA still in approval, expense claim rejected in expense",
            (Member("p_submitted_expense_rejected"),)),
    Variant("status_mismatch.oa_ahead", E.STATUS_MISMATCH,
            "OA says 已支付, expense payment still processing",
            (Member("p_paid_expense_paying"),)),
    Variant("status_mismatch.oa_deleted", E.STATUS_MISMATCH, "OA request deleted, expense claim still in approval",
            (Member("p_deleted_expense_approving"),)),
    Variant("paid_without_approval.paid", E.PAID_WITHOUT_APPROVAL,
            "expense claim paid while the OA request is still in approval",
            (Member("p_submitted_expense_paid"),)),
    Variant("paid_without_approval.sent_back", E.PAID_WITHOUT_APPROVAL,
            "expense payment started although OA sent the request back",
            (Member("p_sent_back_expense_paying"),)),
    Variant("amount_mismatch.line_changed", E.AMOUNT_MISMATCH,
            "expense claim total changed (a line edited in expense); OA bxje differs",
            (Member("approved", Mod.EXP_AMOUNT_OFF),)),
    Variant("amount_mismatch.currency", E.AMOUNT_MISMATCH, "same figures, but expense currency HKD vs OA CNY",
            (Member("at_finance", Mod.EXP_CURRENCY),)),
    Variant("lines_total_mismatch.oa", E.LINES_TOTAL_MISMATCH, "OA lines do not add up to OA bxje",
            (Member("paid", Mod.OA_LINE_OFF),)),
    Variant("lines_total_mismatch.expense", E.LINES_TOTAL_MISMATCH,
            "expense lines do not add up to the claim's sum_amount",
            (Member("at_manager", Mod.EXP_LINE_OFF),), key_on="exp"),
    Variant("employee_mismatch.differs", E.EMPLOYEE_MISMATCH,
            "expense claim submitted under another employee than the OA 申请人",
            (Member("approved", Mod.EXP_OTHER_EMPLOYEE),)),
    Variant("employee_mismatch.unknown_in_oa", E.EMPLOYEE_MISMATCH, "OA 申请人 is not in hrmresource",
            (Member("at_manager", Mod.OA_UNKNOWN_EMPLOYEE),)),
    Variant("employee_mismatch.unknown_in_expense", E.EMPLOYEE_MISMATCH,
            "expense submitter is not in the staff table", (Member("paid", Mod.EXP_UNKNOWN_EMPLOYEE),)),
    Variant("employee_mismatch.inactive", E.EMPLOYEE_MISMATCH,
            "open claim whose claimant has left (OA status > 3)",
            (Member("at_finance", Mod.INACTIVE_EMPLOYEE),)),
    Variant("duplicate_invoice.within_oa", E.DUPLICATE_INVOICE,
            "same invoice (code+number) on two OA requests",
            (Member("paid", _SHARED), Member("approved", Mod.OA_LINE0_SHARED)), key_on="inv"),
    Variant("duplicate_invoice.within_expense", E.DUPLICATE_INVOICE,
            "same invoice (code+number) on two expense claims",
            (Member("archived", _SHARED), Member("at_finance", Mod.EXP_LINE0_SHARED)), key_on="inv"),
    Variant("duplicate_invoice.across_systems", E.DUPLICATE_INVOICE,
            "same 全电 invoice on an OA draft and on an expense draft",
            (Member("draft", Mod.OA_LINE0_SHARED | Mod.SHARED_FULL_E_INVOICE),), (Extra.DRAFT_SHARED_INVOICE,),
            key_on="inv"),
    Variant("duplicate_link.request_two_claims", E.DUPLICATE_LINK,
            "OA request reached by two claims (one by oa_request_id, one by bxdh)",
            (Member("at_manager", Mod.BXDH_OTHER | Mod.EXP_OWN_INVOICES),),
            (Extra.SECOND_CLAIM,)),
    Variant("duplicate_link.claim_two_requests", E.DUPLICATE_LINK,
            "claim linked to one OA request by oa_request_id and named by another's bxdh",
            (Member("at_manager", Mod.EXP_OWN_INVOICES), Member("p_submitted_no_claim", Mod.BXDH_OTHER)),
            key_on="exp"),
    Variant("duplicate_link.two_requests_by_bxdh", E.DUPLICATE_LINK,
            "two OA requests carry the same claim code as bxdh",
            (Member("p_submitted_no_claim", Mod.BXDH_OTHER), Member("p_submitted_no_claim", Mod.BXDH_OTHER)),
            (Extra.SECOND_CLAIM,), key_on="exp"),
    Variant("in_flight.not_synced_yet", E.IN_FLIGHT, "OA request submitted minutes ago, no expense claim yet",
            (Member("p_submitted_no_claim", Mod.NO_BXDH),), fixed_by_sync=True, recent=True,
            in_flight_of=E.MISSING_IN_EXPENSE),
    Variant("in_flight.oa_deleted_just_now", E.IN_FLIGHT,
            "OA request deleted minutes ago, expense claim still in approval",
            (Member("p_deleted_expense_approving"),), recent=True, in_flight_of=E.STATUS_MISMATCH),
    Variant("in_flight.expense_rejected_just_now", E.IN_FLIGHT,
            "expense claim rejected minutes ago while OA is in approval",
            (Member("p_submitted_expense_rejected"),), recent=True, in_flight_of=E.STATUS_MISMATCH),
    # Clean pattern: a rejected request resubmitted with the same invoices (not a duplicate:
    # the rejected pair is not live).
    Variant("clean.resubmitted", None, "", (Member("sent_back_by_manager", _SHARED), Member("approved", _SHARED))),
)  # fmt: skip
VARIANT_ID: Final = {v.name: i for i, v in enumerate(VARIANTS)}

# The order codes are planted in when the budget is short (every code once before any twice).
PLANT_CODE_ORDER: Final = (
    E.MISSING_IN_EXPENSE,
    E.MISSING_IN_OA,
    E.STATUS_MISMATCH,
    E.PAID_WITHOUT_APPROVAL,
    E.AMOUNT_MISMATCH,
    E.LINES_TOTAL_MISMATCH,
    E.EMPLOYEE_MISMATCH,
    E.DUPLICATE_INVOICE,
    E.DUPLICATE_LINK,
    E.IN_FLIGHT,
)
