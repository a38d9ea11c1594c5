"""Accepted data survives crashes: SIGKILLed servers and PostgreSQL outages under load.

Client threads send batches of native events as a producer does, retrying a failed batch
with the same ids, and remember every id the server answered 2xx for. After the crashes,
each of those ids must be stored exactly once, and the derived `runs` must equal what the
stored events give when folded again into a fresh store.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from coplane.events.model import decode_events, encode_json
from coplane.store import Conn, open_store
from coplane.store.events import insert_events
from tests.conftest import LiveServer, set_database_outage
from tests.factories import event_dict

pytestmark = pytest.mark.slow

CLIENTS = 4
PIPELINES = [f"airflow.prod.crash_{i}" for i in range(3)]
RUN_COLUMNS = (
    "id, pipeline, run_key, source, state, state_rank, state_at, error, scheduled, started, "
    "ended, parent_run, nominal_start, first_seen"
)


class Producer(threading.Thread):
    """Sends batches until stopped; a failed batch is sent again, same ids, until it is 2xx."""

    def __init__(self, number: int, url: str, stop: threading.Event) -> None:
        super().__init__(name=f"producer-{number}", daemon=True)
        self.number = number
        self.url = url
        self.stop = stop
        self.acked: list[str] = []  # ids of every batch answered 2xx
        self.statuses: list[tuple[float, float, int | None]] = []  # sent, answered, status
        self.duplicates = 0
        self.error: BaseException | None = None

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        """Runs that start in one batch and end in the next, with a task run each."""
        previous: list[tuple[str, str, int]] = []
        for seq in range(1_000_000):
            batch: list[dict[str, Any]] = []
            started: list[tuple[str, str, int]] = []
            for k in range(4):
                pipeline = PIPELINES[(seq + k) % len(PIPELINES)]
                key = f"p{self.number}-b{seq}-r{k}"
                minutes = seq * 10 + k
                batch.append(event_dict("run.started", pipeline, minutes=minutes, run=key))
                task = {"role": "parent", "id": pipeline}
                parent_run = {"role": "parent_run", "id": key}
                batch.append(
                    event_dict(
                        "run.started",
                        f"{pipeline}.extract",
                        minutes=minutes + 1,
                        run=f"{key}-t",
                        related=[task, parent_run],
                    )
                )
                started.append((pipeline, key, minutes))
            for pipeline, key, minutes in previous:
                outcome = "run.failed" if minutes % 7 == 3 else "run.completed"
                batch.append(event_dict("run.heartbeat", pipeline, minutes=minutes + 2, run=key))
                batch.append(event_dict(outcome, pipeline, minutes=minutes + 9, run=key))
            previous = started
            yield batch

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=3.0) as client:
                for batch in self.batches():
                    if self.stop.is_set():
                        return
                    self.send(client, batch)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def send(self, client: httpx.Client, batch: list[dict[str, Any]]) -> None:
        while True:
            sent = time.monotonic()
            try:
                response = client.post("/api/events", json=batch)
            except httpx.HTTPError:
                self.statuses.append((sent, time.monotonic(), None))
            else:
                self.statuses.append((sent, time.monotonic(), response.status_code))
                if response.is_success:
                    self.acked.extend(e["id"] for e in batch)
                    self.duplicates += response.json()["duplicates"]
                    return
                assert response.status_code >= 500, response.text  # never the batch's fault
            if self.stop.is_set():
                return  # given up: this batch was never acknowledged
            time.sleep(0.05)


def start_producers(url: str) -> tuple[list[Producer], threading.Event]:
    stop = threading.Event()
    producers = [Producer(i, url, stop) for i in range(CLIENTS)]
    for p in producers:
        p.start()
    return producers, stop


def stop_producers(producers: list[Producer], stop: threading.Event) -> list[str]:
    """Stop the producers; the ids they got 2xx for."""
    stop.set()
    for p in producers:
        p.join(timeout=30)
        assert not p.is_alive()
        assert p.error is None, repr(p.error)
    return [i for p in producers for i in p.acked]


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def runs_of(conn: Conn) -> list[tuple[Any, ...]]:
    """Every stored run, in id order, with plain values."""
    rows = conn.query(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY id")
    return [tuple(_plain(v) for v in row.values()) for row in rows]


def check_stored(db_url: str, acked: list[str], scratch: Path) -> None:
    """Every acknowledged id stored exactly once; runs equal the stored events folded again."""
    assert len(acked) == len(set(acked)), "an id was acknowledged in two batches"
    store = open_store(db_url, pool_size=2)
    try:
        with store.connect() as conn:
            rows = conn.query("SELECT id, occurred, event, resource, related, payload FROM events")
            stored_runs = runs_of(conn)
    finally:
        store.close()
    ids = [str(r["id"]) for r in rows]
    twice = [i for i, count in Counter(ids).items() if count > 1]
    assert not twice, f"{len(twice)} ids stored more than once"
    lost = set(acked) - set(ids)
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged events are not stored"

    events = decode_events(
        encode_json(
            [
                {
                    "id": str(r["id"]),
                    "occurred": _plain(r["occurred"]).isoformat(),
                    "event": r["event"],
                    "resource": r["resource"],
                    "related": r["related"],
                    "payload": r["payload"],
                }
                for r in rows
            ]
        )
    )
    fresh = open_store(f"sqlite:///{scratch}", pool_size=1)
    try:
        with fresh.connect() as conn:
            insert_events(conn, events, datetime.now(UTC))
            expected_runs = runs_of(conn)
    finally:
        fresh.close()
    assert len(stored_runs) == len(expected_runs)
    differ = [(s, e) for s, e in zip(stored_runs, expected_runs, strict=True) if s != e]
    assert not differ, f"{len(differ)} runs differ from their events, e.g. {differ[0]}"


def test_sigkill_under_load_loses_and_duplicates_nothing(db_url: str, tmp_path: Path) -> None:
    server = LiveServer(db_url, tmp_path / "server.log")
    server.start()
    rng = random.Random(20261102)
    producers, stop = start_producers(server.url)
    try:
        for _ in range(5):
            time.sleep(rng.uniform(1.0, 3.0))
            server.kill()
            time.sleep(rng.uniform(0.0, 0.3))
            server.start()  # same database, same port: the producers find it again
        time.sleep(1.0)
        acked = stop_producers(producers, stop)
    finally:
        stop.set()
        server.stop()
    answered = [s for p in producers for _, _, s in p.statuses]
    assert answered.count(None) > 0, "no request was cut off by a kill"
    assert len(acked) > 500, "too little load to mean anything"
    check_stored(db_url, acked, tmp_path / "scratch.sqlite")


@pytest.mark.postgresql
def test_postgresql_outage_under_load_loses_nothing(own_database: str, tmp_path: Path) -> None:
    server = LiveServer(
        own_database, tmp_path / "server.log", env={"COPLANE_DATABASE_TIMEOUT": "1"}
    )
    server.start()
    producers, stop = start_producers(server.url)
    try:
        time.sleep(2.0)
        set_database_outage(own_database, down=True)
        try:
            health = httpx.get(f"{server.url}/api/health", timeout=5)
            assert health.status_code == 503
            assert "database" in health.json()["detail"]
            down_since = time.monotonic()
            time.sleep(4.0)
            health = httpx.get(f"{server.url}/api/health", timeout=5)
            assert health.status_code == 503
            down_until = time.monotonic()
        finally:
            set_database_outage(own_database, down=False)
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.url}/api/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "no recovery within 30 s"
            time.sleep(0.2)
        recovered = time.monotonic()
        time.sleep(2.0)
        acked = stop_producers(producers, stop)
        assert server.process is not None and server.process.poll() is None  # never restarted
    finally:
        stop.set()
        server.stop()
    statuses = [s for p in producers for s in p.statuses]
    during = [
        code for sent, answered, code in statuses if down_since <= sent and answered <= down_until
    ]
    assert during, "no request was sent during the outage"
    assert all(code is None or code >= 500 for code in during), during
    assert any(code == 503 for code in during), during
    after = [code for sent, _, code in statuses if sent > recovered]
    assert 202 in after, "ingest did not recover"
    check_stored(own_database, acked, tmp_path / "scratch.sqlite")
