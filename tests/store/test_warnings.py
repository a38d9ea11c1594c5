"""Early warnings in the store: one per SLA and window, linked to the breach they became."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coplane.rules.facts import Breach, Evaluation
from coplane.rules.model import FreshnessSLA
from coplane.store import Conn, migrate, open_store
from coplane.store.incidents import apply_evaluation
from coplane.store.warnings import apply_warning

NOW = datetime(2026, 11, 22, 7, 40, tzinfo=UTC)
DUE = datetime(2026, 11, 22, 8, tzinfo=UTC)
SLA = FreshnessSLA.model_validate(
    {
        "kind": "freshness",
        "name": "sales",
        "target": "wh.sales",
        "deadline": "0 8 * * *",
        "notify": ["slack", "pager"],
        "warn_at_risk": True,
    }
)
AT_RISK = Evaluation("at_risk", next_deadline=DUE, explanation="sales: ETA 08:40")


def _rows(conn: Conn, sql: str) -> list[tuple[object, ...]]:
    return [tuple(r.values()) for r in conn.query(sql)]


def test_one_warning_per_window_whoever_raises_it(conn: Conn) -> None:
    assert apply_warning(conn, SLA, AT_RISK, "wh.sales", NOW) == (True, 2)
    assert apply_warning(conn, SLA, AT_RISK, "wh.sales", NOW + timedelta(minutes=5)) == (True, 0)
    assert _rows(conn, "SELECT key, outcome FROM sla_warnings") == [
        ("sales:2026-11-22T08:00:00Z", None)
    ]
    assert sorted(_rows(conn, "SELECT channel, action FROM notifications")) == [
        ("pager", "warn"), ("slack", "warn")
    ]  # fmt: skip


def test_the_breach_of_the_window_takes_the_warning_over(conn: Conn) -> None:
    apply_warning(conn, SLA, AT_RISK, "wh.sales", NOW)
    breach = Breach("sales:2026-11-22T08:00:00Z", DUE, "sales: no update; due 08:00")
    missed = Evaluation("breached", [breach], next_deadline=DUE + timedelta(days=1))
    [incident], _ = apply_evaluation(conn, SLA, missed, lambda _: [], DUE)
    assert apply_warning(conn, SLA, missed, "wh.sales", DUE) == (False, 0)  # no resolve queued
    [(outcome, incident_id)] = _rows(conn, "SELECT outcome, incident_id FROM sla_warnings")
    assert outcome == "breached" and str(incident_id) == str(incident["id"])


def test_a_notification_belongs_to_an_incident_or_a_warning(conn: Conn) -> None:
    with pytest.raises(Exception, match=r"(?i)check"), conn.transaction():
        conn.execute(
            "INSERT INTO notifications (id, channel, action, created, due, status) "
            "VALUES (?, 'slack', 'warn', ?, ?, 'pending')",
            (conn.uid(uuid.uuid4()), conn.time(NOW), conn.time(NOW)),
        )


def test_upgrading_sqlite_keeps_the_queued_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    every = migrate.list_migrations
    before = [m for m in every("sqlite") if m.version < 13]  # as a database made before 0013
    monkeypatch.setattr(migrate, "list_migrations", lambda dialect: before)
    old = open_store(url, pool_size=1)
    with old.connect() as conn:
        breach = Breach("sales:2026-11-22T08:00:00Z", DUE, "sales: no update")
        apply_evaluation(conn, SLA, Evaluation("breached", [breach]), lambda _: [], DUE)
    old.close()
    monkeypatch.setattr(migrate, "list_migrations", every)
    new = open_store(url, pool_size=1)
    try:
        with new.connect() as conn:
            assert sorted(_rows(conn, "SELECT channel, action, status FROM notifications")) == [
                ("pager", "trigger", "pending"), ("slack", "trigger", "pending")
            ]  # fmt: skip
            assert apply_warning(conn, SLA, AT_RISK, "wh.sales", NOW)[1] == 2
    finally:
        new.close()
