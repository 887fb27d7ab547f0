"""The trend chart as inline SVG: no script, no external asset, prints and screenshots as is."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape
from typing import Final

SEVERITY_COLOURS: Final = {"critical": "#b3261e", "high": "#e8710a", "medium": "#f2b705", "info": "#9aa0a6"}
STACK_ORDER: Final = ("info", "medium", "high", "critical")  # bottom to top


@dataclass(frozen=True)
class TrendPoint:
    label: str  # e.g. '03-31'
    tooltip: str
    counts: dict[str, int]  # severity → exceptions
    amount: Decimal
    current: bool = False


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = float(10 ** (len(str(int(value))) - 1))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * magnitude:
            return float(step * magnitude)
    return 10.0 * magnitude


def trend_svg(
    points: Sequence[TrendPoint],
    *,
    count_label: str,
    amount_label: str,
    format_amount: Callable[[Decimal], str],
    width: int = 760,
    height: int = 240,
) -> str:
    """Stacked bars of exceptions per severity per run, and a line of the total amount impact."""
    left, right, top, bottom = 48, 86, 30, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(points), 1)
    slot = plot_w / n
    bar_w = max(min(slot * 0.7, 28.0), 2.0)
    max_count = _nice_max(max((sum(p.counts.values()) for p in points), default=0))
    max_amount = _nice_max(float(max((p.amount for p in points), default=Decimal(0))))

    out = [
        f'<svg class="trend" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%"'
        f' role="img" aria-label="{escape(count_label)} / {escape(amount_label)}">'
    ]
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="#555">'
            f"{int(max_count * i / 4):,}</text>"
        )
        out.append(
            f'<text x="{left + plot_w + 6}" y="{y + 4:.1f}" font-size="10" fill="#1a5fb4">'
            f"{escape(format_amount(Decimal(str(max_amount * i / 4))))}</text>"
        )
    line: list[str] = []
    label_every = max(1, n // 8)
    for i, point in enumerate(points):
        x = left + slot * i + (slot - bar_w) / 2
        y = top + plot_h
        out.append(f"<g><title>{escape(point.tooltip)}</title>")
        for severity in STACK_ORDER:
            value = point.counts.get(severity, 0)
            if value <= 0:
                continue
            h = plot_h * value / max_count
            y -= h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}"'
                f' fill="{SEVERITY_COLOURS[severity]}"/>'
            )
        if point.current:
            out.append(
                f'<rect x="{x - 2:.1f}" y="{top}" width="{bar_w + 4:.1f}" height="{plot_h}" fill="none"'
                ' stroke="#1a5fb4" stroke-dasharray="3 2"/>'
            )
        out.append("</g>")
        cx = left + slot * i + slot / 2
        cy = top + plot_h - plot_h * float(point.amount) / max_amount
        line.append(f"{cx:.1f},{cy:.1f}")
        if i % label_every == 0 or i == n - 1:
            out.append(
                f'<text x="{cx:.1f}" y="{height - 10}" text-anchor="middle" font-size="10" fill="#555">'
                f"{escape(point.label)}</text>"
            )
    if len(line) > 1:
        out.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="#1a5fb4" stroke-width="2"/>')
    for pt in line:
        px, py = pt.split(",")
        out.append(f'<circle cx="{px}" cy="{py}" r="2.5" fill="#1a5fb4"/>')
    out.append(
        f'<text x="{left}" y="{top - 14}" font-size="10" fill="#555">{escape(count_label)}</text>'
        f'<text x="{left + plot_w + 6}" y="{top - 14}" font-size="10" fill="#1a5fb4">{escape(amount_label)}</text>'
    )
    out.append("</svg>")
    return "".join(out)
