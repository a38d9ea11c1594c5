"""`concurrency(name)` across real processes against a real server, the API's refusals, and
`coplane concurrency create|list|delete`."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from coplane.cli import app
from coplane.client import CoplaneClient
from coplane.orchestrate.concurrency import (
    ConcurrencyTimeout,
    UnknownConcurrencyLimit,
    aconcurrency,
    concurrency,
)
from tests.conftest import LiveServer

runner = CliRunner()

# A process that waits for a slot of "warehouse", notes when it got and gave it back, and holds
# it until the file `go` exists and then `hold` seconds more (or, with "forever", until killed).
HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from coplane.client import CoplaneClient
    from coplane.orchestrate.concurrency import concurrency

    url, name, hold, lease_s, log = sys.argv[1:6]
    go = os.path.join(os.path.dirname(log), "go")
    with CoplaneClient(url) as client, concurrency(
        "warehouse", client=client, timeout=60, lease_s=float(lease_s)
    ):
        with open(log, "a") as f:
            f.write(f"in {name} {time.time()}\\n")
        while hold == "forever" or not os.path.exists(go):
            time.sleep(0.05)
        time.sleep(float(hold))
        with open(log, "a") as f:
            f.write(f"out {name} {time.time()}\\n")
    """
)


def _start(
    server: LiveServer, name: str, hold: str, log: Path, lease_s: float = 30
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, server.url, name, hold, str(lease_s), str(log)],
        env={k: v for k, v in os.environ.items() if k not in ("COPLANE_URL", "COPLANE_API_KEY")},
    )


def _limit(server: LiveServer) -> dict[str, Any]:
    [found] = httpx.get(f"{server.url}/api/concurrency").json()["limits"]
    assert isinstance(found, dict)
    return found


