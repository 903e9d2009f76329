"""Small inline SVG charts for reports that read offline: no scripts, no CDN."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT, PAD = 360, 240, 36
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def _x(value: float, low: float, high: float) -> float:
    span = (high - low) or 1.0
    return PAD + (value - low) / span * (WIDTH - 2 * PAD)


def _y(value: float, low: float, high: float) -> float:
    span = (high - low) or 1.0
    return HEIGHT - PAD - (value - low) / span * (HEIGHT - 2 * PAD)


def _frame(title: str, x_label: str, y_label: str, body: list[str]) -> str:
    axes = (
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        f'stroke="#444"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#444"/>'
    )
    labels = (
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-weight="bold">'
        f"{escape(title)}</text>"
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(x_label)}</text>'
        f'<text x="12" y="{HEIGHT / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {HEIGHT / 2})">{escape(y_label)}</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif" font-size="11" role="img" aria-label="{escape(title)}">'
        f"{axes}{labels}{''.join(body)}</svg>"
    )


def line_chart(
    title: str,
    series: Mapping[str, Sequence[tuple[float | None, float | None]]],
    x_label: str,
    y_label: str,
    *,
    diagonal: bool = False,
) -> str:
    """Lines through (x, y) points in [0, 1] x [0, 1], one colour per series, a legend."""
    body = []
    if diagonal:
        body.append(
            f'<line x1="{_x(0, 0, 1)}" y1="{_y(0, 0, 1)}" x2="{_x(1, 0, 1)}" y2="{_y(1, 0, 1)}" '
            'stroke="#aaa" stroke-dasharray="4"/>'
        )
    for index, (name, points) in enumerate(series.items()):
        color = COLORS[index % len(COLORS)]
        kept = [(x, y) for x, y in points if x is not None and y is not None]
        if kept:
            path = " ".join(f"{_x(x, 0, 1):.1f},{_y(y, 0, 1):.1f}" for x, y in kept)
            body.append(f'<polyline points="{path}" fill="none" stroke="{color}"/>')
        body.append(
            f'<text x="{WIDTH - PAD}" y="{PAD + 12 * index}" text-anchor="end" '
            f'fill="{color}">{escape(name)}</text>'
        )
    return _frame(title, x_label, y_label, body)


def bar_chart(title: str, bars: Sequence[tuple[str, float | None]], y_label: str) -> str:
    """Vertical bars from zero, labelled under each bar with its value on top."""
    values = [v for _, v in bars if v is not None]
    high = max([*values, 0.0]) or 1.0
    low = min([*values, 0.0])
    width = (WIDTH - 2 * PAD) / max(len(bars), 1)
    body = []
    for index, (name, value) in enumerate(bars):
        left = PAD + index * width + width * 0.15
        label_x = left + width * 0.35
        body.append(
            f'<text x="{label_x:.1f}" y="{HEIGHT - PAD + 12}" '
            f'text-anchor="middle">{escape(name[:14])}</text>'
        )
        if value is None:
            continue
        top, base = _y(max(value, 0.0), low, high), _y(min(value, 0.0), low, high)
        body.append(
            f'<rect x="{left:.1f}" y="{top:.1f}" width="{width * 0.7:.1f}" '
            f'height="{max(base - top, 0.5):.1f}" fill="{COLORS[0]}"/>'
            f'<text x="{label_x:.1f}" y="{top - 3:.1f}" text-anchor="middle">{value:.3g}</text>'
        )
    return _frame(title, "", y_label, body)
