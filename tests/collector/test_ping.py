"""Cron pings (`/ping/{slug}`...) become runs of `cron.<slug>` and feed heartbeat SLAs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coplane.collector.ping import MAX_LOG_BYTES
from coplane.rules import evaluate
from coplane.rules.model import HeartbeatSLA
from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import Store, open_store
from coplane.store.sla_facts import read_facts
from coplane.store.slas import read_sla
from tests.conftest import set_database_outage
from tests.factories import event_dict

SLUG = "backup-db"
PIPE = f"cron.{SLUG}"


def runs(client: TestClient, pipeline: str = PIPE) -> list[dict[str, Any]]:
    """The pipeline's runs, oldest first."""
    got: list[dict[str, Any]] = client.get("/api/runs", params={"pipeline": pipeline}).json()[
        "runs"
    ]
    return list(reversed(got))


def ping_payloads(client: TestClient, pipeline: str = PIPE) -> list[dict[str, Any]]:
    """The payloads of the pipeline's events, oldest first."""
    events = client.get("/api/events", params={"resource": pipeline, "limit": 1000}).json()
    return [e["payload"] for e in reversed(events["events"])]


def ping(client: TestClient, path: str, method: str | None = None, **kw: Any) -> Any:
    """A ping; a GET unless it creates its monitor, which takes a POST."""
    method = method or ("POST" if "create=1" in path else "GET")
    return client.request(method, f"/ping/{path}", **kw)


def ok(response: Any) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    if response.request.method != "HEAD":
        assert response.text == "OK"


def test_success_ping_is_a_completed_run(client: TestClient) -> None:
    r = ping(client, f"{SLUG}?create=1", headers={"user-agent": "curl/8.0"})
    ok(r)
    [run] = runs(client)
    assert run["state"] == "completed" and run["source"] == "cron"
    uuid.UUID(run["run_key"])  # an end-only run gets a fresh key
    [payload] = ping_payloads(client)
    assert payload["ping"] == "success" and payload["exit_code"] is None
    assert payload["rid"] is None and payload["log"] == ""
    assert payload["user_agent"] == "curl/8.0" and payload["remote_addr"]
    pipeline = client.get(f"/api/pipelines/{PIPE}").json()
    assert pipeline["kind"] == "pipeline" and pipeline["labels"] == {"source": "cron"}


def test_start_then_end_without_rid_pair_up(client: TestClient) -> None:
    ok(ping(client, f"{SLUG}/start?create=1"))
    [run] = runs(client)
    assert run["state"] == "running" and run["ended"] is None
    ok(ping(client, SLUG))
    [run] = runs(client)
    assert run["state"] == "completed" and run["started"] and run["ended"]
    # the next end has no open start: a run of its own
    ok(ping(client, f"{SLUG}/fail"))
    assert [r["state"] for r in runs(client)] == ["completed", "failed"]
    # a new start and a failing exit code
    ok(ping(client, f"{SLUG}/start"))
    ok(ping(client, f"{SLUG}/3", method="POST", content=b"disk full\n"))
    listed = runs(client)
    assert [r["state"] for r in listed] == ["completed", "failed", "failed"]
    assert listed[2]["started"] is not None and listed[2]["error"] == "exit code 3\ndisk full"
    assert listed[1]["error"] == "failed"
    assert ping_payloads(client)[-1]["exit_code"] == 3


def test_superseded_start_without_rid_is_not_finished_later(client: TestClient) -> None:
    ok(ping(client, f"{SLUG}/start?create=1"))
    ok(ping(client, f"{SLUG}/start"))
    ok(ping(client, f"{SLUG}/0"))
    first, second = runs(client)
    assert (first["state"], second["state"]) == ("running", "completed")
    # the latest start without rid has ended: the next end is a run of its own
    ok(ping(client, SLUG))
    assert [r["state"] for r in runs(client)] == ["running", "completed", "completed"]


