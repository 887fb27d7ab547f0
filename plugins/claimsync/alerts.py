"""What an alert says: run failures and new critical exceptions, as text for a chat robot or mail.

Pure: the Airflow side (dags/_claimsync_alerts.py) decides where it goes. Everything that
can carry a secret or personal data (error messages, details) passes :func:`redact` first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from claimsync.masking import mask_text
from claimsync.model import format_cents
from claimsync.rules import ExceptionCode, Severity

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@", re.I)
_PASSWORD_ASSIGNMENT = re.compile(r"(?P<key>password|passwd|pwd|secret|token|access_token)=(?P<value>[^&\s'\"]+)", re.I)
_MAX_ERROR = 500


def redact(text: str) -> str:
    """Hide URL passwords, ``password=…``-style secrets and personal data in free text."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _PASSWORD_ASSIGNMENT.sub(lambda m: f"{m['key']}=***", text)
    return mask_text(text) or ""


@dataclass(frozen=True)
class Alert:
    """One message: a title (mail subject) and a Markdown body (DingTalk markdown, mail body)."""

    title: str
    markdown: str


def run_failed(
    *,
    dag_id: str,
    run_id: str,
    task_id: str | None,
    error: str | None,
    open_exceptions: int | None,
    link: str | None,
) -> Alert:
    title = f"[claimsync] {dag_id} failed"
    lines = [
        f"### claimsync: {dag_id} 运行失败 / run failed",
        f"- run: `{run_id}`",
        f"- task: `{task_id or '-'}`",
    ]
    if open_exceptions is not None:
        lines.append(f"- open exceptions in this run / 本次未关闭异常: **{open_exceptions}**")
    if error:
        first_line = redact(error.strip().splitlines()[0] if error.strip() else error)[:_MAX_ERROR]
        lines.append(f"- error: {first_line}")
    if link:
        lines.append(f"- [open the run / 查看运行]({link})")
    lines.append(
        "Rerunning a failed task is safe: claimsync never writes twice and never overwrites a person's change."
    )
    return Alert(title, "\n".join(lines))


def new_critical_exceptions(
    *,
    dag_id: str,
    run_id: str,
    counts: Mapping[str, int],
    amounts_cents: Mapping[str, int],
    link: str | None,
) -> Alert | None:
    """An alert for the critical codes with new exceptions, or None when there are none."""
    critical = {
        code: count
        for code, count in counts.items()
        if count > 0
        and code in ExceptionCode.__members__.values()
        and ExceptionCode(code).severity is Severity.CRITICAL
    }
    if not critical:
        return None
    total = sum(critical.values())
    title = f"[claimsync] {total} new critical exception{'s' if total != 1 else ''} ({dag_id})"
    lines = [f"### claimsync: {total} 个新的严重异常 / new critical exceptions", f"- run: `{run_id}`"]
    for code, count in sorted(critical.items()):
        lines.append(f"- `{code}`: {count} (¥{format_cents(amounts_cents.get(code, 0))})")
    if link:
        lines.append(f"- [open the report / 查看对账报告]({link})")
    return Alert(title, "\n".join(lines))
