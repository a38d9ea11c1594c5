"""`coplane.client.CoplaneClient` against a real server and a closed port: batches, spool, pings."""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from coplane.client import ClientError, CoplaneClient
from tests.conftest import LiveServer, free_port, sqlite_server
from tests.fake_http import Reply, Request, fake_service

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real `coplane server` on SQLite for the module; each test uses its own resources."""
    with sqlite_server(tmp_path_factory.mktemp("client-server")) as live:
        yield live


def closed_url() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


def events(n: int, resource: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    return [
        {"occurred": now, "event": "test.tick", "resource": {"id": resource}, "payload": {"i": i}}
        for i in range(n)
    ]


def stored(server: LiveServer, resource: str) -> list[dict[str, Any]]:
    """Every stored event of `resource`."""
    got: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"resource": resource, "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(f"{server.url}/api/events", params=params, timeout=30).json()
        got += page["events"]
        cursor = page["next"]
        if not cursor:
            return got


def spooled(spool: Path) -> list[Path]:
    return sorted(spool.glob("*.jsonl")) if spool.exists() else []


def resource_id() -> str:
    return f"client.test_{uuid.uuid4().hex[:8]}"


def test_events_go_in_batches_of_at_most_1000(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    posted: list[list[dict[str, Any]]] = []
    send = httpx.Client.send

    def recording_send(self: httpx.Client, request: httpx.Request, **kw: Any) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/api/events":
            body = request.content
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            posted.append(json.loads(body))
        return send(self, request, **kw)

    monkeypatch.setattr(httpx.Client, "send", recording_send)
    resource = resource_id()
    with CoplaneClient(server.url, spool_dir=tmp_path / "spool") as client:
        result = client.send_events(events(2500, resource))
    assert [len(batch) for batch in posted] == [1000, 1000, 500]
    assert (result.accepted, result.duplicates, result.spooled) == (2500, 0, 0)
    assert result.delivered
    ids = {e["id"] for batch in posted for e in batch}
    assert len(ids) == 2500  # every event was given an id
    monkeypatch.undo()
    got = stored(server, resource)
    assert len(got) == 2500 and {e["id"] for e in got} == ids


def test_unreachable_server_spools_and_a_later_call_sends_the_spool_once(
    server: LiveServer, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    resource = resource_id()
    with CoplaneClient(closed_url(), spool_dir=spool, backoff=0.01) as down:
        result = down.send_events(events(30, resource))
    assert (result.accepted, result.spooled, result.lost) == (0, 30, 0)
    assert not result.delivered
    [batch] = spooled(spool)
    lines = batch.read_bytes().splitlines()
    assert len(lines) == 30 and all(json.loads(line)["id"] for line in lines)
    kept = tmp_path / "copy.jsonl"
    shutil.copy(batch, kept)

    with CoplaneClient(server.url, spool_dir=spool) as up:
        more = up.send_events(events(5, resource))  # flushes the spool first
        assert (more.replayed, more.accepted, more.spooled) == (30, 5, 0)
        assert spooled(spool) == []
        assert len(stored(server, resource)) == 35
        # the same batch replayed again is stored once: its events keep their ids
        shutil.copy(kept, batch)
        assert up.flush_spool() == 30
    assert spooled(spool) == []
    assert len(stored(server, resource)) == 35


def test_spool_bound_drops_the_oldest_batches(
    server: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    resources = [resource_id() for _ in range(5)]
    with CoplaneClient(closed_url(), spool_dir=spool, retries=0) as down:
        down.send_events(events(10, resources[0]))
        [first] = spooled(spool)
        down.spool_max_bytes = first.stat().st_size * 5 // 2  # room for two batches
        with caplog.at_level(logging.WARNING, logger="coplane.client"):
            for resource in resources[1:]:
                assert down.send_events(events(10, resource)).spooled == 10
    assert len(spooled(spool)) == 2
    dropped = [r for r in caplog.records if "dropped the oldest batch" in r.getMessage()]
    assert len(dropped) == 3 and all(r.levelno == logging.WARNING for r in dropped)
    with CoplaneClient(server.url, spool_dir=spool) as up:
        assert up.flush_spool() == 20
    assert [len(stored(server, r)) for r in resources] == [0, 0, 0, 10, 10]


def test_a_refused_batch_raises_naming_the_field_and_is_not_spooled(
    server: LiveServer, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    resource = resource_id()
    batch = events(2000, resource)
    batch[1500]["occurred"] = "2026-11-24T02:00:00"  # no offset: refused
    with (
        CoplaneClient(server.url, spool_dir=spool) as client,
        pytest.raises(ClientError) as caught,
    ):
        client.send_events(batch)
    assert caught.value.status == 422
    assert "1500.occurred" in str(caught.value)  # indexed in the caller's list
    assert caught.value.errors[0]["loc"] == ["body", 1500, "occurred"]
    assert spooled(spool) == []
    assert len(stored(server, resource)) == 1000  # the batch before it was stored


def test_times_and_ids_in_events_are_sent_as_text_and_other_objects_refused(
    server: LiveServer, tmp_path: Path
) -> None:
    resource = resource_id()
    at = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    run = uuid.uuid4()
    event = {"occurred": at, "event": "test.tick", "resource": {"id": resource},
             "payload": {"run": run, "at": at, "day": at.date()}}  # fmt: skip
    with CoplaneClient(server.url, spool_dir=tmp_path / "spool") as client:
        client.send_events([event])
        with pytest.raises(TypeError, match="an event cannot be sent as JSON"):
            client.send_events([{**event, "payload": {"lock": threading.Lock()}}])
    [got] = stored(server, resource)
    assert got["payload"] == {"run": str(run), "at": "2026-11-24T02:00:00Z", "day": "2026-11-24"}
    assert datetime.fromisoformat(got["occurred"]) == at


def test_a_spooled_batch_the_server_refuses_is_set_aside(
    server: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    bad, good = resource_id(), resource_id()
    with CoplaneClient(closed_url(), spool_dir=spool, retries=0) as down:
        refused = events(3, bad)
        refused[1]["occurred"] = "yesterday"
        down.send_events(refused)
        down.send_events(events(3, good))
    with (
        caplog.at_level(logging.ERROR, logger="coplane.client"),
        CoplaneClient(server.url, spool_dir=spool) as up,
    ):
        assert up.flush_spool() == 3
    assert spooled(spool) == []
    assert len(list(spool.glob("*.rejected"))) == 1
    assert any("1.occurred" in r.getMessage() for r in caplog.records)
    assert (len(stored(server, bad)), len(stored(server, good))) == (0, 3)


def test_two_clients_flushing_one_spool_send_each_batch_once(
    server: LiveServer, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    resource = resource_id()
    with CoplaneClient(closed_url(), spool_dir=spool, retries=0) as down:
        for _ in range(40):
            down.send_events(events(5, resource))
    assert len(spooled(spool)) == 40

    start = threading.Barrier(2)
    delivered: list[int] = []

    def flush() -> None:
        with CoplaneClient(server.url, spool_dir=spool) as client:
            start.wait()
            delivered.append(client.flush_spool())

    threads = [threading.Thread(target=flush) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # a batch sent by both would be counted twice (the second time as duplicates)
    assert sum(delivered) == 200
    assert os.listdir(spool) == []
    assert len(stored(server, resource)) == 200


def test_a_stale_claim_is_sent_again(server: LiveServer, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    resource = resource_id()
    with CoplaneClient(closed_url(), spool_dir=spool, retries=0) as down:
        down.send_events(events(4, resource))
    [batch] = spooled(spool)
    hour_ago = time.time_ns() - 3600 * 10**9
    batch.rename(batch.with_name(f"{batch.name}.{hour_ago}.1.claim"))  # its process died
    with CoplaneClient(server.url, spool_dir=spool) as up:
        assert up.flush_spool() == 4
    assert os.listdir(spool) == []


def test_transient_answers_are_retried_with_the_same_events() -> None:
    def accept(request: Request) -> Reply:
        return Reply(202, {"accepted": len(request.json()), "duplicates": 0})

    with fake_service(accept) as fake:
        fake.script(Reply(503, {"detail": "database unavailable"}, {"Retry-After": "0"}),
                    Reply(429, {"detail": "slow down"}))  # fmt: skip
        with CoplaneClient(fake.url, api_key="k3y", backoff=0.01) as client:
            result = client.send_events(events(3, "client.retried"))
    assert result.accepted == 3 and result.delivered
    assert [r.answered for r in fake.requests] == [503, 429, 202]
    assert len({r.body for r in fake.requests}) == 1  # the same ids every time
    assert all(r.headers["authorization"] == "Bearer k3y" for r in fake.requests)


def test_retries_stay_within_the_time_allowed(tmp_path: Path) -> None:
    def unavailable(request: Request) -> Reply:
        return Reply(503, {"detail": "down"}, {"Retry-After": "120"})

    with fake_service(unavailable) as fake:
        with CoplaneClient(fake.url, spool_dir=tmp_path, max_time=2.0) as client:
            began = time.monotonic()
            result = client.send_events(events(2500, "client.slow"))
            took = time.monotonic() - began
        # Retry-After is capped; once out of time the call spools instead of waiting
        assert result.spooled == 2500 and took < 4
        assert len(fake.requests) == 1  # the later batches are spooled without trying


def test_a_server_error_that_is_not_transient_raises(tmp_path: Path) -> None:
    with fake_service(lambda r: Reply(401, {"detail": "bad API key"})) as fake:
        with (
            CoplaneClient(fake.url, spool_dir=tmp_path) as client,
            pytest.raises(ClientError, match="bad API key"),
        ):
            client.send_events(events(1, "client.unauthorized"))
        assert len(fake.requests) == 1
    assert spooled(tmp_path) == []


def test_pings(server: LiveServer) -> None:
    slug = f"client-{uuid.uuid4().hex[:8]}"
    rid = str(uuid.uuid4())
    with CoplaneClient(server.url) as client:
        assert not client.ping(slug, "start")  # unknown monitor
        assert "404" in (client.last_ping_error or "")
        assert client.ping(slug, "start", rid=rid, create=True)
        assert client.ping(slug, 3, rid=rid, body=b"x" * 200_000 + b"end")
        assert client.last_ping_error is None
    [run] = httpx.get(f"{server.url}/api/runs", params={"pipeline": f"cron.{slug}"}).json()["runs"]
    assert run["state"] == "failed" and run["run_key"] == rid
    assert run["error"].startswith("exit code 3") and run["error"].endswith("end")


def test_pings_to_an_unreachable_server_return_false() -> None:
    with CoplaneClient(closed_url()) as client:
        began = time.monotonic()
        assert client.ping("nightly", "start") is False
        assert client.ping("nightly", 0, body=b"log") is False
        assert time.monotonic() - began < 5
        assert "cannot reach" in (client.last_ping_error or "")