def test_rid_pairs_start_and_end(client: TestClient) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    ok(ping(client, f"{SLUG}/start?create=1&rid={a}"))
    ok(ping(client, f"{SLUG}/start?rid={b}"))
    ok(ping(client, f"{SLUG}/fail?rid={a.upper()}"))  # any spelling of the UUID
    ok(ping(client, f"{SLUG}/0?rid={b}"))
    by_key = {r["run_key"]: r for r in runs(client)}
    assert set(by_key) == {a, b}
    assert by_key[a]["state"] == "failed" and by_key[b]["state"] == "completed"
    assert [p["rid"] for p in ping_payloads(client)] == [a, b, a, b]
    # an end without rid finishes the newest start, whatever its rid (as Healthchecks does)
    c = str(uuid.uuid4())
    ok(ping(client, f"{SLUG}/start?rid={c}"))
    ok(ping(client, SLUG))
    states = {r["run_key"]: r["state"] for r in runs(client)}
    assert states[c] == "completed" and len(states) == 3


def test_a_fail_with_another_rid_ends_the_open_start(client: TestClient) -> None:
    started, other = str(uuid.uuid4()), str(uuid.uuid4())
    ok(ping(client, f"{SLUG}/start?create=1&rid={started}"))
    ok(ping(client, f"{SLUG}/fail?rid={other}"))  # a wrapper that lost the start's rid
    [run] = runs(client)
    assert run["run_key"] == started and run["state"] == "failed"
    assert [p["rid"] for p in ping_payloads(client)] == [started, other]


def test_a_success_without_rid_ends_the_start_so_no_incident_follows(
    client: TestClient, store: Store
) -> None:
    r = client.post("/api/slas", json={"name": "backup", "kind": "heartbeat", "target": SLUG,
                                       "period": "1h", "max_runtime": "10m"})  # fmt: skip
    assert r.status_code == 201, r.text
    ok(ping(client, f"{SLUG}/start?rid={uuid.uuid4()}"))
    ok(ping(client, SLUG))
    [run] = runs(client)
    assert run["state"] == "completed"
    with store.connect() as conn:
        stored = read_sla(conn, "backup")
        later = datetime.now(UTC) + timedelta(minutes=30)  # past max_runtime, within period
        facts = read_facts(conn, stored.sla, later, stored.created)
    assert evaluate(stored.sla, facts, later).status == "ok"


def test_ping_answers_allow_browsers_and_are_not_cached(client: TestClient) -> None:
    for response in (ping(client, f"{SLUG}?create=1"), ping(client, "no-such-slug")):
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["cache-control"] == "no-cache"


def test_body_is_kept_as_the_log_and_truncated_to_its_tail(client: TestClient) -> None:
    ok(ping(client, f"{SLUG}?create=1", method="POST", content="ok ✓\n".encode()))
    tail = b"y" * (MAX_LOG_BYTES - 1) + b"z"
    ok(ping(client, SLUG, method="POST", content=b"x" * 150_000 + tail))
    ok(ping(client, f"{SLUG}/fail", method="POST", content=b"bad \xff\x00 bytes"))
    short, long, bad = ping_payloads(client)
    assert short["log"] == "ok ✓\n"
    assert long["log"] == tail.decode()
    assert bad["log"] == "bad \ufffd\ufffd bytes"
    [*_, failed] = runs(client)
    assert failed["error"] == "failed\nbad \ufffd\ufffd bytes"


def test_get_post_and_head_all_ping(client: TestClient) -> None:
    ok(ping(client, f"{SLUG}?create=1", method="POST"))
    for method in ("GET", "POST", "HEAD"):
        ok(ping(client, f"{SLUG}?create=1", method=method))  # known now: nothing to create
        ok(ping(client, f"{SLUG}/start", method=method))
        ok(ping(client, f"{SLUG}/fail", method=method))
        ok(ping(client, f"{SLUG}/0", method=method))
    pings = [p["ping"] for p in ping_payloads(client)]
    assert pings == ["success"] + ["success", "start", "fail", "success"] * 3


