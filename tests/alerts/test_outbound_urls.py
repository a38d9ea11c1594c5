"""Alerts never go to this host, link-local or metadata addresses unless COPLANE_OUTBOUND_ALLOW
says so: refused at config load, before every request, and at connection time."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from coplane.alerts.channels import ChannelConfig
from coplane.alerts.dispatcher import Dispatcher
from coplane.alerts.notifier import Alert, IntegrationError
from coplane.alerts.registry import build_notifier, config_hash
from coplane.alerts.urls import check_url
from coplane.cli import app
from coplane.integrations.github.config import GitHubChannel
from coplane.integrations.jira.config import JiraChannel
from coplane.integrations.pagerduty.config import PagerDutyChannel
from coplane.integrations.slack.config import SlackChannel
from coplane.integrations.webhook.config import WebhookChannel
from coplane.rules.facts import Breach, Evaluation
from coplane.rules.model import FreshnessSLA
from coplane.settings import Settings
from coplane.slas.config import ConfigError, parse_config
from coplane.store import Store
from coplane.store.channels import list_channel_states
from coplane.store.incidents import apply_evaluation, list_incidents
from coplane.store.slas import upsert_slas
from tests.fake_http import FakeService, Reply

ALLOW = "COPLANE_OUTBOUND_ALLOW"
HINT = "allow it with COPLANE_OUTBOUND_ALLOW"
LOOPBACK_NAME = f"refused: hooks.example resolves to 127.0.0.1 (loopback); {HINT}"


class FakeDNS:
    """Answers for made-up names; each lookup takes the next answer, the last one stays."""

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def set(self, name: str, *answers: list[str]) -> None:
        self.answers[name] = list(answers)

    def getaddrinfo(self, real: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        flags = kwargs.get("flags", args[3] if len(args) > 3 else 0)
        if name not in self.answers or flags & socket.AI_NUMERICHOST:
            return real(host, port, *args, **kwargs)
        self.lookups.append(name)
        queue = self.answers[name]
        if not queue:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]


@pytest.fixture(autouse=True)
def no_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy as shipped: the test session's loopback allowance removed."""
    monkeypatch.delenv(ALLOW, raising=False)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    fake = FakeDNS()
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: fake.getaddrinfo(real, *a, **k))
    return fake


@pytest.fixture
def receiver() -> Iterator[FakeService]:
    """Any channel's service, on loopback: a request reaching it is a request let through."""
    with FakeService(lambda request: Reply(200, {"ok": True, "channel": "C1", "ts": "1"})) as fake:
        yield fake


def refusal(url: str) -> IntegrationError:
    with pytest.raises(IntegrationError) as caught:
        check_url(url)
    assert caught.value.permanent
    return caught.value


def make_alert() -> Alert:
    now = datetime.now(UTC)
    fields: dict[str, Any] = dict(
        action="test", channel="ops", incident_id="00000000-0000-0000-0000-000000000000",
        sla="coplane-test", kind="test", severity="info", reason="Test alert", resource=None,
        affected=[], due=now, opened=now, url="https://coplane.example.com/incidents",
    )  # fmt: skip
    return Alert(**fields)


# -- the policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:8080/hook", "127.0.0.1 is a loopback address"),
        ("http://127.9.9.9/", "127.9.9.9 is a loopback address"),
        ("http://[::1]:4200/", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 is a loopback address"),
        ("http://2130706433/", "2130706433 resolves to 127.0.0.1 (loopback)"),
        ("http://127.1/", "127.1 resolves to 127.0.0.1 (loopback)"),
        ("http://0.0.0.0:4200/", "0.0.0.0 is an unspecified address"),
        ("http://[::]/", ":: is an unspecified address"),
        ("http://169.254.10.20/", "169.254.10.20 is a link-local address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("http://[fe80::1%25eth0]/", "fe80::1%eth0 is a link-local address"),
        ("http://169.254.169.254/latest/", "169.254.169.254 is a cloud metadata address"),
        ("http://[::ffff:a9fe:a9fe]/", "::ffff:a9fe:a9fe is a cloud metadata address"),
        ("http://[fd00:ec2::254]/latest/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://100.100.100.200/latest/", "100.100.100.200 is a cloud metadata address"),
        ("http://localhost:4200/", "localhost names this host (loopback)"),
        ("https://alerts.LOCALHOST./", "alerts.localhost names this host (loopback)"),
    ],
)
def test_refused_addresses_name_the_address_and_the_way_out(url: str, message: str) -> None:
    assert refusal(url).message == f"refused: {message}; {HINT}"


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("file:///etc/passwd", "file: URLs"),
        ("ftp://files.example.com/alerts", "ftp: URLs"),
        ("gopher://127.0.0.1:6379/_INFO", "gopher: URLs"),
        ("hooks.example.com/alert", "URLs without a scheme"),
    ],
)
def test_only_http_and_https_are_sent_to(url: str, scheme: str) -> None:
    assert refusal(url).message == f"refused: {scheme} are not sent to; use http:// or https://"


