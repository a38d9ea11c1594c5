"""A backtest agrees with the live engine: a real server's incidents for a scripted sequence
of events are the breaches a backtest of the same events finds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer

SLA = {"name": "orders_fresh", "kind": "freshness", "target": "wh.orders", "max_age": "3s"}
# The live engine opens an incident when its one-shot timer fires (a little after the
# deadline) and resolves one at the pass after ingest (debounced to 1 s after the last
# pass); the backtest evaluates exactly at the deadline and at max(arrival, last pass + 1 s).
TOLERANCE = timedelta(seconds=1.5)


def _update(url: str) -> dict[str, Any]:
    body = {"occurred": datetime.now(UTC).isoformat(), "event": "asset.updated",
            "resource": {"id": "wh.orders"}}  # fmt: skip
    assert httpx.post(f"{url}/api/events", json=body).status_code == 202
    return body


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _close(a: datetime | None, b: datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= TOLERANCE


@pytest.mark.slow
def test_backtest_finds_what_the_live_engine_did(live_server: LiveServer) -> None:
    url = live_server.url
    start = datetime.now(UTC)
    assert httpx.post(f"{url}/api/slas", json=SLA).status_code == 201
    sent = []
    # updated, stale after 3 s (incident), updated again (resolved), stale again (incident)
    for pause in (0.3, 0.5, 4.5, 4.5):
        time.sleep(pause)
        sent.append(_update(url))
    time.sleep(4.2)
    end = datetime.now(UTC)
    incidents = httpx.get(f"{url}/api/incidents", params={"limit": 100}).json()["incidents"]
    live = sorted(incidents, key=lambda i: i["opened"])
    assert len(live) == 3, live  # after the 2nd, 3rd and 4th update (the 3rd still open)

    for events in (sent, None):  # the same events given, then the server's stored ones
        body = {"sla": SLA, "start": start.isoformat(), "end": end.isoformat(), "events": events}
        r = httpx.post(f"{url}/api/slas/backtest", json=body, timeout=30)
        assert r.status_code == 200, r.text
        breaches = r.json()["breaches"]
        assert [b["key"] for b in breaches] == [i["key"] for i in live]
        assert [_time(b["due"]) for b in breaches] == [_time(i["due"]) for i in live]
        for b, i in zip(breaches, live, strict=True):
            assert _close(_time(b["breached_at"]), _time(i["opened"])), (b, i)
            assert _close(_time(b["resolved_at"]), _time(i["resolved"])), (b, i)