def test_unknown_monitor_is_404_unless_created(client: TestClient) -> None:
    for path in ("nobody", "nobody/start", "nobody/fail", "nobody/0", "nobody/1"):
        r = ping(client, path)
        assert r.status_code == 404 and r.text == "not found"
    assert runs(client, "cron.nobody") == []
    assert client.get("/api/pipelines/cron.nobody").status_code == 404
    # a GET, as a page elsewhere can make any browser send (<img src>), creates nothing
    for method in ("GET", "HEAD"):
        got = ping(client, "nobody?create=1", method=method)
        assert got.status_code == 404
    assert "creates a monitor only with POST" in ping(client, "nobody?create=1", "GET").text
    assert client.get("/api/pipelines/cron.nobody").status_code == 404
    ok(ping(client, "nobody?create=1"))
    ok(ping(client, "nobody/start"))  # known now: its pipeline exists
    assert len(runs(client, "cron.nobody")) == 2


def test_a_heartbeat_sla_makes_its_slug_known(client: TestClient) -> None:
    sla = {"name": "backup", "kind": "heartbeat", "target": SLUG, "period": "1h"}
    assert client.post("/api/slas", json=sla).status_code == 201
    ok(ping(client, SLUG))
    assert ping(client, "other-slug").status_code == 404


@pytest.mark.parametrize("code", ["256", "-1", "1000"])
def test_exit_code_outside_0_to_255_is_400(client: TestClient, code: str) -> None:
    r = ping(client, f"{SLUG}/{code}?create=1")
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["loc"] == ["path", "exit_code"]
    assert "exit_code" in r.json()["detail"]
    assert runs(client) == []


def test_exit_code_that_is_not_a_number_is_404(client: TestClient) -> None:
    assert ping(client, f"{SLUG}/log?create=1").status_code == 404


def test_malformed_rid_is_400(client: TestClient) -> None:
    r = ping(client, f"{SLUG}/start?create=1&rid=not-a-uuid")
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["loc"] == ["query", "rid"]
    assert "rid" in r.json()["detail"]
    assert runs(client) == []


@pytest.mark.parametrize("slug", ["-lead", ".hidden", "sp%20ace", "a" * 201, "%C3%A9t%C3%A9"])
def test_bad_slug_is_404(client: TestClient, slug: str) -> None:
    for suffix in ("", "/start", "/fail", "/0"):
        r = ping(client, f"{slug}{suffix}?create=1")
        assert r.status_code == 404 and r.text == "not found"
    assert client.get("/api/events").json()["events"] == []


def test_heartbeat_fail_breaches_and_success_resolves(client: TestClient, store: Store) -> None:
    definition = {"name": "backup", "kind": "heartbeat", "target": SLUG}
    r = client.post("/api/slas", json={**definition, "period": "1h", "grace": "5m"})
    assert r.status_code == 201, r.text

    def status() -> tuple[str, list[str]]:
        now = datetime.now(UTC)
        with store.connect() as conn:
            stored = read_sla(conn, "backup")
            assert isinstance(stored.sla, HeartbeatSLA)
            facts = read_facts(conn, stored.sla, now, stored.created)
        result = evaluate(stored.sla, facts, now)
        return result.status, [b.key.split(":")[1] for b in result.breaches]

    assert status() == ("unknown", [])
    rid = str(uuid.uuid4())
    ok(ping(client, f"{SLUG}/start?rid={rid}"))
    assert status() == ("ok", [])  # running, within its grace
    ok(ping(client, f"{SLUG}/fail?rid={rid}"))
    assert status() == ("breached", ["fail"])
    ok(ping(client, f"{SLUG}/start"))
    ok(ping(client, SLUG))
    assert status() == ("ok", [])
    ok(ping(client, f"{SLUG}/1"))
    assert status() == ("breached", ["fail"])
    ok(ping(client, f"{SLUG}/0"))
    assert status() == ("ok", [])

    with store.connect() as conn:
        stored = read_sla(conn, "backup")
        assert isinstance(stored.sla, HeartbeatSLA)
        pings = read_facts(conn, stored.sla, datetime.now(UTC), stored.created).pings
    assert [(p.kind, p.rid) for p in pings] == [
        ("start", rid),
        ("fail", rid),
        ("start", None),
        ("success", None),
        ("fail", None),
        ("success", None),
    ]


