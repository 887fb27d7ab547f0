"""Bilingual labels: Chinese first (finance reads Chinese), English beside."""

from __future__ import annotations

from typing import Final

from claimsync.rules import ClaimState, ExceptionCode, Severity

CODE_LABELS: Final[dict[str, str]] = {
    ExceptionCode.MISSING_IN_EXPENSE: "报销系统缺单",
    ExceptionCode.MISSING_IN_OA: "OA缺单（绕过审批）",
    ExceptionCode.STATUS_MISMATCH: "状态不一致",
    ExceptionCode.PAID_WITHOUT_APPROVAL: "未审批先付款",
    ExceptionCode.AMOUNT_MISMATCH: "金额不一致",
    ExceptionCode.LINES_TOTAL_MISMATCH: "明细合计不符",
    ExceptionCode.DUPLICATE_INVOICE: "重复发票",
    ExceptionCode.EMPLOYEE_MISMATCH: "申请人不一致",
    ExceptionCode.DUPLICATE_LINK: "重复关联",
    ExceptionCode.WRITE_CONFLICT: "回写冲突",
    ExceptionCode.IN_FLIGHT: "处理中（时间差）",
}

SEVERITY_LABELS: Final[dict[str, str]] = {
    Severity.CRITICAL: "严重",
    Severity.HIGH: "高",
    Severity.MEDIUM: "中",
    Severity.INFO: "提示",
}
SEVERITY_ORDER: Final[dict[str, int]] = {
    Severity.CRITICAL: 0,
    Severity.HIGH: 1,
    Severity.MEDIUM: 2,
    Severity.INFO: 3,
}

STATE_LABELS: Final[dict[str, str]] = {
    ClaimState.DRAFT: "草稿",
    ClaimState.SUBMITTED: "审批中",
    ClaimState.APPROVED: "已审批",
    ClaimState.PAYING: "支付中",
    ClaimState.PAID: "已支付",
    ClaimState.REJECTED: "已退回",
    ClaimState.WITHDRAWN: "已撤回",
    ClaimState.VOIDED: "已作废",
}

STATUS_LABELS: Final[dict[str, str]] = {
    "open": "未处理",
    "acknowledged": "已确认",
    "resolved": "已解决",
    "written_off": "已核销",
}

# Field names of the side-by-side view and of the XLSX/CSV headers.
FIELD_LABELS: Final[dict[str, str]] = {
    "code": "异常类型",
    "severity": "严重程度",
    "business_key": "业务键",
    "status": "处理状态",
    "oa_request_id": "OA流程号",
    "request_id": "OA流程号",
    "request_mark": "流程编号",
    "claim_code": "报销单号",
    "employee_code": "申请人工号",
    "department_code": "部门",
    "oa_amount": "OA金额",
    "expense_amount": "报销金额",
    "amount": "金额",
    "pay_amount": "支付金额",
    "amount_impact": "影响金额",
    "currency": "币种",
    "oa_state": "OA状态",
    "expense_state": "报销状态",
    "state": "状态",
    "raw_state": "原始状态",
    "lines_total": "明细合计",
    "line_count": "明细行数",
    "changed_at": "最后变更",
    "first_seen": "首次发现",
    "last_seen": "最近发现",
    "age_days": "账龄（天）",
    "owner": "负责人",
    "note": "备注",
    "detail": "说明",
}


def bilingual(chinese: str, english: str) -> str:
    """``'金额 / amount'``: the one format every label uses."""
    return f"{chinese} / {english}"


def code_label(code: str) -> str:
    return bilingual(CODE_LABELS.get(code, code), code)


def severity_label(severity: str) -> str:
    return bilingual(SEVERITY_LABELS.get(severity, severity), severity)


def state_label(state: str | None) -> str:
    if not state:
        return ""
    return bilingual(STATE_LABELS.get(state, state), state)


def status_label(status: str) -> str:
    return bilingual(STATUS_LABELS.get(status, status), status)


def field_label(name: str) -> str:
    english = name.replace("_", " ")
    return bilingual(FIELD_LABELS.get(name, name), english)
