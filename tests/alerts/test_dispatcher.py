"""The dispatcher sends each queued alert once, retries what failed, and applies channel policy."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coplane.alerts.channels import ChannelConfig
from coplane.alerts.dispatcher import Dispatcher
from coplane.alerts.notifier import Alert, IntegrationError, Notifier
from coplane.integrations.webhook.config import WebhookChannel
from coplane.rules.facts import Breach, Evaluation
from coplane.rules.model import FreshnessSLA
from coplane.store import Store
from coplane.store.channels import list_channel_states
from coplane.store.events import insert_events
from coplane.store.incidents import (
    ack_incident,
    apply_evaluation,
    list_incidents,
    resolve_incident,
)
from coplane.store.slas import upsert_slas
from tests.factories import events

LATER = timedelta(minutes=5)


class Recorder:
    """A channel that records what it is asked to send; `fail` scripts errors, in order."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []
        self.fail: list[IntegrationError] = []
        self.wanted: Callable[[Alert], bool] = lambda alert: True
        self.lock = threading.Lock()

    def wants(self, alert: Alert) -> bool:
        return self.wanted(alert)

    def send(self, alert: Alert) -> dict[str, Any] | None:
        with self.lock:
            if self.fail:
                raise self.fail.pop(0)
            self.sent.append(alert)
            return {"ts": f"t{len(self.sent)}"} if alert.action == "trigger" else None


def channel(**policy: Any) -> ChannelConfig:
    return WebhookChannel(type="webhook", url="http://alerts.invalid/hook", **policy)


class Harness:
    """A store with SLAs, a dispatcher over recording channels, and helpers to drive them."""

    def __init__(self, store: Store, **channels: ChannelConfig) -> None:
        self.store = store
        self.recorders: dict[str, Recorder] = {name: Recorder() for name in channels}
        self.configs = dict(channels)
        self.dispatcher = Dispatcher(
            store, channels, "https://coplane.example.com/", build=self._build
        )

    def _build(self, config: ChannelConfig) -> Notifier:
        [name] = [n for n, c in self.configs.items() if c is config]
        return self.recorders[name]

    def set_channels(self, **channels: ChannelConfig) -> None:
        self.configs = dict(channels)
        self.dispatcher.set_channels(channels)

    def sla(self, name: str = "sales", **fields: Any) -> FreshnessSLA:
        given: dict[str, Any] = {"kind": "freshness", "name": name, "target": f"wh.{name}"}
        given |= {"max_age": "1h", "notify": list(self.recorders), **fields}
        sla = FreshnessSLA.model_validate(given)
        with self.store.connect() as conn:
            upsert_slas(conn, [sla], "api", datetime.now(UTC))
        return sla

    def breach(
        self, sla: FreshnessSLA, *, resource: str | None = None, affected: tuple[str, ...] = ()
    ) -> None:
        b = Breach("w1", datetime.now(UTC), f"{sla.name}: no", resource=resource or sla.target)
        with self.store.connect() as conn:
            apply_evaluation(
                conn, sla, Evaluation("breached", [b]), lambda _: list(affected), datetime.now(UTC)
            )

    def lineage(self, source: str, pipeline: str, target: str) -> None:
        """A run of `pipeline` reading `source` and writing `target`: lineage between them."""
        event = {"occurred": datetime.now(UTC).isoformat(), "event": "run.completed",
                 "resource": {"id": pipeline, "kind": "pipeline"},
                 "related": [{"role": "run", "id": "r1"}, {"role": "input", "id": source},
                             {"role": "output", "id": target}]}  # fmt: skip
        with self.store.connect() as conn:
            insert_events(conn, events(event), datetime.now(UTC), self.store.partitions)

    def fix(self, sla: FreshnessSLA) -> None:
        with self.store.connect() as conn:
            apply_evaluation(conn, sla, Evaluation("ok"), lambda _: [], datetime.now(UTC))

    def run(self, after: timedelta = timedelta(0)) -> int:
        return self.dispatcher.run_once(datetime.now(UTC) + after)

    def notifications(self) -> list[dict[str, Any]]:
        with self.store.connect() as conn:
            incidents = list_incidents(conn, None, 100)
        return [n for i in incidents for n in i["notifications"]]

    def incidents(self) -> list[dict[str, Any]]:
        with self.store.connect() as conn:
            return list_incidents(conn, None, 100)


