"""The workspace's words in Chinese (the default) and English (``?lang=en``)."""

from __future__ import annotations

from typing import Final

LANGUAGES: Final = ("zh", "en")
DEFAULT_LANGUAGE: Final = "zh"

_LABELS: Final[dict[str, tuple[str, str]]] = {
    "app_title": ("对账工作台", "Reconciliation workspace"),
    "runs": ("对账批次", "Reconciliation runs"),
    "run": ("对账批次", "Run"),
    "exceptions": ("差异明细", "Exceptions"),
    "all_exceptions": ("全部差异", "All exceptions"),
    "exception": ("差异", "Exception"),
    "date": ("日期", "Date"),
    "window": ("数据窗口", "Window"),
    "full_run": ("全量", "full"),
    "status": ("状态", "Status"),
    "run_status": ("运行状态", "Run status"),
    "match_rate": ("匹配率", "Match rate"),
    "signoff": ("签核", "Sign-off"),
    "preparer": ("编制人", "Preparer"),
    "reviewer": ("复核人", "Reviewer"),
    "not_signed": ("未签核", "not signed"),
    "signed_by": ("签核人", "signed by"),
    "count": ("笔数", "Count"),
    "amount": ("金额", "Amount"),
    "total": ("合计", "Total"),
    "code": ("差异类型", "Exception code"),
    "severity": ("严重程度", "Severity"),
    "department": ("部门", "Department"),
    "age": ("账龄", "Age"),
    "aging": ("账龄分布", "Aging"),
    "trend": ("近 30 次趋势", "Trend over the last 30 runs"),
    "by_code": ("按差异类型汇总", "Summary by exception code"),
    "by_department": ("按部门汇总", "By department"),
    "other_departments": ("其余 {n} 个部门", "{n} other departments"),
    "by_status": ("处理进度", "Work progress"),
    "header": ("批次信息", "Run"),
    "run_id": ("批次号", "Run id"),
    "as_of": ("对账时点", "As of"),
    "triggered_by": ("触发人", "Triggered by"),
    "config_version": ("配置版本", "Config version"),
    "population": ("对账范围", "Population"),
    "oa_claims": ("OA 单据", "OA claims"),
    "expense_claims": ("报销单据", "Expense claims"),
    "matched": ("已匹配", "Matched"),
    "filter": ("筛选", "Filter"),
    "apply": ("应用", "Apply"),
    "reset": ("清除", "Reset"),
    "any": ("全部", "any"),
    "unresolved": ("未解决（待处理+已确认）", "unresolved (open + acknowledged)"),
    "search": ("单号", "Request id / claim code"),
    "owner": ("负责人", "Owner"),
    "sort": ("排序", "Sort"),
    "sort_amount": ("金额从大到小", "largest amount first"),
    "sort_age": ("账龄从长到短", "oldest first"),
    "next_page": ("下一页", "Next page"),
    "first_page": ("第一页", "First page"),
    "shown": ("共 {total} 条，本页 {shown} 条", "{total} in all, {shown} on this page"),
    "export_csv": ("导出 CSV", "Export CSV"),
    "export_xlsx": ("导出 Excel", "Export Excel"),
    "html_report": ("HTML 报告", "HTML report"),
    "xlsx_report": ("Excel 报告", "Excel report"),
    "view_exceptions": ("查看差异明细", "View exceptions"),
    "request_id": ("OA 流程号", "OA request id"),
    "claim_code": ("报销单号", "Claim code"),
    "employee_code": ("工号", "Employee code"),
    "oa_amount": ("OA 金额", "OA amount"),
    "expense_amount": ("报销金额", "Expense amount"),
    "amount_impact": ("差异金额", "Amount impact"),
    "currency": ("币种", "Currency"),
    "oa_state": ("OA 状态", "OA state"),
    "expense_state": ("报销状态", "Expense state"),
    "first_seen": ("首次发现", "First seen"),
    "last_seen": ("最近发现", "Last seen"),
    "detail": ("说明", "Detail"),
    "days": ("天", "days"),
    "business_key": ("业务键", "Business key"),
    "seen_in_runs": ("出现批次数", "Seen in runs"),
    "as_reconciled": ("对账时记录的两边数据", "Both sides as reconciled"),
    "live_sources": ("源系统当前数据", "Live in the source systems"),
    "field": ("字段", "Field"),
    "oa_system": ("OA 系统", "OA system"),
    "expense_system": ("报销系统", "Expense system"),
    "differs": ("不一致", "differs"),
    "source_unavailable": ("{system}数据暂不可用：{reason}", "{system} data is unavailable: {reason}"),
    "not_configured": ("未配置连接", "no connection configured"),
    "not_found_in_source": ("源系统中找不到该单据", "no such record in the source system"),
    "approval_log": ("OA 审批记录", "OA approval log"),
    "payments": ("报销系统付款记录", "Payments in the expense system"),
    "flow_log": ("报销系统操作记录", "Expense system log"),
    "operator": ("操作人", "Operator"),
    "time": ("时间", "Time"),
    "action": ("操作", "Action"),
    "remark": ("意见", "Remark"),
    "payee": ("收款人", "Payee"),
    "payee_account": ("收款账号", "Payee account"),
    "finished": ("完成时间", "Finished"),
    "none": ("无", "none"),
    "open_in_oa": ("在 OA 中打开", "Open in OA"),
    "open_in_expense": ("在报销系统中打开", "Open in the expense system"),
    "history": ("处理记录", "History"),
    "note": ("备注", "Note"),
    "note_required": ("备注（必填）", "Note (required)"),
    "note_optional": ("备注（选填）", "Note (optional)"),
    "actions": ("处理", "Actions"),
    "assign": ("指派负责人", "Assign owner"),
    "assign_button": ("指派", "Assign"),
    "unassigned": ("未指派", "unassigned"),
    "signoff_as_preparer": ("以编制人身份签核", "Sign off as preparer"),
    "signoff_as_reviewer": ("以复核人身份签核", "Sign off as reviewer"),
    "reviewer_must_differ": ("复核人须与编制人不同", "The reviewer must be someone other than the preparer"),
    "view_only": (
        "您只有查看权限，无法处理差异或签核。",
        "You can view only: acting on exceptions and signing off need more rights.",
    ),
    "back": ("返回", "Back"),
    "back_to_list": ("返回列表", "Back to the list"),
    "back_to_run": ("返回批次", "Back to the run"),
    "no_runs": (
        "还没有对账批次。运行 claimsync_reconcile DAG 后这里会出现报告。",
        "No reconciliation runs yet. Reports appear here once the claimsync_reconcile DAG has run.",
    ),
    "no_exceptions": ("没有符合条件的差异。", "No exceptions match."),
    "no_report_for_run": ("该 DAG 运行没有对账报告。", "This DAG run has no reconciliation report."),
    "error": ("出错了", "Something is wrong"),
    "user": ("当前用户", "Signed in as"),
    "language": ("English", "中文"),
    "done_acknowledge": ("已确认。", "Acknowledged."),
    "done_resolve": ("已标记为解决。", "Marked resolved."),
    "done_write_off": ("已核销。", "Written off."),
    "done_reopen": ("已重新打开。", "Reopened."),
    "done_assign": ("已指派。", "Owner assigned."),
    "done_signoff": ("已签核。", "Signed off."),
    "money_note": (
        "金额按差异金额（两边差额或缺失单据金额）汇总。",
        "Amounts are the exceptions' amount impact (the difference, or the whole amount of a missing document).",
    ),
    "masked_note": ("银行账号、身份证号和手机号已脱敏。", "Bank accounts, ID numbers and phone numbers are masked."),
    "older": ("更早", "older"),
    "newer": ("更新", "newer"),
    "outstanding": ("未处理", "outstanding"),
    "system_actor": ("系统", "system"),
}

