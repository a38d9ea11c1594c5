"""The dispatcher's early warnings: one per channel and window, policy, and their follow-up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from coplane.rules.facts import Breach, Evaluation
from coplane.rules.model import FreshnessSLA
from coplane.store.incidents import apply_evaluation, claim_notification, read_notification
from coplane.store.warnings import apply_warning
from tests.alerts.test_dispatcher import LATER, Harness, channel, harness_of

__all__ = ["harness_of"]  # the fixture, shared with the dispatcher's tests

DUE = datetime.now(UTC) + timedelta(minutes=30)


def _at_risk(due: datetime = DUE) -> Evaluation:
    return Evaluation("at_risk", next_deadline=due, explanation="sales: ETA 09:40, after 09:00")


def _evaluate(h: Harness, sla: FreshnessSLA, evaluation: Evaluation) -> None:
    with h.store.connect() as conn:
        apply_evaluation(conn, sla, evaluation, lambda _: [], datetime.now(UTC))
        apply_warning(conn, sla, evaluation, sla.target, datetime.now(UTC))


def _warning_notes(h: Harness) -> list[dict[str, Any]]:
    with h.store.connect() as conn:
        rows = conn.query(
            "SELECT channel, action, status, last_error FROM notifications "
            "WHERE warning_id IS NOT NULL ORDER BY created, channel"
        )
    return [dict(r) for r in rows]


def test_a_warning_is_sent_once_per_channel_and_window(
    harness_of: Callable[..., Harness],
) -> None:
    h = harness_of(ops=channel(), pager=channel())
    h.recorders["pager"].wanted = lambda alert: not alert.warning
    sla = h.sla(warn_at_risk=True, owners=["data-eng"])
    _evaluate(h, sla, _at_risk())
    _evaluate(h, sla, _at_risk())  # at risk again in the same window
    assert h.run() == 2
    assert h.run(LATER) == 0
    [alert] = h.recorders["ops"].sent
    assert (alert.action, alert.warning, alert.sla) == ("warn", True, "sales")
    assert alert.title == "[warning] sales at risk"
    assert alert.url == "https://coplane.example.com/slas/sales"
    assert alert.due == DUE and alert.owners == ["data-eng"]
    assert h.recorders["pager"].sent == []
    assert [(n["channel"], n["status"]) for n in _warning_notes(h)] == [
        ("ops", "sent"), ("pager", "skipped")
    ]  # fmt: skip
    assert h.incidents() == []  # a warning is no incident
    # the next window warns again
    _evaluate(h, sla, _at_risk(DUE + timedelta(days=1)))
    assert h.run() == 2 and len(h.recorders["ops"].sent) == 2


def test_a_warning_met_in_time_is_resolved_only_where_it_was_announced(
    harness_of: Callable[..., Harness],
) -> None:
    h = harness_of(ops=channel(), pager=channel())
    h.recorders["pager"].wanted = lambda alert: not alert.warning
    sla = h.sla(warn_at_risk=True)
    _evaluate(h, sla, _at_risk())
    h.run()
    _evaluate(h, sla, Evaluation("ok", next_deadline=DUE, last_met=datetime.now(UTC)))
    assert h.run() == 2
    [_, met] = h.recorders["ops"].sent
    assert (met.action, met.warning, met.title) == ("resolve", True, "[warning] sales met in time")
    notes = [(n["channel"], n["action"], n["status"], n["last_error"]) for n in _warning_notes(h)]
    assert notes[2:] == [
        ("ops", "resolve", "sent", None),
        ("pager", "resolve", "skipped", "the warning was not announced (skipped) here"),
    ]


def test_a_warning_settled_before_its_turn_is_not_sent(
    harness_of: Callable[..., Harness],
) -> None:
    h = harness_of(ops=channel())
    sla = h.sla(warn_at_risk=True)
    _evaluate(h, sla, _at_risk())
    breach = Breach(f"sales:{DUE.isoformat()}", DUE, "sales: no update; due 09:00")
    _evaluate(h, sla, Evaluation("breached", [breach], next_deadline=DUE))
    h.run()
    # the breach is announced; the warning it overtook is not
    assert [a.action for a in h.recorders["ops"].sent] == ["trigger"]
    [note] = _warning_notes(h)
    assert note["status"] == "skipped"
    assert note["last_error"] == "the window was breached before the warning was announced"


def test_a_resolve_waits_for_its_warning_to_be_sent(
    harness_of: Callable[..., Harness],
) -> None:
    h = harness_of(ops=channel())
    sla = h.sla(warn_at_risk=True)
    _evaluate(h, sla, _at_risk())
    with h.store.connect() as conn:  # another dispatcher holds the warning, mid-send
        [warn] = conn.query("SELECT id FROM notifications WHERE action = 'warn'")
        assert claim_notification(conn, warn["id"], datetime.now(UTC))
    _evaluate(h, sla, Evaluation("ok", next_deadline=DUE, last_met=datetime.now(UTC)))
    assert h.run() == 1
    assert h.recorders["ops"].sent == []
    with h.store.connect() as conn:
        [resolve] = conn.query("SELECT id FROM notifications WHERE action = 'resolve'")
        assert read_notification(conn, resolve["id"])["status"] == "pending"


def test_quiet_periods_silence_warnings(harness_of: Callable[..., Harness]) -> None:
    until = datetime.now(UTC) + timedelta(hours=1)
    h = harness_of(ops=channel(quiet=[{"labels": {"team": "sales"}, "until": until}]))
    sla = h.sla(warn_at_risk=True, labels={"team": "sales"})
    _evaluate(h, sla, _at_risk())
    h.run()
    assert h.recorders["ops"].sent == []
    assert [n["status"] for n in _warning_notes(h)] == ["silenced"]


def test_a_gone_warning_is_dead(harness_of: Callable[..., Harness]) -> None:
    h = harness_of(ops=channel())
    sla = h.sla(warn_at_risk=True)
    _evaluate(h, sla, _at_risk())
    with h.store.connect() as conn:
        [row] = conn.query("SELECT id FROM notifications WHERE action = 'warn'")
        assert claim_notification(conn, row["id"], datetime.now(UTC))
        claimed = read_notification(conn, row["id"])
        conn.execute("DELETE FROM sla_warnings")
    outcome = h.dispatcher.deliver(claimed)
    assert (outcome.status, outcome.detail) == ("dead", "the warning is gone")