@pytest.fixture
def harness_of(store: Store) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**channels: ChannelConfig) -> Harness:
        h = Harness(store, **channels)
        made.append(h)
        return h

    yield make
    for h in made:
        h.dispatcher.stop()


def test_an_alert_is_sent_once_with_the_incident_and_its_link(
    harness_of: Callable[..., Harness],
) -> None:
    h = harness_of(ops=channel())
    h.breach(h.sla(owners=["data-eng"], labels={"team": "sales"}), affected=("dash.revenue",))
    assert h.run() == 1
    assert h.run(LATER) == 0  # nothing is sent twice
    [alert] = h.recorders["ops"].sent
    incident = h.incidents()[0]
    assert alert.action == "trigger" and alert.sla == "sales" and alert.kind == "freshness"
    assert alert.affected == ["dash.revenue"] and alert.owners == ["data-eng"]
    assert alert.labels == {"team": "sales"}
    assert alert.url == f"https://coplane.example.com/incidents/{incident['id']}"
    assert [n["status"] for n in h.notifications()] == ["sent"]


def test_the_resolve_follows_in_the_trigger_thread(harness_of: Callable[..., Harness]) -> None:
    h = harness_of(ops=channel())
    sla = h.sla()
    h.breach(sla)
    h.run()
    h.fix(sla)
    h.run()
    _, resolve = h.recorders["ops"].sent
    assert resolve.action == "resolve" and resolve.thread == {"ts": "t1"}
    assert resolve.resolved is not None


def test_transient_failures_are_retried_after_retry_after_until_sent(
    harness_of: Callable[..., Harness],
) -> None:
    h = harness_of(ops=channel())
    rec = h.recorders["ops"]
    rec.fail = [
        IntegrationError("429 rate limited", retry_after=30),
        IntegrationError("500 internal error"),
    ]
    h.breach(h.sla())
    h.run()
    [n] = h.notifications()
    assert (n["status"], n["attempts"], n["last_error"]) == ("pending", 1, "429 rate limited")
    assert h.run(timedelta(seconds=20)) == 0  # Retry-After is honoured
    assert h.run(timedelta(seconds=31)) == 1  # the 500: retried with backoff
    assert rec.sent == []
    assert h.run(timedelta(seconds=31 + 61)) == 1
    assert len(rec.sent) == 1
    [n] = h.notifications()
    assert (n["status"], n["attempts"], n["last_error"]) == ("sent", 3, None)


def test_a_permanent_error_disables_the_channel_until_its_config_changes(
    harness_of: Callable[..., Harness], store: Store
) -> None:
    h = harness_of(ops=channel(), backup=channel(headers={"x": "1"}))
    h.recorders["ops"].fail = [IntegrationError("invalid_auth", permanent=True)]
    h.breach(h.sla("sales"))
    h.run()
    with store.connect() as conn:
        states = list_channel_states(conn)
    assert states["ops"]["disabled"] is not None and states["ops"]["last_error"] == "invalid_auth"
    h.breach(h.sla("orders"))
    h.run(LATER)
    # the other channel keeps working; the disabled one's alert waits in the outbox
    assert sorted(a.sla for a in h.recorders["backup"].sent) == ["orders", "sales"]
    assert h.recorders["ops"].sent == []
    statuses = sorted((n["channel"], n["status"]) for n in h.notifications())
    assert ("ops", "dead") in statuses and ("ops", "pending") in statuses
    # a new token: the channel is enabled again and the waiting alert goes out
    h.set_channels(ops=channel(secret="new"), backup=channel(headers={"x": "1"}))
    h.run(LATER)
    assert [a.sla for a in h.recorders["ops"].sent] == ["orders"]


