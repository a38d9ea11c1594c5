"""Heartbeat rules: period and schedule with grace, unfinished starts, fail pings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from coplane.rules import evaluate
from coplane.rules.facts import Facts, PingFact
from coplane.rules.model import HeartbeatSLA

T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)
HOURLY = HeartbeatSLA(name="backup", kind="heartbeat", target="backup", period="1h")
CRON = HeartbeatSLA(
    name="backup", kind="heartbeat", target="backup", schedule="0 * * * *", grace="10m"
)


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def test_period_with_grace() -> None:
    facts = Facts(pings=[PingFact("success", T0), PingFact("success", minutes(70))])
    ok = evaluate(HOURLY, facts, minutes(64))
    assert ok.status == "ok" and ok.next_deadline == minutes(65)
    late = evaluate(HOURLY, facts, minutes(65))
    [breach] = late.breaches
    assert breach.key == "backup:ping:2026-11-22T11:00:00Z" and breach.due == minutes(65)
    assert breach.reason == (
        "backup: last ping 2026-11-22 10:00 UTC; expected 2026-11-22 11:00 UTC, due 11:05 "
        "(grace 5m)"
    )
    back = evaluate(HOURLY, facts, minutes(75))
    assert back.status == "ok" and back.next_deadline == minutes(135)


def test_schedule_with_grace() -> None:
    facts = Facts(pings=[PingFact("success", minutes(2))])
    assert evaluate(CRON, facts, minutes(69)).status == "ok"
    result = evaluate(CRON, facts, minutes(70))
    assert [b.key for b in result.breaches] == ["backup:ping:2026-11-22T11:00:00Z"]


def test_no_ping_since_creation() -> None:
    facts = Facts(created=T0)
    waiting = evaluate(HOURLY, facts, minutes(30))
    assert waiting.status == "unknown" and waiting.next_deadline == minutes(65)
    [breach] = evaluate(HOURLY, facts, minutes(66)).breaches
    assert breach.reason.startswith("backup: no ping yet;")


def test_start_without_end_beyond_max_runtime() -> None:
    sla = HOURLY.model_copy(update={"max_runtime": timedelta(minutes=30)})
    started = [PingFact("success", T0), PingFact("start", minutes(10), rid="a")]
    running = evaluate(sla, Facts(pings=started), minutes(30))
    assert running.status == "ok" and running.next_deadline == minutes(40)
    stuck = evaluate(sla, Facts(pings=started), minutes(41))
    [breach] = stuck.breaches
    assert breach.key == "backup:start:a" and breach.due == minutes(40)
    ended = [*started, PingFact("success", minutes(45), rid="a")]
    assert evaluate(sla, Facts(pings=ended), minutes(50)).breaches == []


def test_start_without_rid_uses_grace_and_latest_start() -> None:
    pings = [
        PingFact("success", T0),
        PingFact("start", minutes(20)),
        PingFact("start", minutes(30)),
    ]
    result = evaluate(HOURLY, Facts(pings=pings), minutes(36))
    assert [b.key for b in result.breaches] == ["backup:start:2026-11-22T10:30:00Z"]


def test_fail_ping_breaches_until_a_success() -> None:
    failed = [PingFact("success", T0), PingFact("fail", minutes(10))]
    result = evaluate(HOURLY, Facts(pings=failed), minutes(11))
    [breach] = result.breaches
    assert breach.key == "backup:fail:2026-11-22T10:10:00Z"
    assert breach.reason == "backup: the job reported failure at 2026-11-22 10:10 UTC"
    recovered = [*failed, PingFact("success", minutes(20))]
    assert evaluate(HOURLY, Facts(pings=recovered), minutes(21)).status == "ok"


def test_no_pings_and_no_creation_is_unknown() -> None:
    assert evaluate(HOURLY, Facts(), T0).status == "unknown"


def test_the_latest_start_is_ended_by_an_end_without_rid_or_a_fail_with_another() -> None:
    sla = HOURLY.model_copy(update={"max_runtime": timedelta(minutes=30)})
    started = [PingFact("success", T0), PingFact("start", minutes(10), rid="a")]
    plain_end = [*started, PingFact("success", minutes(20))]
    assert evaluate(sla, Facts(pings=plain_end), minutes(50)).breaches == []
    other_fail = [*started, PingFact("fail", minutes(20), rid="b")]
    [breach] = evaluate(sla, Facts(pings=other_fail), minutes(50)).breaches
    assert breach.key.startswith("backup:fail")  # the failure, not a second "has not ended"
    # an older start is not the one an end without rid finishes
    older = [*started, PingFact("start", minutes(15), rid="c"), PingFact("success", minutes(20))]
    [stuck] = evaluate(sla, Facts(pings=older), minutes(50)).breaches
    assert stuck.key == "backup:start:a"