def test_heartbeat_keeps_a_success_older_than_the_lookback(
    client: TestClient, store: Store
) -> None:
    # a monthly job: its last success is 20 days old, past the 7-day lookback of events
    sla = HeartbeatSLA(name="monthly", kind="heartbeat", target=SLUG, period="30d")
    now = datetime.now(UTC)
    done = now - timedelta(days=20)
    failed = now - timedelta(days=25)
    for name, when, key in (("run.failed", failed, "r0"), ("run.completed", done, "r1")):
        event = event_dict(name, PIPE, run=key)
        event["occurred"] = when.isoformat()
        assert client.post("/api/events", json=event).status_code == 202
    with store.connect() as conn:
        facts = read_facts(conn, sla, now, now - timedelta(days=40))
    assert [(p.kind, p.at) for p in facts.pings] == [("fail", failed), ("success", done)]
    result = evaluate(sla, facts, now)
    assert result.status == "ok" and result.last_met == done


@pytest.mark.postgresql
def test_ping_while_the_database_is_down_is_503(own_database: str) -> None:
    store = open_store(own_database, pool_size=2, timeout=1.0)
    app = create_app(Settings(database_url=own_database), store=store)
    try:
        with TestClient(app) as client:
            ok(ping(client, f"{SLUG}?create=1"))
            set_database_outage(own_database, down=True)
            try:
                r = ping(client, SLUG)
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"]
                assert "database" in r.json()["detail"]
            finally:
                set_database_outage(own_database, down=False)
    finally:
        store.close()


def test_concurrent_runs_are_paired_by_rid(client: TestClient) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    r = client.post("/api/slas", json={"name": "backup", "kind": "heartbeat", "target": SLUG,
                                       "period": "1h"})  # fmt: skip
    assert r.status_code == 201, r.text
    ok(ping(client, f"{SLUG}/start?rid={first}"))
    ok(ping(client, f"{SLUG}/start?rid={second}"))  # a second run before the first ends
    ok(ping(client, f"{SLUG}/2?rid={second}"))
    ok(ping(client, f"{SLUG}?rid={first}"))
    by_key = {r["run_key"]: r for r in runs(client)}
    assert set(by_key) == {first, second}
    assert by_key[first]["state"] == "completed"
    assert by_key[second]["state"] == "failed" and "exit code 2" in by_key[second]["error"]
    assert by_key[first]["started"] < by_key[second]["started"] < by_key[second]["ended"]
    assert by_key[second]["ended"] < by_key[first]["ended"]


def test_a_late_finish_breaches_max_runtime_then_resolves(client: TestClient, store: Store) -> None:
    import time

    definition = {"name": "backup", "kind": "heartbeat", "target": SLUG, "period": "1h",
                  "max_runtime": "1s"}  # fmt: skip
    assert client.post("/api/slas", json=definition).status_code == 201

    def status() -> str:
        now = datetime.now(UTC)
        with store.connect() as conn:
            stored = read_sla(conn, "backup")
            facts = read_facts(conn, stored.sla, now, stored.created)
        return evaluate(stored.sla, facts, now).status

    rid = str(uuid.uuid4())
    ok(ping(client, f"{SLUG}/start?rid={rid}"))
    assert status() == "ok"
    time.sleep(1.2)  # the job runs past max_runtime
    assert status() == "breached"
    ok(ping(client, f"{SLUG}?rid={rid}"))  # it does finish, late
    assert status() == "ok"
    [run] = runs(client)
    assert run["state"] == "completed" and run["duration_s"] > 1
