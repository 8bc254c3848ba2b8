"""Charts drawn on the server as SVG geometry (no chart library, no script): stacked
columns over days and stacked horizontal bars by label. Every chart also renders its data
as a table, for screen readers and for copying."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

WIDTH = 640
HEIGHT = 220
LEFT = 40  # room for the value axis
BOTTOM = 40  # room for the labels
TOP = 10
BAR_ROW = 26
LABEL_WIDTH = 180


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    series: int
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    y: float
    text: str


@dataclass
class Chart:
    title: str
    width: int
    height: int
    series: list[str]
    rows: list[tuple[str, list[float]]]
    rects: list[Rect] = field(default_factory=list)
    x_labels: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    gridlines: list[float] = field(default_factory=list)
    horizontal: bool = False

    @property
    def empty(self) -> bool:
        return not any(sum(values) for _, values in self.rows)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000):
        if value <= step * 4:
            return float(step * 4)
    return float(value)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


def columns(
    title: str, series: Sequence[str], rows: Sequence[tuple[str, Sequence[float]]]
) -> Chart:
    """Stacked columns: one per row (for example a day), one colour per series."""
    chart = Chart(title, WIDTH, HEIGHT, list(series), [(lab, list(v)) for lab, v in rows])
    if not rows:
        return chart
    top = _nice_max(max(sum(v) for _, v in rows))
    plot_h = HEIGHT - TOP - BOTTOM
    plot_w = WIDTH - LEFT - 10
    slot = plot_w / len(rows)
    bar_w = max(2.0, slot * 0.7)
    every = max(1, len(rows) // 8)
    for i, (label, values) in enumerate(rows):
        x = LEFT + i * slot + (slot - bar_w) / 2
        base = float(TOP + plot_h)
        for s, value in enumerate(values):
            if value <= 0:
                continue
            h = plot_h * value / top
            base -= h
            chart.rects.append(
                Rect(
                    round(x, 1),
                    round(base, 1),
                    round(bar_w, 1),
                    round(h, 1),
                    s,
                    f"{label}: {series[s]} {_fmt(value)}",
                )
            )
        if i % every == 0:
            chart.x_labels.append(Tick(round(x + bar_w / 2, 1), HEIGHT - BOTTOM + 16, label[5:]))
    for k in range(5):
        value = top * k / 4
        y = round(TOP + plot_h - plot_h * k / 4, 1)
        chart.gridlines.append(y)
        chart.y_ticks.append(Tick(LEFT - 6, y + 4, _fmt(value)))
    return chart


def bars(title: str, series: Sequence[str], rows: Sequence[tuple[str, Sequence[float]]]) -> Chart:
    """Stacked horizontal bars: one per row (a topic, a document)."""
    height = TOP + BAR_ROW * max(1, len(rows)) + 20
    chart = Chart(
        title, WIDTH, height, list(series), [(lab, list(v)) for lab, v in rows], horizontal=True
    )
    if not rows:
        return chart
    top = _nice_max(max(sum(v) for _, v in rows))
    plot_w = WIDTH - LABEL_WIDTH - 20
    for i, (label, values) in enumerate(rows):
        y = TOP + i * BAR_ROW
        x = float(LABEL_WIDTH)
        for s, value in enumerate(values):
            if value <= 0:
                continue
            w = plot_w * value / top
            chart.rects.append(
                Rect(
                    round(x, 1),
                    y + 4,
                    round(w, 1),
                    BAR_ROW - 8,
                    s,
                    f"{label}: {series[s]} {_fmt(value)}",
                )
            )
            x += w
        short = label if len(label) <= 26 else label[:25] + "…"
        chart.x_labels.append(Tick(LABEL_WIDTH - 8, y + BAR_ROW / 2 + 4, short))
    for k in range(5):
        x = round(LABEL_WIDTH + plot_w * k / 4, 1)
        chart.gridlines.append(x)
        chart.y_ticks.append(Tick(x, height - 4, _fmt(top * k / 4)))
    return chart
