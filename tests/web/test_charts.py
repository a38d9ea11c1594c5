"""The pure parts of the pages: chart geometry and the graph walks, cycles included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from coplane.web.charts import RunPoint, Span, duration_chart, gantt
from coplane.web.graph import downstream_of, neighbourhood

T = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def test_duration_bars_scale_to_the_longest_run_and_the_band_spans_p50_to_p95() -> None:
    runs = [RunPoint(str(i), "completed", s, f"r{i}") for i, s in enumerate((60, 120, 240))]
    runs.append(RunPoint("x", "running", None, "r3"))
    chart = duration_chart(runs, width=456, height=100, axis=56)
    heights = [b.height for b in chart.bars]
    assert heights[2] > heights[1] > heights[0] and heights[2] == 100 - 8
    assert heights[3] == 2.0 and "running" in chart.bars[3].title  # a stub, still visible
    assert [round(b.x) for b in chart.bars] == sorted(round(b.x) for b in chart.bars)
    assert chart.band is not None
    top, bottom = chart.band  # p95 (228 s) is higher up than p50 (120 s)
    assert top < bottom and abs(bottom - (100 - 120 / 240 * 92)) < 0.01


def test_duration_chart_of_no_runs_is_empty() -> None:
    chart = duration_chart([])
    assert chart.bars == () and chart.band is None


def test_gantt_places_tasks_on_one_time_axis() -> None:
    spans = [
        Span("a", "extract", "completed", T, T + timedelta(minutes=10)),
        Span("b", "load", "running", T + timedelta(minutes=10), None),
        Span("c", "report", "scheduled", None, None),
    ]
    chart = gantt(spans, now=T + timedelta(minutes=20), width=400, axis=100)
    a, b, c = chart.bars
    assert a.x == 100 and abs(a.x + a.width - b.x) < 0.01  # load starts where extract ends
    assert abs(b.x + b.width - 392) < 0.01  # the running task reaches now, the axis end
    assert c.x == 100 and "not started" in c.title
    assert [label for _, label in chart.labels] == ["extract", "load", "report"]
    assert chart.ticks[-1][1] == "20m 0s"


def test_gantt_with_no_started_task_draws_nothing() -> None:
    assert gantt([Span("a", "t", "scheduled", None, None)], now=T).bars == ()


def test_walks_stop_on_cycles_and_respect_hops() -> None:
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("x", "a")]
    assert neighbourhood(edges, "a", 1, "downstream") == {"a", "b"}
    assert neighbourhood(edges, "a", 1, "upstream") == {"a", "c", "x"}
    assert neighbourhood(edges, "a", 6, "both") == {"a", "b", "c", "d", "x"}
    reached, path = downstream_of(edges, "a")
    assert reached == {"b", "c", "d"}  # a itself is not "downstream of a", cycle or not
    assert path == {("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}


def test_axis_labels_never_repeat_and_are_round() -> None:
    # a 2 s run used to be labelled 0s 0s 1s 1s 2s
    spans = [Span("a", "extract", "completed", T, T + timedelta(seconds=2))]
    labels = [label for _, label in gantt(spans, now=T).ticks]
    assert labels == ["0s", "1s", "2s"]
    for seconds in (1, 3, 7, 59, 61, 125, 3599, 7300, 200_000):
        ticks = duration_chart([RunPoint("r", "completed", seconds, "r")]).ticks
        shown = [label for _, label in ticks]
        assert len(shown) == len(set(shown)) >= 2, (seconds, shown)


def test_a_running_run_is_drawn_at_its_elapsed_time() -> None:
    runs = [RunPoint("a", "completed", 60, "r1"), RunPoint("b", "running", 600, "r2", True)]
    done, running = duration_chart(runs).bars
    assert running.height > done.height and "10m 0s so far" in running.title
