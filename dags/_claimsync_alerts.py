"""Where claimsync's alerts go: a DingTalk robot and/or e-mail, through Airflow's providers.

Configuration (environment of the Airflow workers and DAG processor):

- ``CLAIMSYNC_ALERT_CHANNELS`` — comma list of ``dingding``, ``email`` (default: none; the
  alert is still logged);
- ``CLAIMSYNC_ALERT_DINGDING_CONN_ID`` — a ``dingding`` connection whose password is the
  robot's access token (host optional: default https://oapi.dingtalk.com); default
  ``claimsync_dingding``;
- ``CLAIMSYNC_ALERT_EMAIL_TO`` (comma list), ``CLAIMSYNC_ALERT_SMTP_CONN_ID`` (default
  ``smtp_default``), ``CLAIMSYNC_ALERT_EMAIL_FROM``;
- ``CLAIMSYNC_UI_BASE_URL`` — the Airflow UI's address for links (default: Airflow's
  ``[api] base_url``).

Sending never raises: an alert that cannot be delivered is logged (without its token),
and never hides the failure it reports.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from claimsync.alerts import Alert

log = logging.getLogger("claimsync.alerts")


def channels() -> list[str]:
    raw = os.environ.get("CLAIMSYNC_ALERT_CHANNELS", "")
    return [c.strip().lower() for c in raw.split(",") if c.strip()]


def ui_base_url() -> str | None:
    base = os.environ.get("CLAIMSYNC_UI_BASE_URL", "").strip()
    if not base:
        try:
            from airflow.configuration import conf

            base = (conf.get("api", "base_url", fallback="") or "").strip()
        except Exception:  # configuration unavailable: no link rather than no alert
            base = ""
    return base.rstrip("/") or None


def run_link(dag_id: str, run_id: str) -> str | None:
    base = ui_base_url()
    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}" if base else None


def report_link(run_id: str) -> str | None:
    base = ui_base_url()
    return f"{base}/recon/runs/{quote(run_id, safe='')}" if base else None


def send_alert(alert: Alert) -> list[str]:
    """Deliver ``alert`` to every configured channel; return the channels that took it."""
    log.warning("%s\n%s", alert.title, alert.markdown)
    delivered = []
    for channel in channels():
        try:
            if channel == "dingding":
                _send_dingding(alert)
            elif channel == "email":
                _send_email(alert)
            else:
                log.error("claimsync: unknown alert channel %r in CLAIMSYNC_ALERT_CHANNELS", channel)
                continue
            delivered.append(channel)
        except Exception as exc:
            from claimsync.alerts import redact

            log.error("claimsync: could not send the alert via %s: %s", channel, redact(str(exc))[:300])
    return delivered


def _send_dingding(alert: Alert) -> None:
    from airflow.providers.dingding.hooks.dingding import DingdingHook

    conn_id = os.environ.get("CLAIMSYNC_ALERT_DINGDING_CONN_ID", "").strip() or "claimsync_dingding"
    DingdingHook(
        dingding_conn_id=conn_id,
        message_type="markdown",
        message={"title": alert.title, "text": alert.markdown},
    ).send()


def _send_email(alert: Alert) -> None:
    import html

    from airflow.providers.smtp.hooks.smtp import SmtpHook

    recipients = [r.strip() for r in os.environ.get("CLAIMSYNC_ALERT_EMAIL_TO", "").split(",") if r.strip()]
    if not recipients:
        raise ValueError("CLAIMSYNC_ALERT_EMAIL_TO is empty")
    conn_id = os.environ.get("CLAIMSYNC_ALERT_SMTP_CONN_ID", "").strip() or "smtp_default"
    sender = os.environ.get("CLAIMSYNC_ALERT_EMAIL_FROM", "").strip() or "claimsync@localhost"
    body = f"<pre style='font-family:sans-serif'>{html.escape(alert.markdown)}</pre>"
    with SmtpHook(smtp_conn_id=conn_id) as smtp:
        smtp.send_email_smtp(to=recipients, subject=alert.title, html_content=body, from_email=sender)


def alert_run_failed(context: Any, exceptions_found: int | None) -> None:
    """Failure callback body: name the DAG, run, failed task, error and exception count, with a link."""
    from claimsync.alerts import run_failed

    dag_run = context.get("dag_run")
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(dag_run, "dag_id", None) or context["dag"].dag_id
    run_id = getattr(dag_run, "run_id", None) or str(context.get("run_id", "?"))
    error = context.get("exception")
    send_alert(
        run_failed(
            dag_id=dag_id,
            run_id=run_id,
            task_id=getattr(ti, "task_id", None),
            error=None if error is None else str(error),
            open_exceptions=exceptions_found,
            link=run_link(dag_id, run_id),
        )
    )


def alert_new_critical(dag_id: str, run_id: str, counts: dict[str, int], amounts_cents: dict[str, int]) -> bool:
    """After a reconciliation: alert when it found new critical exceptions. True when an alert went out."""
    from claimsync.alerts import new_critical_exceptions

    alert = new_critical_exceptions(
        dag_id=dag_id, run_id=run_id, counts=counts, amounts_cents=amounts_cents, link=report_link(run_id)
    )
    if alert is None:
        return False
    send_alert(alert)
    return True
