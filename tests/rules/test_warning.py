"""When an SLA with `warn_at_risk` warns, and when its warning is met or becomes the breach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from coplane.rules.facts import Breach, Evaluation
from coplane.rules.warning import outcome, warning_due

DUE = datetime(2026, 11, 22, 8, tzinfo=UTC)
OPENED = DUE - timedelta(minutes=20)
KEY = "sales_done:2026-11-22T08:00:00Z"
AT_RISK = Evaluation(status="at_risk", next_deadline=DUE, explanation="ETA 09:30, after 09:00")


def test_an_at_risk_evaluation_warns_once_per_window() -> None:
    due = warning_due("sales_done", True, AT_RISK)
    assert due is not None
    # the key a missed window's incident gets, so the breach continues the warning
    assert (due.key, due.due, due.reason) == (KEY, DUE, "ETA 09:30, after 09:00")
    later = warning_due("sales_done", True, Evaluation(status="at_risk", next_deadline=DUE))
    assert later is not None and later.key == KEY
    tomorrow = Evaluation(status="at_risk", next_deadline=DUE + timedelta(days=1))
    next_day = warning_due("sales_done", True, tomorrow)
    assert next_day is not None and next_day.key != KEY


def test_no_warning_without_the_setting_or_a_risk() -> None:
    assert warning_due("sales_done", False, AT_RISK) is None
    for status in ("ok", "breached", "unknown"):
        evaluation = Evaluation(status=status, next_deadline=DUE)
        assert warning_due("sales_done", True, evaluation) is None
    assert warning_due("sales_done", True, Evaluation(status="at_risk")) is None


def test_a_warning_stays_open_while_the_window_is_still_at_risk() -> None:
    assert outcome(KEY, DUE, OPENED, AT_RISK) is None
    # the forecast looks fine again, but nothing has met the window yet
    calmer = Evaluation(status="ok", next_deadline=DUE, last_met=OPENED - timedelta(days=1))
    assert outcome(KEY, DUE, OPENED, calmer) is None
    failed = Evaluation(status="unknown", explanation="evaluation failed")
    assert outcome(KEY, DUE, OPENED, failed) is None


def test_a_warning_met_in_time() -> None:
    met = Evaluation(status="ok", next_deadline=DUE, last_met=DUE - timedelta(minutes=2))
    assert outcome(KEY, DUE, OPENED, met) == "met"
    # a window passed without a breach (a rule that met it without a last_met)
    passed = Evaluation(status="ok", next_deadline=DUE + timedelta(days=1))
    assert outcome(KEY, DUE, OPENED, passed) == "met"


def test_a_warning_turns_into_the_breach_of_its_window() -> None:
    breach = Breach(key=KEY, due=DUE, reason="no completed run")
    missed = Evaluation(status="breached", breaches=[breach], next_deadline=DUE)
    assert outcome(KEY, DUE, OPENED, missed) == "breached"
    # a `within` run's breach, due at the warning's deadline, is the same miss
    run = Breach(key="sales_done:run:r1", due=DUE, reason="still running")
    assert outcome(KEY, DUE, OPENED, Evaluation(status="breached", breaches=[run])) == "breached"


def test_an_older_window_or_the_budget_alert_does_not_settle_a_warning() -> None:
    older = Breach(key="sales_done:2026-11-21T08:00:00Z", due=DUE - timedelta(days=1), reason="x")
    budget = Breach(key="sales_done:budget", due=OPENED, reason="burning")
    both = Evaluation(status="breached", breaches=[older, budget], next_deadline=DUE)
    assert outcome(KEY, DUE, OPENED, both) is None