def _wait_for(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _queued_is(server: LiveServer, count: int) -> bool:
    limit = _limit(server)
    return len(limit["holders"]) + len(limit["waiters"]) == count


def test_a_limit_of_two_held_by_processes_in_arrival_order(
    live_server: LiveServer, tmp_path: Path
) -> None:
    assert (
        runner.invoke(
            app, ["concurrency", "create", "warehouse", "--limit", "2", "--server", live_server.url]
        ).exit_code
        == 0
    )
    log = tmp_path / "holds.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, name in enumerate(["p1", "p2", "p3", "p4"]):
            # p2 holds on longest, so p3 gets p1's slot first and p4 must wait for p2's
            hold = "2.0" if name == "p2" else "0.2"
            procs.append(_start(live_server, name, hold, log))
            # the next starts only once this one is in the queue: arrival order is known
            _wait_for(functools.partial(_queued_is, live_server, i + 1), f"{name} to join")
        listed = runner.invoke(app, ["concurrency", "list", "--server", live_server.url])
        assert listed.exit_code == 0 and "warehouse" in listed.output
        limit = _limit(live_server)
        assert len(limit["holders"]) == 2 and len(limit["waiters"]) == 2
        (tmp_path / "go").touch()
        for p in procs:
            assert p.wait(timeout=120) == 0
    finally:
        for p in procs:
            p.kill()
            p.wait()
    lines = [line.split() for line in log.read_text().splitlines()]
    assert [name for kind, name, _ in lines if kind == "in"] == ["p1", "p2", "p3", "p4"]
    held = 0
    most = 0
    for kind, _, _ in sorted(lines, key=lambda x: (float(x[2]), x[0] == "in")):
        held += 1 if kind == "in" else -1
        most = max(most, held)
    assert most == 2  # two at once, never three
    assert _limit(live_server)["holders"] == []


def test_a_killed_holders_slot_is_freed_after_its_lease(
    live_server: LiveServer, tmp_path: Path
) -> None:
    httpx.put(f"{live_server.url}/api/concurrency/warehouse", json={"limit": 1})
    log = tmp_path / "holds.log"
    doomed = _start(live_server, "doomed", "forever", log, lease_s=2)
    try:
        _wait_for(lambda: "in doomed" in (log.read_text() if log.exists() else ""), "the holder")
        time.sleep(3)  # longer than the lease: it lives on only because it is renewed
        assert len(_limit(live_server)["holders"]) == 1
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
    with (
        CoplaneClient(live_server.url) as client,
        concurrency("warehouse", client=client, timeout=60) as lease,
    ):
        assert lease is not None
        [holder] = _limit(live_server)["holders"]
        assert holder["lease_id"] == lease.lease_id


def test_a_timeout_gives_up_and_leaves_the_queue(live_server: LiveServer) -> None:
    httpx.put(f"{live_server.url}/api/concurrency/warehouse", json={"limit": 1})
    with CoplaneClient(live_server.url) as client:
        with concurrency("warehouse", client=client):
            with (
                pytest.raises(ConcurrencyTimeout, match=r"within 0\.5 s"),
                concurrency("warehouse", client=client, timeout=0.5),
            ):
                pytest.fail("the slot is taken")
            assert _limit(live_server)["waiters"] == []
        with (
            pytest.raises(UnknownConcurrencyLimit, match="nothing"),
            concurrency("nothing", client=client),
        ):
            pytest.fail("no such limit")
        with (
            pytest.raises(ValueError, match="more than the 1 slots"),
            concurrency("warehouse", client=client, occupy=2),
        ):
            pytest.fail("never grantable")


def test_a_cancelled_async_waiter_gives_back_a_slot_granted_after(
    live_server: LiveServer,
) -> None:
    """`aconcurrency` waits in a thread: cancelled while it waits, the slot the server grants
    it later is released at once, not held (and renewed) by nobody."""
    httpx.put(f"{live_server.url}/api/concurrency/warehouse", json={"limit": 1})

    async def cancelled_while_waiting(waiter_client: CoplaneClient) -> None:
        async def wait() -> None:
            async with aconcurrency("warehouse", client=waiter_client, timeout=60):
                pytest.fail("entered after it was cancelled")

        with CoplaneClient(live_server.url) as client, concurrency("warehouse", client=client):
            waiter = asyncio.create_task(wait())
            while not await asyncio.to_thread(lambda: _limit(live_server)["waiters"]):
                await asyncio.sleep(0.05)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        # the holder is gone: the waiting thread is granted the slot and must give it back

    with CoplaneClient(live_server.url) as waiter_client:
        asyncio.run(cancelled_while_waiting(waiter_client))
        _wait_for(lambda: _queued_is(live_server, 0), "the granted slot given back", 20)
        with (
            CoplaneClient(live_server.url) as client,
            concurrency("warehouse", client=client, timeout=5),
        ):
            assert len(_limit(live_server)["holders"]) == 1  # the slot is free to take again


def test_without_a_server_the_block_runs_unlimited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COPLANE_URL", raising=False)
    with concurrency("warehouse") as lease:
        assert lease is None


def test_the_api_names_what_is_wrong(client: TestClient) -> None:
    bad_name = client.put("/api/concurrency/no%20spaces", json={"limit": 1})
    assert bad_name.status_code == 422 and bad_name.json()["errors"][0]["loc"] == ["path", "name"]
    negative = client.put("/api/concurrency/wh", json={"limit": -1})
    assert negative.status_code == 422 and negative.json()["errors"][0]["loc"] == ["body", "limit"]
    assert client.put("/api/concurrency/wh", json={"limit": 1}).status_code == 201
    assert client.put("/api/concurrency/wh", json={"limit": 2}).status_code == 200
    unknown = client.post("/api/concurrency/nope/acquire", json={"holder": "me"})
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["loc"] == ["path", "name"]
    greedy = client.post("/api/concurrency/wh/acquire", json={"holder": "me", "occupy": 3})
    assert greedy.status_code == 422 and greedy.json()["errors"][0]["loc"] == ["body", "occupy"]
    short = client.post("/api/concurrency/wh/acquire", json={"holder": "me", "lease_s": 0})
    assert short.status_code == 422 and short.json()["errors"][0]["loc"] == ["body", "lease_s"]
    lost = client.post(
        "/api/concurrency/wh/renew", json={"lease_id": "00000000-0000-4000-8000-000000000000"}
    )
    assert lost.status_code == 404 and lost.json()["errors"][0]["loc"] == ["body", "lease_id"]
    held = client.post("/api/concurrency/wh/acquire", json={"holder": "me"}).json()
    assert held["state"] == "held"
    renewed = client.post("/api/concurrency/wh/renew", json={"lease_id": held["lease_id"]})
    assert renewed.status_code == 200 and renewed.json()["state"] == "held"
    gone = client.post("/api/concurrency/wh/release", json={"lease_id": held["lease_id"]})
    assert gone.json() == {"released": True}
    assert client.delete("/api/concurrency/wh").status_code == 204
    assert client.delete("/api/concurrency/wh").status_code == 404


def test_cli_reports_a_refusal_naming_the_server(live_server: LiveServer) -> None:
    bad = runner.invoke(
        app, ["concurrency", "create", "no spaces", "--limit", "1", "--server", live_server.url]
    )
    assert bad.exit_code == 2 and "422" in bad.output and "name" in bad.output
    made = runner.invoke(
        app, ["concurrency", "create", "wh", "--limit", "3", "--server", live_server.url]
    )
    assert made.exit_code == 0 and "wh: 3 slots, 0 in use" in made.output
    assert (
        runner.invoke(app, ["concurrency", "delete", "wh", "--server", live_server.url]).exit_code
        == 0
    )
    again = runner.invoke(app, ["concurrency", "delete", "wh", "--server", live_server.url])
    assert again.exit_code == 2 and "404" in again.output


@pytest.mark.postgresql
def test_two_servers_on_one_postgresql_share_the_limit(own_database: str, tmp_path: Path) -> None:
    servers = [LiveServer(own_database, tmp_path / f"server{i}.log") for i in (1, 2)]
    for s in servers:
        s.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        httpx.put(f"{servers[0].url}/api/concurrency/warehouse", json={"limit": 2})
        log = tmp_path / "holds.log"
        for i, name in enumerate(["p1", "p2", "p3", "p4", "p5"]):
            hold = "2.0" if name == "p2" else "0.2"
            # each asks a different server than the one before it
            procs.append(_start(servers[i % 2], name, hold, log))
            _wait_for(functools.partial(_queued_is, servers[0], i + 1), f"{name} to join")
        (tmp_path / "go").touch()
        for p in procs:
            assert p.wait(timeout=120) == 0
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for s in servers:
            s.stop()
    lines = [line.split() for line in log.read_text().splitlines()]
    assert [name for kind, name, _ in lines if kind == "in"] == ["p1", "p2", "p3", "p4", "p5"]
    held = most = 0
    for kind, _, _ in sorted(lines, key=lambda x: (float(x[2]), x[0] == "in")):
        held += 1 if kind == "in" else -1
        most = max(most, held)
    assert most == 2
