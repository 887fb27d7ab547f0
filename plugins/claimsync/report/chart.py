"""The 30-run trend as plain geometry for an inline SVG (no script, no external asset).

Bars: exceptions per run, stacked by severity (critical at the bottom). Line: match rate
on the right-hand axis (0–100 %).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

from claimsync.report.data import TrendPoint
from claimsync.rules import Severity

WIDTH: Final = 760
HEIGHT: Final = 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 56, 16, 40
STACK_ORDER: Final = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.INFO)
COLOURS: Final = {
    Severity.CRITICAL: "#c0392b",
    Severity.HIGH: "#e67e22",
    Severity.MEDIUM: "#f1c40f",
    Severity.INFO: "#95a5a6",
}
RATE_COLOUR: Final = "#1f6feb"


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    colour: str


@dataclass(frozen=True)
class Bar:
    run_id: str
    title: str
    label: str | None  # x-axis label, shown on every k-th bar
    label_x: float
    rects: Sequence[Rect]


@dataclass(frozen=True)
class TrendChart:
    width: int = WIDTH
    height: int = HEIGHT
    bars: Sequence[Bar] = field(default_factory=list)
    rate_points: str = ""  # polyline "x,y x,y …"
    rate_dots: Sequence[tuple[float, float]] = field(default_factory=list)
    y_ticks: Sequence[tuple[float, str]] = field(default_factory=list)  # left axis: y, label
    rate_ticks: Sequence[tuple[float, str]] = field(default_factory=list)  # right axis
    plot_left: int = _LEFT
    plot_right: int = WIDTH - _RIGHT
    plot_top: int = _TOP
    plot_bottom: int = HEIGHT - _BOTTOM
    baseline_y: float = HEIGHT - _BOTTOM


def _nice_ceiling(value: int) -> int:
    if value <= 5:
        return 5
    magnitude = int(10 ** int(math.log10(value)))
    for step in (1, 2, 2.5, 5, 10):
        candidate = int(step * magnitude)
        if candidate >= value:
            return candidate
    return 10 * magnitude


def trend_chart(points: Sequence[TrendPoint], timezone: str = "Asia/Shanghai") -> TrendChart:
    tz = ZoneInfo(timezone)
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM
    bottom = HEIGHT - _BOTTOM
    top_count = _nice_ceiling(max((p.exception_count for p in points), default=0))
    slot = plot_w / max(len(points), 1)
    bar_w = max(slot * 0.6, 2.0)
    label_every = max(1, math.ceil(len(points) / 10))
    bars: list[Bar] = []
    rate_xy: list[tuple[float, float]] = []
    for i, point in enumerate(points):
        centre = _LEFT + slot * (i + 0.5)
        y = float(bottom)
        rects: list[Rect] = []
        counted = 0
        for severity in STACK_ORDER:
            n = point.by_severity.get(severity.value, 0)
            counted += n
            if n:
                h = plot_h * n / top_count
                y -= h
                rects.append(
                    Rect(round(centre - bar_w / 2, 1), round(y, 1), round(bar_w, 1), round(h, 1), COLOURS[severity])
                )
        if point.exception_count > counted:  # severities not in the stack order
            h = plot_h * (point.exception_count - counted) / top_count
            y -= h
            rects.append(Rect(round(centre - bar_w / 2, 1), round(y, 1), round(bar_w, 1), round(h, 1), "#7f8c8d"))
        local = point.as_of.astimezone(tz)
        rate_text = "—" if point.match_rate is None else f"{point.match_rate * 100:.2f}%"
        title = (
            f"{point.run_id} · {local:%Y-%m-%d %H:%M} · {point.exception_count} 异常 exceptions"
            f" · 匹配率 match rate {rate_text}"
        )
        bars.append(
            Bar(
                run_id=point.run_id,
                title=title,
                label=f"{local:%m-%d}" if i % label_every == 0 else None,
                label_x=round(centre, 1),
                rects=rects,
            )
        )
        if point.match_rate is not None:
            rate = min(max(Decimal(point.match_rate), Decimal(0)), Decimal(1))
            rate_xy.append((round(centre, 1), round(_TOP + plot_h * (1 - float(rate)), 1)))
    y_ticks = [(round(bottom - plot_h * f, 1), f"{top_count * f:g}") for f in (0, 0.5, 1)]
    rate_ticks = [(round(bottom - plot_h * f, 1), f"{int(f * 100)}%") for f in (0, 0.5, 1)]
    return TrendChart(
        bars=bars,
        rate_points=" ".join(f"{x},{y}" for x, y in rate_xy),
        rate_dots=rate_xy,
        y_ticks=y_ticks,
        rate_ticks=rate_ticks,
    )
