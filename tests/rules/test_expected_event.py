"""Expected-event rules: after a trigger event or a deadline, in time, late, never, per label."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from coplane.rules import evaluate
from coplane.rules.facts import EventFact, Facts
from coplane.rules.model import EventMatch, ExpectedEventSLA

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


AFTER = ExpectedEventSLA(
    name="load_follows_extract",
    kind="expected_event",
    after=EventMatch(event="run.completed", resource="airflow.dag.extract"),
    expect=EventMatch(event="asset.updated", resource="warehouse.*"),
    within="30m",
)
EXTRACTED = EventFact("run.completed", "airflow.dag.extract", T0)


def loaded(at: datetime) -> EventFact:
    return EventFact("asset.updated", "warehouse.sales", at)


def test_expected_event_in_time() -> None:
    facts = Facts(events=[EXTRACTED, loaded(T0 + timedelta(minutes=20))])
    result = evaluate(AFTER, facts, T0 + timedelta(minutes=40))
    assert result.status == "ok" and result.breaches == []
    assert result.last_met == T0 + timedelta(minutes=20)


def test_waiting_for_the_expected_event_schedules_its_due_time() -> None:
    result = evaluate(AFTER, Facts(events=[EXTRACTED]), T0 + timedelta(minutes=10))
    assert result.status == "ok" and result.next_deadline == T0 + timedelta(minutes=30)


def test_expected_event_late_breaches_then_resolves() -> None:
    facts = Facts(events=[EXTRACTED, loaded(T0 + timedelta(minutes=45))])
    during = evaluate(AFTER, facts, T0 + timedelta(minutes=35))
    [breach] = during.breaches
    assert breach.key == "load_follows_extract:after:2026-11-22T10:00:00Z:airflow.dag.extract"
    assert breach.due == T0 + timedelta(minutes=30)
    assert breach.reason == (
        "load_follows_extract: no asset.updated since run.completed of airflow.dag.extract at "
        "2026-11-22 10:00 UTC; due 10:30 (within 30m)"
    )
    assert evaluate(AFTER, facts, T0 + timedelta(minutes=50)).breaches == []


def test_expected_event_never_arrives_and_other_resources_do_not_count() -> None:
    wrong = EventFact("asset.updated", "lake.sales", T0 + timedelta(minutes=5))
    result = evaluate(AFTER, Facts(events=[EXTRACTED, wrong]), T0 + timedelta(hours=5))
    assert result.status == "breached" and len(result.breaches) == 1


def test_an_event_before_the_trigger_does_not_meet_it() -> None:
    facts = Facts(events=[loaded(T0 - timedelta(minutes=1)), EXTRACTED])
    assert evaluate(AFTER, facts, T0 + timedelta(hours=1)).status == "breached"


VENDOR = ExpectedEventSLA(
    name="vendor_file",
    kind="expected_event",
    deadline="0 6 * * *",
    timezone="Europe/Berlin",
    expect=EventMatch(event="file.*"),
    within="1h",
)


def test_deadline_trigger_met_missed_and_resolved_late() -> None:
    created = berlin(2026, 11, 21, 12)
    arrived = EventFact("file.arrived", "sftp.vendor", berlin(2026, 11, 22, 6, 30))
    ok = evaluate(VENDOR, Facts(events=[arrived], created=created), berlin(2026, 11, 22, 7, 5))
    assert ok.status == "ok" and ok.next_deadline == berlin(2026, 11, 23, 7)
    late = EventFact("file.arrived", "sftp.vendor", berlin(2026, 11, 22, 7, 20))
    facts = Facts(events=[late], created=created)
    missed = evaluate(VENDOR, facts, berlin(2026, 11, 22, 7, 10))
    [breach] = missed.breaches
    assert breach.key == "vendor_file:2026-11-22T05:00:00Z"
    assert breach.due == berlin(2026, 11, 22, 7)
    assert breach.reason == (
        "vendor_file: no file.* since the deadline 2026-11-22 06:00 CET; due 07:00 (within 1h)"
    )
    assert evaluate(VENDOR, facts, berlin(2026, 11, 22, 7, 30)).status == "ok"


def test_deadline_trigger_waits_until_within_has_passed() -> None:
    result = evaluate(VENDOR, Facts(created=berlin(2026, 11, 21, 12)), berlin(2026, 11, 22, 6, 30))
    assert result.breaches == [] and result.next_deadline == berlin(2026, 11, 22, 7)


def test_for_each_splits_per_label_value() -> None:
    sla = VENDOR.model_copy(update={"for_each": "vendor"})
    created = berlin(2026, 11, 20, 12)
    events = [
        EventFact("file.arrived", "sftp.acme", berlin(2026, 11, 21, 6, 10), {"vendor": "acme"}),
        EventFact("file.arrived", "sftp.globex", berlin(2026, 11, 21, 6, 20), {"vendor": "globex"}),
        EventFact("file.arrived", "sftp.acme", berlin(2026, 11, 22, 6, 15), {"vendor": "acme"}),
    ]
    result = evaluate(sla, Facts(events=events, created=created), berlin(2026, 11, 22, 8))
    [breach] = result.breaches
    assert breach.key == "vendor_file:2026-11-22T05:00:00Z:globex"
    assert "no file.* for vendor=globex" in breach.reason


def test_for_each_after_trigger_pairs_by_label() -> None:
    sla = ExpectedEventSLA(
        name="per_table",
        kind="expected_event",
        after=EventMatch(event="extract.done"),
        expect=EventMatch(event="load.done"),
        within="10m",
        for_each="table",
    )
    events = [
        EventFact("extract.done", "x", T0, {"table": "a"}),
        EventFact("extract.done", "x", T0, {"table": "b"}),
        EventFact("load.done", "y", T0 + timedelta(minutes=5), {"table": "a"}),
    ]
    result = evaluate(sla, Facts(events=events), T0 + timedelta(minutes=15))
    assert [b.key for b in result.breaches] == ["per_table:after:2026-11-22T10:00:00Z:x:b"]


def test_nothing_seen_is_unknown() -> None:
    assert evaluate(AFTER, Facts(), T0).status == "unknown"
