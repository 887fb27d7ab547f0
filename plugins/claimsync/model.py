"""The canonical model: the frames every stage after extraction speaks.

Each side's rows are mapped (claimsync.canonical) onto these columns, so reconcile,
quality gates, planning and reports never see a system's own column names.

Conventions
- Money is **integer cents** (``int64`` columns named ``*_cents``): exact, and fast in
  pandas. Convert with :func:`cents_to_decimal` / :func:`decimal_to_cents` at the edges.
- Times are tz-aware timestamps; OA text dates are read as Asia/Shanghai (configurable).
- Codes and keys are strings (Arrow-backed in pandas 3); nullable integers use ``Int64``.
- ``state`` holds a :class:`claimsync.rules.ClaimState` value.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Final

# One row per OA expense request (workflow_requestbase ⋈ formtable_main_<form>).
OA_CLAIM_COLUMNS: Final = (
    "request_id",  # int64, requestid
    "request_mark",  # 流程编号
    "claim_code",  # bxdh: the expense claim code written back by claimsync, or null
    "employee_code",  # sqr → hrmresource.workcode (null when the employee row is missing)
    "employee_status",  # Int64, hrmresource.status (active = status <= 3)
    "department_code",  # sqbm → hrmdepartment.departmentmark
    "amount_cents",  # bxje
    "currency",  # bz
    "state",  # canonical ClaimState
    "fkzt",  # 付款状态 as stored
    "fkrq",  # 付款日期 as a date (null when empty)
    "pzh",  # 凭证号
    "approved_at",  # time of the archiving log entry (approve or force-archive), else null
    "created_at",
    "changed_at",  # lastoperatedate + lastoperatetime: the OA change cursor
    "lines_total_cents",  # sum of the lines' je
    "line_count",
)

# One row per expense flow of the synced form type.
EXPENSE_CLAIM_COLUMNS: Final = (
    "flow_id",
    "claim_code",  # flow.code
    "oa_request_id",  # Int64, the custom field 关联OA流程
    "employee_code",  # submitter → staff.code (null when the staff row is missing)
    "department_code",
    "amount_cents",  # sum_amount
    "pay_cents",  # pay_money (finance may cut it)
    "currency",
    "state",  # canonical ClaimState (derived with the payments)
    "raw_state",  # flow.state as stored
    "approve_time",
    "pay_time",
    "voucher_no",
    "created_at",
    "changed_at",  # flow.update_time: the expense change cursor
    "lines_total_cents",
    "line_count",
)

# Lines of either side; ``claim_ref`` is the OA request id (as text) or the expense claim code.
LINE_COLUMNS: Final = (
    "claim_ref",
    "seq",
    "fee_type",
    "amount_cents",
    "invoice_code",
    "invoice_number",
    "invoice_date",
)

PAYMENT_COLUMNS: Final = (
    "payment_id",
    "claim_code",
    "amount_cents",
    "status",  # PROCESSING | SUCCESS | FAILURE
    "payee_name",
    "payee_account_masked",  # never the clear account number
    "created_at",
    "finished_at",
    "changed_at",
)

EMPLOYEE_COLUMNS: Final = (
    "employee_code",  # OA workcode = expense staff.code
    "name",
    "department_code",
    "active",  # bool; OA: status <= 3
    "status",  # Int64 OA status (null on the expense side)
    "email",
    "changed_at",
)

DEPARTMENT_COLUMNS: Final = (
    "department_code",  # OA departmentmark = expense department.code
    "name",
    "parent_code",
    "active",
    "changed_at",
)

# One row per exception found by a reconciliation (claimsync.reconcile.ReconResult.exceptions).
EXCEPTION_COLUMNS: Final = (
    "code",  # ExceptionCode value
    "severity",
    "business_key",  # see claimsync.rules: oa:<id>, exp:<code>, inv:<…>
    "oa_request_id",  # Int64
    "claim_code",
    "employee_code",
    "department_code",
    "oa_amount_cents",  # Int64
    "expense_amount_cents",  # Int64
    "amount_impact_cents",  # int64, >= 0
    "currency",
    "oa_state",
    "expense_state",
    "detail",  # one human sentence, no personal data
)

_CENT = Decimal("0.01")


def decimal_to_cents(amount: Decimal) -> int:
    """Exact conversion; an amount with more than two decimals is an error, not a rounding."""
    quantized = amount.quantize(_CENT, rounding=ROUND_HALF_UP)
    if quantized != amount:
        raise ValueError(f"amount {amount} has more than two decimals")
    return int(quantized * 100)


def cents_to_decimal(cents: int) -> Decimal:
    return (Decimal(int(cents)) / 100).quantize(_CENT)


def format_cents(cents: int) -> str:
    """``123456`` → ``'1234.56'`` (plain, for CSV)."""
    return str(cents_to_decimal(cents))