def test_a_name_is_refused_when_any_of_its_addresses_is(dns: FakeDNS) -> None:
    dns.set("hooks.example", ["93.184.215.14", "127.0.0.1"])
    assert refusal("https://hooks.example/T0/B0").message == LOOPBACK_NAME
    dns.set("meta.example", ["2001:db8::1", "::ffff:169.254.169.254"])
    assert "meta.example resolves to ::ffff:a9fe:a9fe (cloud metadata)" in (
        refusal("http://meta.example/").message
    )


def test_localhost_is_refused_by_name() -> None:
    # RFC 6761: localhost names are loopback, whatever a resolver would answer
    for url in ("http://localhost/", "http://LocalHost.:4200/"):
        assert refusal(url).message == f"refused: localhost names this host (loopback); {HINT}"


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5/hook",
        "http://172.16.3.4:8080/",
        "http://192.168.1.10/",
        "http://[fd12:3456::1]/",
        "https://alerts.internal.example/hook",  # resolves to 10.1.2.3 below
        "https://gone.example/hook",  # does not resolve: unreachable when sent, not refused
    ],
)
def test_private_networks_are_allowed(dns: FakeDNS, url: str) -> None:
    dns.set("alerts.internal.example", ["10.1.2.3", "fd12::3"])
    dns.set("gone.example")
    check_url(url)


def test_the_allow_list_takes_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW, "127.0.0.1/32, 169.254.0.0/16")
    check_url("http://127.0.0.1:9000/")
    check_url("http://[::ffff:127.0.0.1]:9000/")  # the same address, mapped
    check_url("http://169.254.169.254/")
    assert refusal("http://127.0.0.2/").message.startswith("refused: 127.0.0.2 is a loopback")
    assert refusal("http://[::1]/").message.startswith("refused: ::1 is a loopback")


def test_the_allow_list_takes_host_names(dns: FakeDNS, monkeypatch: pytest.MonkeyPatch) -> None:
    dns.set("alerts.internal", ["127.0.0.1"])
    dns.set("hooks.example", ["127.0.0.1"])
    monkeypatch.setenv(ALLOW, "Alerts.Internal,localhost")
    check_url("http://alerts.internal:8080/hook")
    check_url("http://localhost:8080/hook")
    assert refusal("http://hooks.example/").message == LOOPBACK_NAME
    assert "sub.localhost names this host" in refusal("http://sub.localhost/").message


@pytest.mark.parametrize("value", ["10.0.0.0/33", "127.0.0.1/8/9", "hooks:80", "a b"])
def test_a_malformed_allow_list_stops_the_settings(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(ALLOW, f"127.0.0.1,{value}")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "outbound_allow" in str(caught.value) and repr(value) in str(caught.value)


def test_settings_read_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW, "127.0.0.1/32,alerts.internal")
    assert Settings().outbound_allow == "127.0.0.1/32,alerts.internal"


# -- config load ----------------------------------------------------------------------------

CHANNELS = {  # each channel's other settings, and its URL's field
    "slack webhook_url": ("type: slack", "webhook_url"),
    "slack base_url": ("type: slack\n    token: xoxb-1\n    channel: '#a'", "base_url"),
    "pagerduty base_url": ("type: pagerduty\n    routing_key: R1", "base_url"),
    "jira url": ("type: jira\n    email: a@b.c\n    api_token: t\n    project: DATA", "url"),
    "github base_url": ("type: github\n    repository: acme/data\n    token: t", "base_url"),
    "webhook url": ("type: webhook", "url"),
}


