"""Report pieces that need no database: aging, side-by-side differences, the trend chart, labels."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from claimsync.report.chart import HEIGHT, trend_chart
from claimsync.report.data import ExceptionRow, TrendPoint, aging_label
from claimsync.report.html_out import money, side_value
from claimsync.report.labels import code_label, field_label, state_label
from claimsync.rules import ExceptionCode

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 1, tzinfo=SH)


@pytest.mark.parametrize(
    ("days", "bucket"), [(0, "0–7"), (7, "0–7"), (8, "8–30"), (30, "8–30"), (31, "31–60"), (60, "31–60"), (61, ">60")]
)
def test_aging_buckets_are_0_7_8_30_31_60_and_over_60(days: int, bucket: str) -> None:
    assert aging_label(days) == bucket


def row(oa_side: dict[str, Any] | None, expense_side: dict[str, Any] | None, **kwargs: Any) -> ExceptionRow:
    values: dict[str, Any] = {
        "code": "amount_mismatch",
        "severity": "high",
        "business_key": "oa:1",
        "status": "open",
        "oa_request_id": 1,
        "claim_code": "B1",
        "employee_code": "E1",
        "department_code": None,
        "oa_amount": Decimal("10.00"),
        "expense_amount": Decimal("9.00"),
        "amount_impact": Decimal("1.00"),
        "currency": "CNY",
        "oa_state": "approved",
        "expense_state": "approved",
        "detail": "",
        "first_seen": T0,
        "last_seen": T0,
        "age_days": 0,
        "new_in_run": True,
        "owner": None,
        "note": None,
        "oa_side": oa_side,
        "expense_side": expense_side,
    }
    values.update(kwargs)
    return ExceptionRow(**values)


def test_differing_fields_compare_only_what_both_sides_have() -> None:
    oa = {"request_id": 1, "claim_code": None, "employee_code": "E1", "amount": "10.00", "state": "withdrawn"}
    expense = {"request_id": 1, "claim_code": "B1", "employee_code": "E2", "amount": "10.00", "state": "rejected"}
    assert row(oa, expense).differing_fields() == {"claim_code", "employee_code"}  # withdrawn ≡ rejected
    assert row(oa, None).differing_fields() == frozenset()


def test_without_snapshots_the_sides_come_from_the_exception_itself() -> None:
    oa, expense = row(None, None).sides()
    assert oa == {"request_id": 1, "amount": "10.00", "state": "approved"}
    assert expense == {"claim_code": "B1", "amount": "9.00", "state": "approved"}
    assert row(None, None).differing_fields() == {"amount"}
    only_expense = row(None, None, oa_request_id=None, oa_amount=None, oa_state=None)
    assert only_expense.sides()[0] is None


def point(i: int, counts: dict[str, int], rate: str | None) -> TrendPoint:
    return TrendPoint(
        run_id=f"r{i}",
        as_of=T0 + timedelta(days=i),
        exception_count=sum(counts.values()),
        amount_impact=Decimal("0"),
        match_rate=None if rate is None else Decimal(rate),
        by_severity=counts,
    )


def test_trend_bars_stack_by_severity_and_scale_to_the_largest_run() -> None:
    chart = trend_chart([point(0, {"critical": 2, "high": 3}, "0.5"), point(1, {"info": 10}, None)])
    first, second = chart.bars
    assert [r.colour for r in first.rects] == ["#c0392b", "#e67e22"]
    assert sum(r.height for r in first.rects) == pytest.approx(sum(r.height for r in second.rects) / 2, abs=0.2)
    assert second.rects[0].y == pytest.approx(chart.plot_top, abs=0.1)  # 10 of 10 fills the plot
    assert first.rects[0].y + first.rects[0].height == pytest.approx(HEIGHT - 40, abs=0.1)
    assert len(chart.rate_dots) == 1  # a run without a match rate has no dot
    assert chart.rate_dots[0][1] == pytest.approx((chart.plot_top + chart.plot_bottom) / 2, abs=0.1)
    assert "r1" in second.title


def test_an_empty_trend_is_an_empty_chart() -> None:
    chart = trend_chart([])
    assert chart.bars == []
    assert chart.rate_points == ""


def test_labels_are_chinese_with_english_beside() -> None:
    assert code_label(ExceptionCode.PAID_WITHOUT_APPROVAL) == "未审批先付款 / paid_without_approval"
    assert field_label("amount_impact") == "影响金额 / amount impact"
    assert state_label("paid") == "已支付 / paid"
    assert state_label(None) == ""
    for code in ExceptionCode:
        assert code_label(code).endswith(f" / {code.value}")


def test_money_and_side_values_for_display() -> None:
    assert money(Decimal("1234567.5")) == "1,234,567.50"
    assert money(None) == ""
    assert side_value("amount", "1200.00") == "1,200.00"
    assert side_value("state", "submitted") == "审批中 / submitted"
    assert side_value("claim_code", None) == "—"
    assert side_value("changed_at", "2026-03-01T08:30:00+08:00") == "2026-03-01 08:30"
