"""How values look on the workspace's pages: money, rates, times (Asia/Shanghai by default)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

CURRENCY_SYMBOLS: Final = {"CNY": "¥", "RMB": "¥", "USD": "US$", "HKD": "HK$", "EUR": "€", "JPY": "JP¥", "GBP": "£"}


def money(amount: Decimal | int | None, currency: str | None = "CNY") -> str:
    """``Decimal('1234.5')`` → ``'¥1,234.50'``; an unknown currency is written out (``'SGD 10.00'``)."""
    if amount is None:
        return ""
    value = Decimal(amount).quantize(Decimal("0.01"))
    code = (currency or "CNY").strip().upper()
    symbol = CURRENCY_SYMBOLS.get(code)
    digits = f"{abs(value):,.2f}"
    sign = "-" if value < 0 else ""
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{code} {digits}"


def compact_money(amount: Decimal, lang: str = "zh", currency: str = "CNY") -> str:
    """An axis label: ``¥1.5亿`` / ``¥15万`` in Chinese, ``¥150M`` / ``¥15K`` in English; small amounts in full."""
    symbol = CURRENCY_SYMBOLS.get(currency, f"{currency} ")
    value = Decimal(amount)
    units = (
        ((Decimal(10**8), "亿"), (Decimal(10**4), "万"))
        if lang == "zh"
        else ((Decimal(10**9), "B"), (Decimal(10**6), "M"), (Decimal(10**3), "K"))
    )
    for size, unit in units:
        if abs(value) >= size:
            scaled = value / size
            text = f"{scaled:.1f}".rstrip("0").rstrip(".") if abs(scaled) < 10 else f"{scaled:,.0f}"
            return f"{symbol}{text}{unit}"
    return f"{symbol}{value:,.0f}"


def count(value: int | None) -> str:
    return "" if value is None else f"{int(value):,}"


def percent(rate: Decimal | float | None) -> str:
    """A fraction as a percentage with two decimals; ``None`` (nothing to match) → ``'—'``."""
    if rate is None:
        return "—"
    return f"{Decimal(str(rate)) * 100:.2f}%"


def when(value: datetime | None, tz: ZoneInfo) -> str:
    return "" if value is None else value.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def day(value: datetime | date | None, tz: ZoneInfo) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(tz).strftime("%Y-%m-%d")
    return value.isoformat()
