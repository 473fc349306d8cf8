"""Bar charts as inline SVG, drawn on the server.

No JavaScript chart library: the console must work from a vendored page on a
community office PC without network access, a chart must still read when printed or
saved, and a test can parse it.  Every chart has a title, labelled axes with round-number
ticks, a legend, a ``<title>`` tooltip per bar, and its peaks marked twice — a triangle
above the bar and a darker outline — so a peak shows on a black-and-white printout too.
Colours are attributes, not page CSS, so a chart looks the same when copied out of the page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from console.flow import DayTotal, Slot

SERIES_COLOURS = ("#2563a8", "#8fb8e0", "#d2553c")
"""Entries (dark blue), exits (light blue), denied (red): distinguishable in greyscale too."""
PEAK_COLOUR = "#b45309"
AXIS_COLOUR = "#444444"
GRID_COLOUR = "#dddddd"
FONT = "font-family='system-ui, sans-serif'"


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    """The x-axis label (shown only for every few bars when they are many)."""
    values: tuple[int, ...]
    """Stacked segments, bottom first, in the order of the legend."""
    peak: bool = False
    tooltip: str = ""


@dataclass(frozen=True, slots=True)
class ChartText:
    """Every word a chart shows, already translated by the caller."""

    title: str
    x_label: str
    y_label: str
    series: tuple[str, ...]
    peak: str


def nice_ticks(top: float, count: int = 5) -> list[int]:
    """Round tick values from 0 to at least ``top`` (1, 2, 5 × 10ⁿ steps), so the axis reads at a glance."""
    if top <= 0:
        return [0, 1]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(1, int(step))
    ticks = list(range(0, math.ceil(top / step) * step + 1, step))
    return ticks if ticks[-1] >= top else [*ticks, ticks[-1] + step]


def bar_chart(
    bars: Sequence[Bar], text: ChartText, *, width: int = 760, height: int = 280, chart_id: str = "chart"
) -> Markup:
    """A stacked bar chart with axes, ticks, legend and peak marks, as one ``<svg>`` element."""
    left, right, top, bottom = 56, 16, 44, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = nice_ticks(max((sum(b.values) for b in bars), default=0))
    y_max = ticks[-1]
    n = max(len(bars), 1)
    slot_w = plot_w / n
    bar_w = max(1.0, slot_w * 0.78)
    every = max(1, math.ceil(n / 16))  # at most ~16 x labels, so they never overlap

    def y(value: float) -> float:
        return top + plot_h - plot_h * value / y_max

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='chart' id='{escape(chart_id)}' "
        f"viewBox='0 0 {width} {height}' width='100%' role='img' aria-labelledby='{escape(chart_id)}-title' "
        f"{FONT} font-size='12'>",
        f"<title id='{escape(chart_id)}-title'>{escape(text.title)}</title>",
        f"<text x='{left}' y='18' font-size='15' font-weight='600' fill='#111'>{escape(text.title)}</text>",
    ]
    # grid and y axis
    for tick in ticks:
        ty = y(tick)
        out.append(
            f"<line x1='{left}' x2='{left + plot_w}' y1='{ty:.1f}' y2='{ty:.1f}' stroke='{GRID_COLOUR}'/>"
            f"<text x='{left - 6}' y='{ty + 4:.1f}' text-anchor='end' fill='{AXIS_COLOUR}'>{tick}</text>"
        )
    out.append(
        f"<text class='y-label' transform='translate(14 {top + plot_h / 2:.1f}) rotate(-90)' "
        f"text-anchor='middle' fill='{AXIS_COLOUR}'>{escape(text.y_label)}</text>"
    )
    # bars
    for i, bar in enumerate(bars):
        x = left + i * slot_w + (slot_w - bar_w) / 2
        base = 0
        tooltip = bar.tooltip or f"{bar.label}: {sum(bar.values)}"
        group_class = "bar peak" if bar.peak else "bar"
        out.append(
            f"<g class='{group_class}' data-label='{escape(bar.label)}'><title>{escape(tooltip)}</title>"
        )
        for s, value in enumerate(bar.values):
            if value <= 0:
                continue
            y0, y1 = y(base + value), y(base)
            colour = SERIES_COLOURS[s % len(SERIES_COLOURS)]
            out.append(
                f"<rect x='{x:.1f}' y='{y0:.1f}' width='{bar_w:.1f}' height='{y1 - y0:.1f}' fill='{colour}'/>"
            )
            base += value
        if bar.peak and base > 0:
            y_top = y(base)
            cx = x + bar_w / 2
            out.append(
                f"<rect class='peak-outline' x='{x:.1f}' y='{y_top:.1f}' width='{bar_w:.1f}' "
                f"height='{y(0) - y_top:.1f}' fill='none' stroke='{PEAK_COLOUR}' stroke-width='1.5'/>"
                f"<path class='peak-mark' d='M{cx - 5:.1f} {y_top - 10:.1f} L{cx + 5:.1f} {y_top - 10:.1f} "
                f"L{cx:.1f} {y_top - 3:.1f} Z' fill='{PEAK_COLOUR}'/>"
            )
        out.append("</g>")
        if i % every == 0:
            out.append(
                f"<text class='x-tick' x='{left + i * slot_w + slot_w / 2:.1f}' y='{top + plot_h + 16}' "
                f"text-anchor='middle' fill='{AXIS_COLOUR}'>{escape(bar.label)}</text>"
            )
    # axes
    out.append(
        f"<line x1='{left}' x2='{left}' y1='{top}' y2='{top + plot_h}' stroke='{AXIS_COLOUR}'/>"
        f"<line x1='{left}' x2='{left + plot_w}' y1='{top + plot_h}' y2='{top + plot_h}' stroke='{AXIS_COLOUR}'/>"
        f"<text class='x-label' x='{left + plot_w / 2:.1f}' y='{height - 10}' text-anchor='middle' "
        f"fill='{AXIS_COLOUR}'>{escape(text.x_label)}</text>"
    )
    # legend, right-aligned on the title line
    items = [(SERIES_COLOURS[i % len(SERIES_COLOURS)], name, False) for i, name in enumerate(text.series)]
    lx = width - right
    legend = []
    for colour, name, is_peak in reversed([*items, (PEAK_COLOUR, text.peak, True)]):
        lx -= 7 * len(name) + 26
        marker = (
            f"<path d='M{lx} 22 L{lx + 10} 22 L{lx + 5} 30 Z' fill='{colour}'/>"
            if is_peak
            else f"<rect x='{lx}' y='21' width='10' height='10' fill='{colour}'/>"
        )
        legend.append(f"{marker}<text x='{lx + 14}' y='30' fill='{AXIS_COLOUR}'>{escape(name)}</text>")
    out.append("<g class='legend'>" + "".join(legend) + "</g>")
    out.append("</svg>")
    return Markup("".join(out))


def day_chart(slots: Sequence[Slot], text: ChartText, *, chart_id: str = "day-chart") -> Markup:
    """A post's day: one bar per slot (entries, exits, denied stacked), peaks marked."""
    bars = [
        Bar(
            s.label,
            (s.entries, s.exits, s.denied),
            s.peak,
            f"{s.label}  {text.series[0]} {s.entries} · {text.series[1]} {s.exits} · {text.series[2]} {s.denied}"
            + (f"  ({text.peak})" if s.peak else ""),
        )
        for s in slots
    ]
    return bar_chart(bars, text, chart_id=chart_id)


def month_chart(days: Sequence[DayTotal], text: ChartText, *, chart_id: str = "month-chart") -> Markup:
    """A month of daily totals, peaks (the busiest days) marked."""
    bars = [
        Bar(
            str(d.day.day),
            (d.entries, d.exits, d.denied),
            d.peak,
            f"{d.day.isoformat()}  {text.series[0]} {d.entries} · {text.series[1]} {d.exits} · "
            f"{text.series[2]} {d.denied}" + (f"  ({text.peak})" if d.peak else ""),
        )
        for d in days
    ]
    return bar_chart(bars, text, chart_id=chart_id)
