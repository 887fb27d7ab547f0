"""The vocabulary of reconciliation: canonical lifecycle, exception codes, business keys.

This module is the contract between the demo generator (which plants breaks and writes
the answer key) and the reconciler (which must find exactly those). The rules below are
the precise reading of DESIGN.md's table; change them here first.

Canonical claim state (SOURCE_SYSTEMS.md "How the two lifecycles map")
----------------------------------------------------------------------
OA (workflow_requestbase + form header + approval log):
  deleted = 1                                  → voided
  currentnodetype '3' and fkzt 支付中          → paying
  currentnodetype '3' and fkzt 已支付          → paid
  currentnodetype '3' otherwise (null/支付失败) → approved
  currentnodetype '1' or '2'                   → submitted
  currentnodetype '0': the last *decisive* log (logtype in 2,0,3,r,e; by date, time, logid; the
      date and time texts compared byte by byte, whatever the database's collation)
      is '3' → rejected; is 'r' → withdrawn; anything else or no log → draft
Expense (flow.state + payment):
  draft → draft; pending, approving → submitted; rejected → rejected; nullify → voided;
  paid, archived → paid;
  paying with a PROCESSING or SUCCESS payment → paying; paying otherwise → approved.
Forward order: draft < submitted < approved < paying < paid. rejected, withdrawn, voided
are exits. OA ``withdrawn`` corresponds to expense ``rejected`` (same canonical meaning).

Linking
-------
Only OA requests of the configured workflow (reference 38) and expense flows with
form_type 'expense' take part. An expense claim links to the OA request whose requestid
equals its ``oa_request_id``; a claim without ``oa_request_id`` links to the OA request whose
``bxdh`` equals its code (fallback). A claim whose oa_request_id names no OA request is
unlinked. ``duplicate_link``: an OA request reached by two or more claims, or a claim that
reaches two or more OA requests (its oa_request_id names one, and another's bxdh names the
claim's code; or two requests carry its code as bxdh). Records in a duplicate_link are kept
out of every pairwise rule and out of missing_in_*.

Grace window (default 30 min, ``as_of`` is the reconciliation time)
--------------------------------------------------------------------
A record is *recent* when its change cursor (OA lastoperatedate+lastoperatetime in
Asia/Shanghai; expense update_time) is later than ``as_of - grace``. A pair is recent when
either side is. Where a recent record or pair would raise ``missing_in_expense`` or
``status_mismatch``, it raises ``in_flight`` instead (timing, not a break). No other code is
affected by the grace window.

Rules, evaluated on linked pairs unless said otherwise
------------------------------------------------------
missing_in_expense   unlinked OA request in submitted/approved/paying/paid, not recent.
missing_in_oa        unlinked expense claim not in draft/voided (it bypassed approval).
paid_without_approval expense paying/paid while OA is not approved/paying/paid.
status_mismatch      states differ (withdrawn ≡ rejected), not paid_without_approval, and
                     no planned write explains it. Sync explains exactly:
                       OA approved & expense submitted        (→ expense approved)
                       OA rejected/withdrawn & expense submitted (→ expense rejected)
                       OA approved < expense approved/paying/paid on the forward order,
                       i.e. expense ahead in approved..paid      (→ OA fkzt)
amount_mismatch      neither side voided, and |OA bxje − expense sum_amount| > tolerance
                     of the currency (default 0.00), or the currencies differ.
lines_total_mismatch per side, any non-voided claim (linked or not): |header total − sum of
                     its lines| > tolerance. A claim with no lines sums to 0.
employee_mismatch    per claim, not voided: linked pair whose claimant codes differ
                     (OA formtable sqr → hrmresource.workcode, expense submitter → staff.code);
                     or a claimant unknown on its own side (no such employee row); or, for
                     an open claim (submitted/approved/paying), an OA claimant with status > 3.
duplicate_invoice    an invoice (``code:number``; a 20-digit 全电 number alone as ``number``)
                     on two or more *distinct* live claims, counting an OA request and its
                     linked claim as one. Live = not voided/rejected/withdrawn.
duplicate_link       see Linking.
write_conflict       raised by apply, never by reconcile.

Business keys (the identity of an exception across runs)
--------------------------------------------------------
oa:<requestid>      for a rule about an OA request or a linked pair
exp:<claim code>    for a rule about an unlinked expense claim (and an expense-side
                    lines_total_mismatch of a linked pair, and a claim in a duplicate_link
                    that reaches two requests)
inv:<invoice key>   for duplicate_invoice
write:<target>:<table>:<record key>  for write_conflict
"""