@pytest.mark.parametrize("which", list(CHANNELS))
def test_a_refused_channel_url_is_a_config_problem_at_its_line(which: str) -> None:
    head, field = CHANNELS[which]
    text = f"channels:\n  ops:\n    {head}\n    {field}: http://169.254.169.254/hook\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "coplane.yaml")
    [problem] = caught.value.problems
    assert problem.line == text.count("\n")  # the URL's own line, the last one
    assert str(problem) == (
        f"coplane.yaml:{problem.line}: channels.ops.{field}: "
        f"refused: 169.254.169.254 is a cloud metadata address; {HINT}"
    )


def test_config_load_names_each_refused_url_and_needs_no_dns(dns: FakeDNS) -> None:
    dns.set("hooks.example", ["127.0.0.1"])
    text = """\
channels:
  a: {type: webhook, url: "http://[::1]:9000/hook"}
  b: {type: webhook, url: "http://localhost/hook"}
  c: {type: webhook, url: "ftp://files.example.com/"}
  d: {type: webhook, url: "http://10.0.0.7/hook"}
  e: {type: webhook, url: "http://hooks.example/hook"}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "coplane.yaml")
    assert [(p.line, p.loc) for p in caught.value.problems] == [
        (2, ("channels", "a", "url")),
        (3, ("channels", "b", "url")),
        (4, ("channels", "c", "url")),
    ]
    assert dns.lookups == []  # a name is checked when alerts are sent, not at load


def test_allowed_urls_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW, "::1,localhost")
    text = """\
channels:
  a: {type: webhook, url: "http://[::1]:9000/hook"}
  b: {type: slack, webhook_url: "http://localhost:9000/services/T/B/x"}
