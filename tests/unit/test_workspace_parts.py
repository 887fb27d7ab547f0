"""The workspace's pieces that need no database: filters, cursors, CSRF, money, labels, the chart."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from fastapi import HTTPException

from claimsync.errors import ConfigError
from claimsync.rules import ExceptionCode, Severity
from claimsync.workspace.actions import NOTE_MAX, STATUS_ACTIONS, clean_note
from claimsync.workspace.charts import TrendPoint, trend_svg
from claimsync.workspace.config import CachedUrl, WorkspaceConfig, check_doc_url_template
from claimsync.workspace.errors import InvalidInput
from claimsync.workspace.filters import AGE_BUCKETS, STATUSES, Cursor, ExceptionFilter, age_bounds, clean_owner
from claimsync.workspace.formatting import compact_money, money, percent
from claimsync.workspace.i18n import LANGUAGES, Translator, all_label_keys, language
from claimsync.workspace.security import CSRF_MAX_AGE, check_csrf_token, make_csrf_token

SECRET = b"0123456789abcdef0123456789abcdef"
CST = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (Decimal("1234.5"), "CNY", "¥1,234.50"),
        (Decimal("1234567.891"), "CNY", "¥1,234,567.89"),
        (Decimal("-12"), "CNY", "-¥12.00"),
        (Decimal("0"), None, "¥0.00"),
        (Decimal("99.99"), "usd", "US$99.99"),
        (Decimal("5"), "SGD", "SGD 5.00"),
        (None, "CNY", ""),
    ],
)
def test_money_is_formatted_for_finance(amount: Decimal | None, currency: str | None, text: str) -> None:
    assert money(amount, currency) == text


def test_chart_axis_amounts_are_compact_in_either_language() -> None:
    assert [compact_money(Decimal(v)) for v in (0, 5000, 15000, 2_500_000, 150_000_000)] == [
        "¥0", "¥5,000", "¥1.5万", "¥250万", "¥1.5亿",
    ]  # fmt: skip
    assert [compact_money(Decimal(v), "en") for v in (999, 5000, 2_500_000, 150_000_000)] == [
        "¥999", "¥5K", "¥2.5M", "¥150M",
    ]  # fmt: skip


def test_match_rate_as_percent() -> None:
    assert percent(Decimal("0.949512")) == "94.95%"
    assert percent(None) == "—"


# --- filters -----------------------------------------------------------------------------


def test_filter_parses_every_known_value_and_round_trips() -> None:
    query = {
        "run_id": "scheduled__2026-03-31T00:00:00+00:00",
        "code": "amount_mismatch",
        "severity": "high",
        "department": "FIN-01",
        "age": "60+",
        "status": "unresolved",
        "owner": "张伟",
        "q": "B26000123",
        "sort": "age",
    }
    flt = ExceptionFilter.parse(query)
    assert flt.params() == query
    assert ExceptionFilter.parse(flt.params()) == flt
    assert ExceptionFilter.parse({"code": " ", "sort": "amount"}) == ExceptionFilter()
    assert "sort" not in ExceptionFilter(sort="amount").params()


@pytest.mark.parametrize(
    "query",
    [
        {"code": "amount"},
        {"severity": "urgent"},
        {"age": "0-9"},
        {"status": "deleted"},
        {"sort": "id"},
        {"department": "FIN'; DROP TABLE x;--"},
        {"q": "1 OR 1=1"},
        {"owner": "a\x00b"},
        {"run_id": "x" * 251},
        {"run_id": "bad\nid"},
    ],
)
def test_filter_refuses_anything_outside_its_vocabulary(query: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        ExceptionFilter.parse(query)


def test_every_code_severity_and_status_is_accepted() -> None:
    for code in ExceptionCode:
        assert ExceptionFilter.parse({"code": code.value}).code == code.value
    for severity in Severity:
        assert ExceptionFilter.parse({"severity": severity.value}).severity == severity.value
    for status in STATUSES:
        assert ExceptionFilter.parse({"status": status}).status == status


def test_cursor_round_trips_and_rejects_tampering() -> None:
    by_amount = Cursor("amount", amount=Decimal("1200.50"), id=42)
    assert Cursor.decode(by_amount.encode(), "amount") == by_amount
    by_age = Cursor("age", first_seen=datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=CST), id=7)
    assert Cursor.decode(by_age.encode(), "age") == by_age
    for bad, sort in [
        (by_amount.encode(), "age"),
        ("amount~NaN~1", "amount"),
        ("amount~1~x", "amount"),
        ("age~2026-03-01T09:00:00~1", "age"),  # no offset
        ("amount~1", "amount"),
        ("amount~" + "9" * 90 + "~1", "amount"),
    ]:
        with pytest.raises(InvalidInput):
            Cursor.decode(bad, sort)


def test_age_buckets_are_whole_days_since_first_seen() -> None:
    reference = datetime(2026, 3, 31, 12, tzinfo=CST)

    def bucket(first_seen: datetime) -> str:
        matches = []
        for name in AGE_BUCKETS:
            after, not_after = age_bounds(name, reference)
            if (after is None or first_seen > after) and (not_after is None or first_seen <= not_after):
                matches.append(name)
        assert len(matches) == 1, (first_seen, matches)
        return matches[0]

    assert bucket(reference) == "0-7"
    assert bucket(reference - timedelta(days=7, hours=23)) == "0-7"
    assert bucket(reference - timedelta(days=8)) == "8-30"
    assert bucket(reference - timedelta(days=30, hours=23)) == "8-30"
    assert bucket(reference - timedelta(days=31)) == "31-60"
    assert bucket(reference - timedelta(days=61)) == "60+"
    assert bucket(reference + timedelta(hours=1)) == "0-7"


def test_owner_and_note_are_cleaned() -> None:
    assert clean_owner("  张伟 ") == "张伟"
    assert clean_owner("   ") is None
    with pytest.raises(InvalidInput):
        clean_owner("x" * 101)
    assert clean_note("  ok \r\n next ", required=True) == "ok \n next"
    assert clean_note("", required=False) is None
    for bad in ("", "   "):
        with pytest.raises(InvalidInput):
            clean_note(bad, required=True)
    with pytest.raises(InvalidInput):
        clean_note("x" * (NOTE_MAX + 1), required=True)
    with pytest.raises(InvalidInput):
        clean_note("a\x00b", required=True)


def test_status_actions_never_leave_the_ledger_vocabulary() -> None:
    for allowed, target in STATUS_ACTIONS.values():
        assert target in STATUSES
        assert allowed <= set(STATUSES)
        assert target not in allowed


# --- CSRF ----------------------------------------------------------------------------------


def test_csrf_token_is_bound_to_user_secret_and_time() -> None:
    now = 1_800_000_000.0
    token = make_csrf_token(SECRET, "alice", now=now)
    check_csrf_token(SECRET, "alice", token, now=now + 60)
    refusals = [
        (SECRET, "bob", token, now),
        (b"another-secret-of-32-bytes-xxxxx", "alice", token, now),
        (SECRET, "alice", token, now + CSRF_MAX_AGE + 1),
        (SECRET, "alice", token, now - 3600),
        (SECRET, "alice", None, now),
        (SECRET, "alice", "", now),
        (SECRET, "alice", token.replace(".", ".0", 1), now),
        (SECRET, "alice", f"{int(now) + 1}.{token.split('.')[1]}", now),
        (SECRET, "alice", "abc.def", now),
    ]
    for secret, user, candidate, at in refusals:
        with pytest.raises(HTTPException) as refused:
            check_csrf_token(secret, user, candidate, now=at)
        assert refused.value.status_code == 403


# --- configuration ---------------------------------------------------------------------------


def test_document_url_templates_are_checked() -> None:
    good = "https://oa.example.com/workflow/request/ViewRequest.jsp?requestid={request_id}"
    assert check_doc_url_template(good, "oa") == good
    for bad, system in [
        ("https://oa.example.com/view", "oa"),
        ("https://oa.example.com/{claim_code}", "oa"),
        ("https://oa.example.com/{request_id.__class__}", "oa"),
        ("https://oa.example.com/{request_id}/{other}", "oa"),
        ("javascript:alert({claim_code})", "expense"),
        ("https://x/{claim_code", "expense"),
    ]:
        with pytest.raises(ConfigError):
            check_doc_url_template(bad, system)


def test_config_from_env_prefers_the_resolver_and_falls_back_to_the_env_url() -> None:
    env = {"CLAIMSYNC_STATE_URL": "postgresql://env/state", "CLAIMSYNC_EXPENSE_DOC_URL": "https://e/{claim_code}"}
    config = WorkspaceConfig.from_env(SECRET, env=env, state_url=lambda: "postgresql://conn/state")
    assert config.state_url.get() == "postgresql://conn/state"
    assert config.expense_doc_url == "https://e/{claim_code}"
    assert WorkspaceConfig.from_env(SECRET, env=env, state_url=lambda: None).state_url.get() == "postgresql://env/state"
    with pytest.raises(ConfigError):
        WorkspaceConfig.from_env(b"short", env={})
    with pytest.raises(ConfigError):
        WorkspaceConfig.from_env(SECRET, env={"CLAIMSYNC_OA_DOC_URL": "ftp://x/{request_id}"})


def test_cached_url_resolves_once_per_ttl_and_keeps_the_failure_reason() -> None:
    calls: list[int] = []

    def resolve() -> str:
        calls.append(1)
        return "postgresql://a/b"

    cached = CachedUrl(resolve, ttl=3600)
    assert cached.get() == cached.get() == "postgresql://a/b"
    assert len(calls) == 1
    cached.invalidate()
    cached.get()
    assert len(calls) == 2

    def broken() -> str:
        raise RuntimeError("connection lookup failed\nsecond line")

    failing = CachedUrl(broken)
    assert failing.get() is None
    assert failing.error == "RuntimeError: connection lookup failed"


# --- labels and the chart ------------------------------------------------------------------


def test_every_vocabulary_value_has_both_languages() -> None:
    zh, en = Translator("zh"), Translator("en")
    for code in ExceptionCode:
        assert zh.of("code", code.value) != code.value
        assert en.of("code", code.value)
    for severity in Severity:
        assert zh.of("severity", severity.value) != severity.value
    for status in STATUSES:
        assert zh.of("status", status) != status
    for action in STATUS_ACTIONS:
        assert zh.of("action", action) != action
    for bucket in AGE_BUCKETS:
        assert zh.of("age", bucket) != bucket
    for key in all_label_keys():
        assert zh(key) != key  # a Chinese label exists (the fallback would be the key itself)
        assert en(key).strip()
    assert language(None, None) == "zh"
    assert language("en", "zh") == "en"
    assert language("fr", "en") == "en"
    assert set(LANGUAGES) == {"zh", "en"}


def test_trend_chart_is_inline_svg_with_escaped_text() -> None:
    points = [
        TrendPoint(f"03-{d:02d}", f"run <b>{d}</b>", {"critical": d, "info": 2}, Decimal(d * 100), current=d == 3)
        for d in (1, 2, 3)
    ]
    svg = trend_svg(points, count_label="笔数", amount_label="金额 <CNY>", format_amount=lambda a: f"¥{a:,.0f}")
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert svg.count("<g>") == 3
    assert "<b>" not in svg
    assert "run &lt;b&gt;1&lt;/b&gt;" in svg
    assert "金额 &lt;CNY&gt;" in svg
    assert svg.count("<polyline") == 1
    assert "stroke-dasharray" in svg  # the current run is outlined
    assert "<script" not in svg
    empty = trend_svg([], count_label="n", amount_label="a", format_amount=str)
    assert empty.startswith("<svg")