from __future__ import annotations

from enum import StrEnum


class ClaimState(StrEnum):
    """The canonical lifecycle shared by both systems."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    PAYING = "paying"
    PAID = "paid"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    VOIDED = "voided"


# Position on the forward path; exits have none.
FORWARD_ORDER: dict[ClaimState, int] = {
    ClaimState.DRAFT: 0,
    ClaimState.SUBMITTED: 1,
    ClaimState.APPROVED: 2,
    ClaimState.PAYING: 3,
    ClaimState.PAID: 4,
}
APPROVED_OR_LATER = frozenset({ClaimState.APPROVED, ClaimState.PAYING, ClaimState.PAID})
EXITS = frozenset({ClaimState.REJECTED, ClaimState.WITHDRAWN, ClaimState.VOIDED})


class Severity(StrEnum):
    INFO = "info"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class ExceptionCode(StrEnum):
    """DESIGN.md's exception codes. The values are a stable interface."""

    MISSING_IN_EXPENSE = "missing_in_expense"
    MISSING_IN_OA = "missing_in_oa"
    STATUS_MISMATCH = "status_mismatch"
    PAID_WITHOUT_APPROVAL = "paid_without_approval"
    AMOUNT_MISMATCH = "amount_mismatch"
    LINES_TOTAL_MISMATCH = "lines_total_mismatch"
    DUPLICATE_INVOICE = "duplicate_invoice"
    EMPLOYEE_MISMATCH = "employee_mismatch"
    DUPLICATE_LINK = "duplicate_link"
    WRITE_CONFLICT = "write_conflict"
    IN_FLIGHT = "in_flight"

    @property
    def severity(self) -> Severity:
        return SEVERITY[self]


SEVERITY: dict[ExceptionCode, Severity] = {
    ExceptionCode.MISSING_IN_EXPENSE: Severity.HIGH,
    ExceptionCode.MISSING_IN_OA: Severity.CRITICAL,
    ExceptionCode.STATUS_MISMATCH: Severity.MEDIUM,
    ExceptionCode.PAID_WITHOUT_APPROVAL: Severity.CRITICAL,
    ExceptionCode.AMOUNT_MISMATCH: Severity.HIGH,
    ExceptionCode.LINES_TOTAL_MISMATCH: Severity.MEDIUM,
    ExceptionCode.DUPLICATE_INVOICE: Severity.CRITICAL,
    ExceptionCode.EMPLOYEE_MISMATCH: Severity.MEDIUM,
    ExceptionCode.DUPLICATE_LINK: Severity.HIGH,
    ExceptionCode.WRITE_CONFLICT: Severity.HIGH,
    ExceptionCode.IN_FLIGHT: Severity.INFO,
}

# The codes a reconciliation can raise (write_conflict comes from apply).
RECONCILE_CODES: tuple[ExceptionCode, ...] = tuple(c for c in ExceptionCode if c is not ExceptionCode.WRITE_CONFLICT)

# OA fkzt (付款状态) values, and the expense state → OA fkzt direction of sync.
FKZT_PAYING = "支付中"
FKZT_PAID = "已支付"
FKZT_FAILED = "支付失败"

OA_DECISIVE_LOGTYPES = frozenset({"2", "0", "3", "r", "e"})
EXPENSE_STATES = frozenset({"draft", "pending", "approving", "rejected", "paying", "paid", "archived", "nullify"})
PAYMENT_STATUSES = frozenset({"PROCESSING", "SUCCESS", "FAILURE"})
FEE_TYPES = ("差旅费", "交通费", "餐费", "住宿费", "办公用品", "通讯费", "招待费")


def oa_key(request_id: int) -> str:
    return f"oa:{request_id}"


def expense_key(claim_code: str) -> str:
    return f"exp:{claim_code}"


def invoice_key(invoice_code: str | None, invoice_number: str) -> str:
    """``code:number``; a 20-digit 全电 number stands alone (its code is empty)."""
    number = invoice_number.strip()
    code = (invoice_code or "").strip()
    if len(number) == 20 or not code:
        return f"inv:{number}"
    return f"inv:{code}:{number}"