CODE_LABELS: Final[dict[str, tuple[str, str]]] = {
    "missing_in_expense": ("报销系统缺单", "Missing in expense"),
    "missing_in_oa": ("OA 缺单（绕过审批）", "Missing in OA (bypassed approval)"),
    "status_mismatch": ("状态不一致", "Status mismatch"),
    "paid_without_approval": ("未审批先付款", "Paid without approval"),
    "amount_mismatch": ("金额不一致", "Amount mismatch"),
    "lines_total_mismatch": ("明细合计不符", "Lines total mismatch"),
    "duplicate_invoice": ("发票重复报销", "Duplicate invoice"),
    "employee_mismatch": ("申请人不一致", "Employee mismatch"),
    "duplicate_link": ("重复关联", "Duplicate link"),
    "write_conflict": ("回写冲突", "Write conflict"),
    "in_flight": ("处理中（时间差）", "In flight (timing)"),
}

SEVERITY_LABELS: Final[dict[str, tuple[str, str]]] = {
    "critical": ("严重", "critical"),
    "high": ("高", "high"),
    "medium": ("中", "medium"),
    "info": ("提示", "info"),
}

STATUS_LABELS: Final[dict[str, tuple[str, str]]] = {
    "open": ("待处理", "open"),
    "acknowledged": ("已确认", "acknowledged"),
    "resolved": ("已解决", "resolved"),
    "written_off": ("已核销", "written off"),
}