def test_a_resolve_before_the_trigger_was_sent_announces_neither(
    harness_of: Callable[..., Harness],
) -> None:
    h = harness_of(ops=channel())
    h.recorders["ops"].fail = [IntegrationError("503")]
    sla = h.sla()
    h.breach(sla)
    h.run()  # the trigger fails and waits for its retry
    h.fix(sla)
    h.run(LATER)
    h.run(LATER * 2)  # a resolve claimed alongside its trigger waits for the trigger's fate
    assert h.recorders["ops"].sent == []
    assert sorted(n["status"] for n in h.notifications()) == ["skipped", "skipped"]


def test_quiet_periods_silence_matching_slas_only(harness_of: Callable[..., Harness]) -> None:
    until = datetime.now(UTC) + timedelta(hours=1)
    h = harness_of(ops=channel(quiet=[{"labels": {"team": "sales"}, "until": until}]))
    quiet_sla = h.sla("sales", labels={"team": "sales"})
    h.breach(quiet_sla)
    h.breach(h.sla("orders", labels={"team": "orders"}))
    h.run()
    assert [a.sla for a in h.recorders["ops"].sent] == ["orders"]
    h.fix(quiet_sla)
    h.run()
    assert [a.sla for a in h.recorders["ops"].sent] == ["orders"]  # no resolve of a silence
    by_sla = {i["sla"]: [n["status"] for n in i["notifications"]] for i in h.incidents()}
    assert by_sla["sales"] == ["silenced", "skipped"]


def test_an_incident_caused_upstream_is_attached_not_announced_until_the_cause_resolves(
    harness_of: Callable[..., Harness],
) -> None:
    h = harness_of(ops=channel())
    h.lineage("raw.orders", "airflow.load_sales", "wh.sales")
    upstream = h.sla("ingest", target="raw.orders")
    downstream = h.sla("sales", target="wh.sales")
    h.breach(upstream, resource="raw.orders", affected=("wh.sales", "dash.revenue"))
    h.breach(downstream, resource="wh.sales")
    h.run()
    assert [a.sla for a in h.recorders["ops"].sent] == ["ingest"]
    by_sla = {i["sla"]: i for i in h.incidents()}
    assert by_sla["sales"]["inhibited_by"] == by_sla["ingest"]["id"]
    assert by_sla["sales"]["notifications"][0]["status"] == "inhibited"
    # the cause is fixed but sales is still late: now it stands alone and is announced
    h.fix(upstream)
    h.run()
    assert sorted((a.sla, a.action) for a in h.recorders["ops"].sent) == [
        ("ingest", "resolve"),
        ("ingest", "trigger"),
        ("sales", "trigger"),
    ]


def test_repeat_every_reminds_until_acknowledged(
    harness_of: Callable[..., Harness], store: Store
) -> None:
    h = harness_of(ops=channel(repeat_every="30m"))
    h.breach(h.sla())
    h.run()
    assert h.run(timedelta(minutes=20)) == 0
    assert h.run(timedelta(minutes=31)) == 1
    assert [a.action for a in h.recorders["ops"].sent] == ["trigger", "repeat"]
    assert h.recorders["ops"].sent[1].thread == {"ts": "t1"}
    with store.connect() as conn:
        ack_incident(conn, h.incidents()[0]["id"], datetime.now(UTC))
    h.run(timedelta(hours=2))
    assert [a.action for a in h.recorders["ops"].sent] == ["trigger", "repeat"]


