"""Chart geometry for server-drawn SVG: a run-duration chart with its p50-p95 band, and the
task timeline (Gantt) of a run. Pure functions: the templates only draw what they return."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from coplane.store.resources import percentile


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    status: str
    title: str
    href: str = ""


@dataclass(frozen=True, slots=True)
class Chart:
    width: float
    height: float
    bars: tuple[Bar, ...]
    band: tuple[float, float] | None = None  # y of p95 and p50 (top, bottom), duration chart
    ticks: tuple[tuple[float, str], ...] = ()  # axis position and label
    labels: tuple[tuple[float, str], ...] = field(default=())  # row labels (y, text), Gantt


@dataclass(frozen=True, slots=True)
class RunPoint:
    """One run as the duration chart sees it."""

    id: str
    state: str
    seconds: float | None
    label: str
    running: bool = False  # still going: `seconds` is its elapsed time so far


def _seconds(value: float) -> str:
    total = round(value)
    if total >= 3600:
        return f"{total // 3600}h {total % 3600 // 60}m"
    if total >= 60:
        return f"{total // 60}m {total % 60}s"
    return f"{total}s"


# Tick steps, in seconds: round values a reader expects on a time axis.
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600,
          12 * 3600, 86400)  # fmt: skip


def nice_ticks(total: float, most: int = 4) -> list[float]:
    """0 and multiples of a round step up to `total`, at most `most` + 1 values: each label
    distinct once shown in whole seconds (never "0s 0s 1s 1s")."""
    step: float = next((s for s in _STEPS if total / s <= most), 0)
    if not step:  # past days: whole days
        step = 86400 * -(-total // (86400 * most))
    count = int(total // step)
    return [i * step for i in range(count + 1)]


def duration_chart(
    runs: Sequence[RunPoint], width: float = 720, height: float = 160, axis: float = 56
) -> Chart:
    """Bars of the runs' durations, oldest left, with the p50-p95 band of completed runs behind
    them. A running run is drawn at its elapsed time; one with no duration at all gets a short
    stub so it is still seen."""
    known = [r.seconds for r in runs if r.seconds is not None]
    completed = [r.seconds for r in runs if r.seconds is not None and r.state == "completed"]
    top = max(known, default=0.0) or 1.0
    plot = width - axis
    step = plot / max(len(runs), 1)
    bar_width = min(max(step * 0.7, 1.0), 24.0)  # thin with many runs, never a slab

    def y_of(seconds: float) -> float:
        return height - seconds / top * (height - 8)

    bars = []
    for i, r in enumerate(runs):
        bar_height = 2.0 if r.seconds is None else max(height - y_of(r.seconds), 1.0)
        bars.append(
            Bar(
                x=axis + i * step + (step - bar_width) / 2,
                y=height - bar_height,
                width=bar_width,
                height=bar_height,
                status=r.state,
                title=f"{r.label}: {r.state}, "
                + (
                    "running"
                    if r.seconds is None
                    else f"{_seconds(r.seconds)} so far"
                    if r.running
                    else _seconds(r.seconds)
                ),
                href=r.id,
            )
        )
    p50, p95 = percentile(completed, 50), percentile(completed, 95)
    band = None if p50 is None or p95 is None else (y_of(p95), y_of(p50))
    ticks = tuple((y_of(s), _seconds(s)) for s in nice_ticks(top, 3))
    return Chart(width, height, tuple(bars), band, ticks)


@dataclass(frozen=True, slots=True)
class Span:
    """One task run on the timeline."""

    id: str
    label: str
    state: str
    started: datetime | None
    ended: datetime | None


def gantt(
    spans: Sequence[Span], now: datetime, width: float = 720, row: float = 22, axis: float = 200
) -> Chart:
    """One row per task run, placed by start and end on a shared time axis. An unfinished task
    runs to `now`; one that never started is a marker at the axis start."""
    starts = [s.started for s in spans if s.started is not None]
    if not starts:
        return Chart(width, row, ())
    origin = min(starts)
    end = max([s.ended or now for s in spans if s.started is not None] + [origin])
    total = max((end - origin).total_seconds(), 1.0)
    plot = width - axis - 8
    bars, labels = [], []
    for i, s in enumerate(spans):
        y = i * row + 3
        labels.append((y + row / 2 + 1, s.label))
        if s.started is None:
            bars.append(Bar(axis, y, 3, row - 6, s.state, f"{s.label}: {s.state}, not started"))
            continue
        x = axis + (s.started - origin).total_seconds() / total * plot
        seconds = ((s.ended or now) - s.started).total_seconds()
        w = max(seconds / total * plot, 2.0)
        bars.append(Bar(x, y, w, row - 6, s.state, f"{s.label}: {s.state}, {_seconds(seconds)}"))
    ticks = tuple((axis + plot * s / total, _seconds(s)) for s in nice_ticks(total))
    return Chart(width, len(spans) * row + 18, tuple(bars), None, ticks, tuple(labels))
