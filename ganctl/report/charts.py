"""Line charts as inline SVG: a run's curves in its report, readable at any width (the SVG scales with
the page) and needing nothing from elsewhere. Hovering a line shows its name (an SVG <title>)."""

from __future__ import annotations

import math
from html import escape
from typing import Sequence

# Tableau's 10 colours, matplotlib's default cycle: the report's lines match curves.png's.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
WIDTH, HEIGHT = 480, 260  # the viewBox; the chart itself is as wide as its box on the page
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 10, 30  # margins for the axes' labels
MAX_POINTS = 1000  # per line: a longer history is thinned evenly (its last point always kept)

Line = tuple[str, Sequence[float], Sequence[float]]  # name, x values, y values


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if not high > low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(factor * power for factor in (1, 2, 5, 10) if factor * power >= raw / 1.5)  # a few more ticks than fewer
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def label(value: float) -> str:
    """A tick label, short: 0.001, 2500, 85000, 1.5e+06, 2.5e-05."""
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.1e}"


def thinned(xs: Sequence[float], ys: Sequence[float]) -> list[tuple[float, float]]:
    """The finite points of a line, at most MAX_POINTS of them (evenly spaced, the last one kept)."""
    points = [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    if len(points) <= MAX_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_POINTS)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def bounds(values: list[float]) -> tuple[float, float]:
    """The axis range for `values`: their span with 5% to spare, or +-1 around a constant."""
    low, high = min(values), max(values)
    if high == low:
        return low - (abs(low) or 1) * 0.5, high + (abs(high) or 1) * 0.5
    spare = (high - low) * 0.05
    return low - spare, high + spare


def line_chart(title: str, lines: Sequence[Line], x_label: str = "step", markers: bool = False) -> str:
    """One chart (title, axes, ticks, a coloured line per entry, a legend) as a <figure> with an <svg>."""
    drawn = [(name, thinned(xs, ys)) for name, xs, ys in lines]
    drawn = [(name, points) for name, points in drawn if points]
    if not drawn:
        return ""
    x_low, x_high = bounds([x for _, points in drawn for x, _ in points])
    y_low, y_high = bounds([y for _, points in drawn for _, y in points])
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def position(x: float, y: float) -> str:
        return f"{LEFT + (x - x_low) / (x_high - x_low) * plot_width:.1f},{TOP + (y_high - y) / (y_high - y_low) * plot_height:.1f}"

    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{plot_width}" height="{plot_height}" class="plot"/>']
    for tick in nice_ticks(y_low, y_high):
        y = TOP + (y_high - tick) / (y_high - y_low) * plot_height
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{label(tick)}</text>')
    for tick in nice_ticks(x_low, x_high):
        x = LEFT + (tick - x_low) / (x_high - x_low) * plot_width
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" class="grid"/>'
                     f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 13}" text-anchor="middle">{label(tick)}</text>')
    parts.append(f'<text x="{LEFT + plot_width / 2:.0f}" y="{HEIGHT - 3}" text-anchor="middle">{escape(x_label)}</text>')
    legend = []
    for index, (name, points) in enumerate(drawn):
        colour = PALETTE[index % len(PALETTE)]
        path = " ".join(position(x, y) for x, y in points)
        parts.append(f'<polyline points="{path}" stroke="{colour}" class="line"><title>{escape(name)}</title></polyline>')
        if markers or len(points) == 1:
            parts += [f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" fill="{colour}"/>' for p in path.split()]
        legend.append(f'<span><i style="background:{colour}"></i>{escape(name)}</span>')
    svg = (f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
           f'preserveAspectRatio="xMidYMid meet">{"".join(parts)}</svg>')
    return (f'<figure class="chart"><figcaption>{escape(title)}</figcaption>{svg}'
            f'<div class="legend">{"".join(legend)}</div></figure>')
