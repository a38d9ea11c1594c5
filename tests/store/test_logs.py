"""Run log lines: stored in batches, read per run in time order and in pages, expired."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from coplane.store import Conn
from coplane.store.logs import LogLine, insert_logs, latest_run_logs, list_run_logs
from coplane.store.retention import maintain_logs
from tests.factories import at

RUN = uuid.uuid4()
OTHER = uuid.uuid4()


def _line(minute: float, message: str, run: uuid.UUID = RUN) -> LogLine:
    return LogLine(run, None, at(minute), "INFO", "flow", message)


def test_a_runs_lines_come_oldest_first_in_pages(conn: Conn) -> None:
    insert_logs(conn, [_line(3, "c"), _line(1, "a"), _line(2, "b"), _line(0, "x", OTHER)], at(5))
    first, cursor = list_run_logs(conn, RUN, limit=2)
    assert [r["message"] for r in first] == ["a", "b"]
    assert cursor is not None
    rest, after = list_run_logs(conn, RUN, limit=2, cursor=cursor)
    assert [r["message"] for r in rest] == ["c"] and after is None
    since, _ = list_run_logs(conn, RUN, since=at(2))
    assert [r["message"] for r in since] == ["b", "c"]
    assert [r["message"] for r in latest_run_logs(conn, RUN, 2)] == ["b", "c"]


def test_lines_of_one_instant_are_neither_lost_nor_repeated_across_pages(conn: Conn) -> None:
    insert_logs(conn, [_line(1, str(i)) for i in range(5)], at(2))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        rows, cursor = list_run_logs(conn, RUN, limit=2, cursor=cursor)
        seen += [r["message"] for r in rows]
        if cursor is None:
            break
    assert seen == ["0", "1", "2", "3", "4"]


def test_a_made_up_cursor_is_refused(conn: Conn) -> None:
    with pytest.raises(ValueError, match="cursor"):
        list_run_logs(conn, RUN, cursor="bm90IGEgY3Vyc29y")


def test_retention_drops_old_lines_only(conn: Conn) -> None:
    insert_logs(conn, [_line(0, "old"), _line(60 * 24 * 40, "new")], at(0))
    now = at(60 * 24 * 41)
    assert maintain_logs(conn, now, retention_days=30) == 1
    assert [r["message"] for r in list_run_logs(conn, RUN)[0]] == ["new"]
    assert maintain_logs(conn, now + timedelta(days=400), retention_days=0) == 0  # kept forever
