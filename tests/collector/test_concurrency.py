"""Concurrent producers over real HTTP: overlapping batches store each event once."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from tests.conftest import LiveServer
from tests.factories import event_dict


def test_overlapping_batches_from_concurrent_clients(live_server: LiveServer) -> None:
    pool = [event_dict("run.started", f"cron.job{i % 5}", minutes=i, run=f"r{i}")
            for i in range(400)]  # fmt: skip
    # four clients send windows that overlap by half, each as 100-event batches
    windows = [pool[i * 100 : i * 100 + 200] for i in range(3)] + [pool[:100] + pool[300:]]
    accepted: list[int] = []
    duplicates: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def send(window: list[dict[str, Any]]) -> None:
        try:
            with httpx.Client(base_url=live_server.url, timeout=30) as c:
                for start in range(0, len(window), 100):
                    r = c.post("/api/events", json=window[start : start + 100])
                    assert r.status_code == 202, r.text
                    with lock:
                        accepted.append(r.json()["accepted"])
                        duplicates.append(r.json()["duplicates"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(w,)) for w in windows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(accepted) == 400
    assert sum(duplicates) == sum(len(w) for w in windows) - 400
    runs, cursor = [], None
    with httpx.Client(base_url=live_server.url) as c:
        while True:
            page = c.get(
                "/api/runs", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}
            ).json()
            runs += page["runs"]
            cursor = page["next"]
            if cursor is None:
                break
        events = c.get("/api/events", params={"limit": 1000}).json()["events"]
    assert len(runs) == 400
    assert len({e["id"] for e in events}) == len(events) == 400