"""
    config = parse_config(text, "coplane.yaml")
    assert sorted(config.channels) == ["a", "b"]


def test_slas_check_prints_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "coplane.yaml"
    path.write_text("channels:\n  ops:\n    type: webhook\n    url: http://127.0.0.1:4200/api\n")
    result = CliRunner().invoke(app, ["slas", "check", str(path)])
    assert result.exit_code == 2
    assert (
        f"{path}:4: channels.ops.url: refused: 127.0.0.1 is a loopback address; {HINT}"
        in " ".join(result.output.split())
    )


# -- send time ------------------------------------------------------------------------------


def channels(url: str) -> dict[str, ChannelConfig]:
    """One channel of each type whose URL is `url` (a base URL or the whole one)."""
    return {
        "slack": SlackChannel(type="slack", token="xoxb-1", channel="#a", base_url=url + "/api/"),
        "slack-webhook": SlackChannel(type="slack", webhook_url=url + "/services/T/B/x"),
        "pagerduty": PagerDutyChannel(type="pagerduty", routing_key="R1", base_url=url),
        "jira": JiraChannel(type="jira", url=url, email="a@b.c", api_token="t", project="D"),
        "github": GitHubChannel(type="github", repository="acme/data", token="t", base_url=url),
        "webhook": WebhookChannel(type="webhook", url=url + "/hook"),
    }


CHANNEL_TYPES = list(channels("http://x"))


@pytest.mark.parametrize("name", CHANNEL_TYPES)
def test_every_channel_type_refuses_before_sending(
    dns: FakeDNS, receiver: FakeService, name: str
) -> None:
    dns.set("hooks.example", ["127.0.0.1"])
    port = receiver.url.rsplit(":", 1)[1]
    notifier = build_notifier(channels(f"http://hooks.example:{port}")[name])
    try:
        with pytest.raises(IntegrationError) as caught:
            notifier.send(make_alert())
    finally:
        close = getattr(notifier, "close", None)
        if close is not None:
            close()
    assert caught.value.permanent and caught.value.message == LOOPBACK_NAME
    assert receiver.requests == []  # nothing reached this host


@pytest.mark.parametrize("name", CHANNEL_TYPES)
def test_every_channel_type_sends_where_allowed(
    dns: FakeDNS, receiver: FakeService, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    dns.set("hooks.example", ["127.0.0.1"])
    monkeypatch.setenv(ALLOW, "hooks.example")
    port = receiver.url.rsplit(":", 1)[1]
    notifier = build_notifier(channels(f"http://hooks.example:{port}")[name])
    try:
        # the fake's one answer does not suit every API; reaching it is what counts here
        with contextlib.suppress(IntegrationError):
            notifier.send(make_alert())
    finally:
        close = getattr(notifier, "close", None)
        if close is not None:
            close()
    assert receiver.requests, "the allowed channel reached its service"
    assert receiver.requests[0].headers["host"] == f"hooks.example:{port}"


def test_http_channels_connect_only_to_the_address_they_checked(
    dns: FakeDNS, receiver: FakeService
) -> None:
    # DNS rebinding: a public answer to the check before the request, loopback a moment later
    dns.set("rebind.example", ["93.184.215.14"], ["127.0.0.1"])
    port = receiver.url.rsplit(":", 1)[1]
    notifier = build_notifier(WebhookChannel(type="webhook", url=f"http://rebind.example:{port}/"))
    try:
        with pytest.raises(IntegrationError) as caught:
            notifier.send(make_alert())
    finally:
        notifier.close()  # type: ignore[attr-defined]
    assert caught.value.permanent
    assert caught.value.message.startswith("refused: rebind.example resolves to 127.0.0.1")
    assert dns.lookups == ["rebind.example", "rebind.example"]
    assert receiver.requests == []


def test_a_name_that_does_not_resolve_is_transient(dns: FakeDNS) -> None:
    dns.set("gone.example")
    notifier = build_notifier(WebhookChannel(type="webhook", url="http://gone.example/hook"))
    try:
        with pytest.raises(IntegrationError) as caught:
            notifier.send(make_alert())
    finally:
        notifier.close()  # type: ignore[attr-defined]
    assert not caught.value.permanent and "could not be reached" in caught.value.message


def test_a_refusal_when_sending_disables_the_channel(
    store: Store, dns: FakeDNS, receiver: FakeService
) -> None:
    dns.set("hooks.example", ["127.0.0.1"])
    port = receiver.url.rsplit(":", 1)[1]
    ops = WebhookChannel(type="webhook", url=f"http://hooks.example:{port}/hook")
    sla = FreshnessSLA.model_validate(
        {"kind": "freshness", "name": "sales", "target": "wh.sales", "max_age": "1h",
         "notify": ["ops"]}
    )  # fmt: skip
    now = datetime.now(UTC)
    with store.connect() as conn:
        upsert_slas(conn, [sla], "api", now)
        breach = Breach("w1", now, "sales: no update for 2 h", resource="wh.sales")
        apply_evaluation(conn, sla, Evaluation("breached", [breach]), lambda _: [], now)
    dispatcher = Dispatcher(store, {"ops": ops}, "https://coplane.example.com/")
    try:
        assert dispatcher.run_once() == 1
    finally:
        dispatcher.stop()
    with store.connect() as conn:
        state = list_channel_states(conn)["ops"]
        [incident] = list_incidents(conn, None, 10)
    assert state["disabled"] is not None and state["last_error"] == LOOPBACK_NAME
    [notification] = incident["notifications"]
    assert notification["status"] == "dead" and notification["last_error"] == LOOPBACK_NAME
    assert receiver.requests == []


def test_alerts_test_shows_the_refusal(tmp_path: Path, dns: FakeDNS, receiver: FakeService) -> None:
    dns.set("hooks.example", ["127.0.0.1"])
    port = receiver.url.rsplit(":", 1)[1]
    path = tmp_path / "coplane.yaml"
    path.write_text(
        f"channels:\n  ops:\n    type: webhook\n    url: http://hooks.example:{port}/\n"
    )
    result = CliRunner().invoke(app, ["alerts", "test", "ops", "--config", str(path)])
    assert result.exit_code == 1
    assert f"error: ops: {LOOPBACK_NAME} (permanent)" in " ".join(result.output.split())
    assert receiver.requests == []


def test_changing_the_allow_list_changes_the_fingerprint_that_re_enables_a_channel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = WebhookChannel(type="webhook", url="https://hooks.example.com/coplane")
    monkeypatch.delenv("COPLANE_OUTBOUND_ALLOW", raising=False)
    before = config_hash(config)
    monkeypatch.setenv("COPLANE_OUTBOUND_ALLOW", "127.0.0.1/32")
    assert config_hash(config) != before
