"""Alert texts name the run and the counts, and never carry secrets or personal data."""

from __future__ import annotations

from claimsync.alerts import new_critical_exceptions, redact, run_failed


def test_redact_hides_url_passwords_tokens_and_personal_data() -> None:
    text = (
        "could not connect to postgresql://claimsync:S3cret!pw@db.internal:5432/oa; "
        "robot access_token=abcdef123 payee 6222021234567891234 mobile 13812345678 id 110101199003074518"
    )
    redacted = redact(text)
    for secret in ("S3cret!pw", "abcdef123", "6222021234567891234", "13812345678", "110101199003074518"):
        assert secret not in redacted
    assert "postgresql://claimsync:***@db.internal:5432/oa" in redacted
    assert "6222 **** **** 1234" in redacted


def test_run_failed_names_dag_run_task_count_and_link() -> None:
    alert = run_failed(
        dag_id="claimsync_claim_sync",
        run_id="scheduled__2026-03-31T04:00:00+00:00",
        task_id="apply.apply_expense",
        error="OperationalError: connection to postgresql://u:pw@h/expense failed\nTraceback …",
        open_exceptions=7,
        link="http://airflow.local/dags/claimsync_claim_sync/runs/x",
    )
    assert alert.title == "[claimsync] claimsync_claim_sync failed"
    for expected in ("scheduled__2026-03-31T04:00:00+00:00", "apply.apply_expense", "**7**", "http://airflow.local"):
        assert expected in alert.markdown
    assert "pw@" not in alert.markdown
    assert "Traceback" not in alert.markdown


def test_new_critical_exceptions_lists_only_critical_codes() -> None:
    alert = new_critical_exceptions(
        dag_id="claimsync_reconcile",
        run_id="r1",
        counts={"missing_in_oa": 2, "amount_mismatch": 5, "duplicate_invoice": 1, "paid_without_approval": 0},
        amounts_cents={"missing_in_oa": 123456, "duplicate_invoice": 5000},
        link=None,
    )
    assert alert is not None
    assert alert.title == "[claimsync] 3 new critical exceptions (claimsync_reconcile)"
    assert "`missing_in_oa`: 2 (¥1234.56)" in alert.markdown
    assert "`duplicate_invoice`: 1 (¥50.00)" in alert.markdown
    assert "amount_mismatch" not in alert.markdown
    assert "paid_without_approval" not in alert.markdown


def test_no_alert_without_new_critical_exceptions() -> None:
    assert (
        new_critical_exceptions(dag_id="d", run_id="r", counts={"amount_mismatch": 3}, amounts_cents={}, link=None)
        is None
    )
