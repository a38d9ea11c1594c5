"""Schedules make runs ahead, DST-correct in an IANA zone, once per time whatever the number
of servers, and pausing cancels the runs not started."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from coplane.orchestrate.schedules import create_scheduled_runs, sync_schedules
from coplane.rules.deployment import Schedule
from coplane.rules.schedule import upcoming_intervals
from coplane.store import Conn, Store
from coplane.store.flow_runs import list_flow_runs
from tests.conftest import LiveServer
from tests.orchestrate.support import deploy, flow_run, run, wait_for, write_flows
from tests.store.test_flow_runs import make_deployment


def _dues(conn: Conn) -> list[str]:
    rows = list_flow_runs(conn, state="scheduled", limit=100)
    return sorted(r["due"].astimezone(UTC).isoformat() for r in rows)


def _schedule(store: Store, conn: Conn, now: datetime, **fields: object) -> None:
    make_deployment(conn)
    with conn.transaction():
        sync_schedules(store, conn, "d", [Schedule.model_validate(fields)], now)


def test_a_cron_in_berlin_runs_at_the_right_instants_across_the_spring_gap(
    store: Store, conn: Conn
) -> None:
    now = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    _schedule(store, conn, now, cron="30 2 * * *", timezone="Europe/Berlin")
    create_scheduled_runs(store, now=now)
    # 02:30 CET is 01:30Z; on the 29th 02:30 does not exist and the run is at 03:00 CEST
    assert _dues(conn) == [
        "2026-03-28T01:30:00+00:00",
        "2026-03-29T01:00:00+00:00",
        "2026-03-30T00:30:00+00:00",
    ][: len(_dues(conn))]
    assert len(_dues(conn)) == 1  # within the 24 h horizon: only the next one yet
    create_scheduled_runs(store, now=now + timedelta(minutes=1))
    assert len(_dues(conn)) == 1  # and not the one after it, while that one waits
    later = datetime(2026, 3, 28, 2, 0, tzinfo=UTC)
    create_scheduled_runs(store, now=later)
    create_scheduled_runs(store, now=later + timedelta(hours=23))
    assert _dues(conn) == [
        "2026-03-28T01:30:00+00:00",
        "2026-03-29T01:00:00+00:00",
        "2026-03-30T00:30:00+00:00",
    ]


def test_a_cron_in_berlin_runs_once_on_the_autumn_fold(store: Store, conn: Conn) -> None:
    now = datetime(2026, 10, 24, 6, 0, tzinfo=UTC)
    _schedule(store, conn, now, cron="30 2 * * *", timezone="Europe/Berlin")
    create_scheduled_runs(store, now=now)
    create_scheduled_runs(store, now=now + timedelta(hours=20))
    # 02:30 happens twice on the 25th (CEST, then CET): one run, at the first
    assert _dues(conn) == ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]


def test_runs_are_made_once_however_often_and_by_however_many(
    store: Store, conn: Conn, db_url: str
) -> None:
    now = datetime(2026, 11, 2, 8, 0, 10, tzinfo=UTC)
    _schedule(store, conn, now, interval="15m")
    from coplane.store import open_store

    other = open_store(db_url, pool_size=2)  # a second server's store
    try:
        for s in (store, other, store, other):
            create_scheduled_runs(s, now=now)
        dues = _dues(conn)
        assert len(dues) == 10 and len(set(dues)) == 10  # the cap ahead, each time once
        assert dues[0] == "2026-11-02T08:00:10+00:00"  # anchored where the schedule began
        # with no worker taking them, no more pile up than the cap
        create_scheduled_runs(other, now=now + timedelta(hours=1))
    finally:
        other.close()
    assert _dues(conn) == dues


def test_an_interval_counts_elapsed_time() -> None:
    anchor = datetime(2026, 10, 25, 0, 0, tzinfo=UTC)
    got = upcoming_intervals(anchor, timedelta(hours=1), anchor, anchor + timedelta(hours=3), 10)
    assert [d.hour for d in got] == [1, 2, 3]
    assert upcoming_intervals(anchor, timedelta(days=1), anchor, anchor, 10) == [
        anchor + timedelta(days=1)  # the next one, although past the horizon
    ]


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    s = LiveServer(db_url, tmp_path / "server.log")
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.slow
def test_a_scheduled_run_starts_when_due_and_pause_stops_more(
    server: LiveServer, tmp_path: Path
) -> None:
    folder = write_flows(tmp_path / "code")
    d = deploy(server, folder, "every", "hello", parameters={"name": "tick"},
               schedules=[{"interval": "3s"}])  # fmt: skip
    assert d["schedules"][0]["interval_s"] == 3 and len(d["schedules"][0]["next_runs"]) == 5
    first = min((r for r in d["runs"]), key=lambda r: r["due"])
    wait_for(lambda: flow_run(server, first["id"])["state"] == "completed", timeout=30)
    started = datetime.fromisoformat(run(server, first["id"])["started"])
    lag = (started - datetime.fromisoformat(first["due"])).total_seconds()
    assert lag >= 0  # never before its time (how soon after is measured by bench/workers.py)

    paused = httpx.post(f"{server.url}/api/deployments/every/pause").json()
    assert paused["schedules"][0]["paused"] is True
    flows = httpx.get(f"{server.url}/api/flow-runs", params={"deployment": "every"}).json()
    assert not [r for r in flows["flow_runs"] if r["state"] == "scheduled"]
    cancelled = [r for r in flows["flow_runs"] if r["state"] == "cancelled"]
    assert cancelled and httpx.get(f"{server.url}/api/runs/{cancelled[0]['id']}").json()[
        "state"
    ] == "cancelled"  # fmt: skip
    shown = httpx.get(f"{server.url}/api/deployments/every").json()["schedules"][0]
    assert shown["paused"] and shown["next_runs"] == []

    resumed = httpx.post(f"{server.url}/api/deployments/every/resume").json()
    assert resumed["schedules"][0]["paused"] is False
    flows = httpx.get(f"{server.url}/api/flow-runs", params={"deployment": "every"}).json()
    assert [r for r in flows["flow_runs"] if r["state"] == "scheduled"]
    nope = httpx.post(f"{server.url}/api/deployments/nope/pause")
    assert nope.status_code == 404 and nope.json()["errors"][0]["loc"] == ["path", "name"]


@pytest.mark.slow
def test_coplane_deploy_with_a_cron_and_pausing_it(server: LiveServer, tmp_path: Path) -> None:
    folder = write_flows(tmp_path / "code")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "coplane", *args, "--server", server.url],
                              cwd=folder, capture_output=True, text=True, timeout=120,
                              env=os.environ.copy())  # fmt: skip

    done = cli("deploy", "flows.py:hello", "--name", "nightly", "--param", "name=n",
               "--cron", "0 3 * * *", "--timezone", "Europe/Berlin")  # fmt: skip
    assert done.returncode == 0, done.stderr
    schedule = httpx.get(f"{server.url}/api/deployments/nightly").json()["schedules"][0]
    assert schedule["cron"] == "0 3 * * *" and schedule["timezone"] == "Europe/Berlin"
    assert datetime.fromisoformat(schedule["next_runs"][0]).astimezone(UTC).hour in (1, 2)
    done = cli("deploy", "flows.py:hello", "--name", "x", "--cron", "61 * * * *")
    assert done.returncode == 2 and "schedules.0.cron" in done.stderr, done.stderr
    done = cli("schedules", "pause", "nightly")
    assert done.returncode == 0 and "1 schedules paused" in done.stdout
    done = cli("schedules", "resume", "nightly")
    assert done.returncode == 0 and "0 3 * * * next at" in done.stdout


@pytest.mark.slow
@pytest.mark.postgresql
def test_two_servers_on_one_postgresql_make_each_scheduled_run_once(
    pg_url: str, tmp_path: Path
) -> None:
    from tests.conftest import _clean_postgresql

    _clean_postgresql(pg_url)
    env = {"COPLANE_WORKER": "false"}
    servers = [LiveServer(pg_url, tmp_path / f"server-{i}.log", env=env) for i in range(2)]
    for s in servers:
        s.start()
    try:
        folder = write_flows(tmp_path / "code")
        deploy(servers[0], folder, "minutely", "hello", parameters={"name": "m"},
               schedules=[{"cron": "* * * * *"}])  # fmt: skip
        servers[1].kill()  # a restart in the middle
        servers[1].start()

        def flow_runs() -> list[dict[str, str]]:
            got = httpx.get(f"{servers[1].url}/api/flow-runs", params={"limit": 1000}).json()
            return list(got["flow_runs"])

        wait_for(lambda: len(flow_runs()) >= 10, timeout=30)
        import time

        time.sleep(11)  # two more passes of each server's schedule-runs job
        dues = [r["due"] for r in flow_runs()]
        assert len(dues) == len(set(dues)) and len(dues) >= 10
    finally:
        for s in servers:
            s.stop()