ACTION_LABELS: Final[dict[str, tuple[str, str]]] = {
    "acknowledge": ("确认", "Acknowledge"),
    "resolve": ("标记解决", "Resolve"),
    "write_off": ("核销", "Write off"),
    "reopen": ("重新打开", "Reopen"),
    "assign": ("指派", "Assign"),
    "reopened": ("重新出现", "Reopened by a run"),
    "auto_resolved": ("对账后自动解决", "Resolved by a full run"),
}

RUN_STATUS_LABELS: Final[dict[str, tuple[str, str]]] = {
    "running": ("运行中", "running"),
    "planned": ("已计划", "planned"),
    "applied": ("已写回", "applied"),
    "succeeded": ("成功", "succeeded"),
    "failed": ("失败", "failed"),
    "stopped": ("已中止", "stopped"),
}

AGE_LABELS: Final[dict[str, tuple[str, str]]] = {
    "0-7": ("0–7 天", "0–7 days"),
    "8-30": ("8–30 天", "8–30 days"),
    "31-60": ("31–60 天", "31–60 days"),
    "60+": ("60 天以上", "> 60 days"),
}

# 泛微 workflow_requestlog.logtype and 合思 flow_log.action.
OA_LOGTYPE_LABELS: Final[dict[str, tuple[str, str]]] = {
    "2": ("提交", "submit"),
    "0": ("批准", "approve"),
    "3": ("退回", "send back"),
    "r": ("撤回", "withdraw"),
    "e": ("强制归档", "force-archive"),
    "7": ("转发", "forward"),
    "9": ("批注", "comment"),
}
EXPENSE_ACTION_LABELS: Final[dict[str, tuple[str, str]]] = {
    "freeflow.submit": ("提交", "submit"),
    "freeflow.agree": ("同意", "agree"),
    "freeflow.reject": ("驳回", "reject"),
    "freeflow.retract": ("撤回", "retract"),
    "freeflow.pay": ("支付", "pay"),
    "freeflow.nullify": ("作废", "void"),
    "claimsync.sync": ("claimsync 同步", "claimsync sync"),
}

FIELD_LABELS: Final[dict[str, tuple[str, str]]] = {
    "request_id": ("OA 流程号", "OA request id"),
    "claim_code": ("报销单号", "Claim code"),
    "request_mark": ("流程编号", "Request mark"),
    "title": ("标题", "Title"),
    "employee_code": ("申请人工号", "Employee code"),
    "employee_name": ("申请人", "Employee"),
    "department_code": ("部门", "Department"),
    "department": ("部门编码", "Department code"),
    "department_name": ("部门名称", "Department name"),
    "amount": ("金额", "Amount"),
    "pay_amount": ("支付金额", "Amount to pay"),
    "currency": ("币种", "Currency"),
    "state": ("状态", "State"),
    "raw_state": ("原始状态", "State as stored"),
    "payment_state": ("付款状态", "Payment state"),
    "pay_date": ("付款日期", "Payment date"),
    "voucher": ("凭证号", "Voucher"),
    "lines_total": ("明细合计", "Lines total"),
    "line_count": ("明细行数", "Lines"),
    "changed_at": ("最后变更", "Last changed"),
}

STATE_LABELS: Final[dict[str, tuple[str, str]]] = {
    "draft": ("草稿", "draft"),
    "submitted": ("审批中", "submitted"),
    "approved": ("已审批", "approved"),
    "paying": ("支付中", "paying"),
    "paid": ("已支付", "paid"),
    "rejected": ("已退回", "rejected"),
    "withdrawn": ("已撤回", "withdrawn"),
    "voided": ("已作废", "voided"),
}

_TABLES: Final = {
    "field": FIELD_LABELS,
    "state": STATE_LABELS,
    "code": CODE_LABELS,
    "severity": SEVERITY_LABELS,
    "status": STATUS_LABELS,
    "action": ACTION_LABELS,
    "run_status": RUN_STATUS_LABELS,
    "age": AGE_LABELS,
    "oa_logtype": OA_LOGTYPE_LABELS,
    "expense_action": EXPENSE_ACTION_LABELS,
}


def language(requested: str | None, remembered: str | None) -> str:
    for candidate in (requested, remembered):
        if candidate in LANGUAGES:
            return candidate
    return DEFAULT_LANGUAGE


class Translator:
    """``t('runs')`` → the label; ``t.of('code', 'missing_in_oa')`` → a vocabulary value's label."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
        self._index = LANGUAGES.index(self.lang)

    def __call__(self, key: str, **values: object) -> str:
        pair = _LABELS.get(key)
        text = pair[self._index] if pair else key
        return text.format(**values) if values else text

    def of(self, table: str, value: str | None) -> str:
        if value is None:
            return ""
        pair = _TABLES[table].get(value)
        return pair[self._index] if pair else value


def all_label_keys() -> frozenset[str]:
    return frozenset(_LABELS)