def test_a_channel_that_does_not_want_an_alert_skips_it(
    harness_of: Callable[..., Harness],
) -> None:
    h = harness_of(tickets=channel())
    h.recorders["tickets"].wanted = lambda alert: alert.severity == "critical"
    h.breach(h.sla("minor", severity="warning"))
    h.breach(h.sla("major", severity="critical"))
    h.run()
    assert [a.sla for a in h.recorders["tickets"].sent] == ["major"]
    assert sorted(n["status"] for n in h.notifications()) == ["sent", "skipped"]


def test_an_alert_to_a_channel_no_longer_configured_is_dead_with_the_reason(
    harness_of: Callable[..., Harness],
) -> None:
    h = harness_of(ops=channel())
    h.breach(h.sla())
    h.set_channels()
    h.run()
    [n] = h.notifications()
    assert n["status"] == "dead" and "no channel named 'ops'" in n["last_error"]


def test_a_manual_resolve_is_announced_in_the_thread(
    harness_of: Callable[..., Harness], store: Store
) -> None:
    h = harness_of(ops=channel())
    h.breach(h.sla())
    h.run()
    with store.connect() as conn:
        resolve_incident(conn, h.incidents()[0]["id"], datetime.now(UTC), ["ops"])
    h.run()
    assert [(a.action, a.thread) for a in h.recorders["ops"].sent] == [
        ("trigger", None),
        ("resolve", {"ts": "t1"}),
    ]


def test_two_dispatchers_send_each_alert_once(harness_of: Callable[..., Harness]) -> None:
    first = harness_of(ops=channel())
    second = harness_of(ops=channel())
    second.recorders = first.recorders  # both deliver to the same channel
    for i in range(20):
        first.breach(first.sla(f"s{i}"))
    threads = [threading.Thread(target=h.run) for h in (first, second, first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = [a.sla for a in first.recorders["ops"].sent]
    assert sorted(sent) == sorted(f"s{i}" for i in range(20))


def test_a_notifier_that_crashes_is_retried_not_lost(harness_of: Callable[..., Harness]) -> None:
    h = harness_of(ops=channel())
    crash = [RuntimeError("bug in a plugin")]

    def send(alert: Alert) -> dict[str, Any] | None:
        if crash:
            raise crash.pop()
        return Recorder.send(h.recorders["ops"], alert)

    h.recorders["ops"].send = send  # type: ignore[method-assign]
    h.breach(h.sla())
    h.run()
    [n] = h.notifications()
    assert (n["status"], n["attempts"], n["last_error"]) == ("pending", 1, "bug in a plugin")
    h.run(LATER)
    assert [n["status"] for n in h.notifications()] == ["sent"]


def test_an_alert_failing_for_a_day_is_given_up(
    harness_of: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("coplane.alerts.dispatcher.GIVE_UP_AFTER", timedelta(0))
    h = harness_of(ops=channel())
    h.recorders["ops"].fail = [IntegrationError("503 again")]
    h.breach(h.sla())
    h.run()
    [n] = h.notifications()
    assert n["status"] == "dead" and n["last_error"].startswith("gave up after")
    with h.store.connect() as conn:
        assert list_channel_states(conn) == {}  # the channel itself stays enabled


def test_a_quiet_calendar_silences_on_its_days_off_only(
    harness_of: Callable[..., Harness],
) -> None:
    today = datetime.now(UTC).date()
    closed = {"calendar": {"days_off": [today.isoformat()]}, "reason": "office closed"}
    is_open = {"calendar": {"weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}}
    h = harness_of(ops=channel(quiet=[closed]), night=channel(quiet=[is_open]))
    sla = h.sla("sales")
    h.breach(sla)
    h.run()
    assert [a.channel for a in h.recorders["night"].sent] == ["night"]
    assert h.recorders["ops"].sent == []
    [ops] = [n for n in h.notifications() if n["channel"] == "ops"]
    assert ops["status"] == "silenced"
    assert ops["last_error"] == "quiet on a day off (closed): office closed"
