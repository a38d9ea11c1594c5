"""Concurrency limits in the store: slots granted in arrival order, never past the limit, and
given back when a lease expires."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta

import pytest

from coplane.store import Conn, NotFound, Store
from coplane.store.concurrency import (
    LeaseState,
    acquire_slots,
    delete_limit,
    list_limits,
    release_lease,
    renew_lease,
    set_limit,
)
from tests.factories import T0

NOW = T0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _ask(conn: Conn, who: str, occupy: int = 1, lease_s: float = 30.0) -> LeaseState:
    return acquire_slots(conn, "wh", holder=who, occupy=occupy, lease_s=lease_s, now=NOW)


def test_slots_go_in_arrival_order_and_never_past_the_limit(conn: Conn) -> None:
    assert set_limit(conn, "wh", 2, NOW) is True
    a, b, c, d = (_ask(conn, who) for who in "abcd")
    assert [x.state for x in (a, b, c, d)] == ["held", "held", "waiting", "waiting"]
    assert (c.ahead, d.ahead) == (0, 1)
    # d asking again does not jump the queue
    again = acquire_slots(conn, "wh", holder="d", occupy=1, lease_s=30, now=NOW, lease_id=d.id)
    assert again.state == "waiting" and again.ahead == 1
    assert release_lease(conn, "wh", a.id, at(1)) is True
    c2 = acquire_slots(conn, "wh", holder="c", occupy=1, lease_s=30, now=at(1), lease_id=c.id)
    d2 = acquire_slots(conn, "wh", holder="d", occupy=1, lease_s=30, now=at(1), lease_id=d.id)
    assert (c2.state, d2.state) == ("held", "waiting")
    [limit] = list_limits(conn, at(1))
    assert limit["used"] == 2 and limit["limit"] == 2
    assert [h["holder"] for h in limit["holders"]] == ["b", "c"]
    assert [w["holder"] for w in limit["waiters"]] == ["d"]
    assert release_lease(conn, "wh", a.id, at(1)) is False  # twice is harmless


def test_a_big_request_is_not_overtaken_by_small_ones(conn: Conn) -> None:
    set_limit(conn, "wh", 3, NOW)
    first = _ask(conn, "first", occupy=2)
    big = _ask(conn, "big", occupy=3)
    small = _ask(conn, "small", occupy=1)
    assert (first.state, big.state, small.state) == ("held", "waiting", "waiting")
    release_lease(conn, "wh", first.id, at(1))
    states = {x["holder"]: x for x in list_limits(conn, at(1))[0]["holders"]}
    assert list(states) == ["big"]


def test_an_expired_lease_frees_its_slots_and_cannot_be_renewed(conn: Conn) -> None:
    set_limit(conn, "wh", 1, NOW)
    dead = _ask(conn, "crashed", lease_s=10)
    waiter = _ask(conn, "next", lease_s=60)
    assert waiter.state == "waiting"
    assert (
        renew_lease(conn, "wh", dead.id, lease_s=10, now=NOW + timedelta(seconds=5)).state == "held"
    )
    later = NOW + timedelta(seconds=16)  # 10 s after the last renewal
    granted = acquire_slots(
        conn, "wh", holder="next", occupy=1, lease_s=60, now=later, lease_id=waiter.id
    )
    assert granted.state == "held"
    with pytest.raises(NotFound, match="expired"):
        renew_lease(conn, "wh", dead.id, lease_s=10, now=later)
    [limit] = list_limits(conn, later)
    assert [h["holder"] for h in limit["holders"]] == ["next"]


def test_more_slots_let_waiters_in_and_bad_requests_are_refused(conn: Conn) -> None:
    set_limit(conn, "wh", 1, NOW)
    _ask(conn, "a")
    b = _ask(conn, "b")
    assert set_limit(conn, "wh", 2, at(1)) is False
    assert [h["holder"] for h in list_limits(conn, at(1))[0]["holders"]] == ["a", "b"]
    with pytest.raises(ValueError, match="more than the 2 slots"):
        _ask(conn, "greedy", occupy=3)
    with pytest.raises(NotFound):
        acquire_slots(conn, "nope", holder="x", occupy=1, lease_s=30, now=NOW)
    with pytest.raises(NotFound):
        acquire_slots(conn, "wh", holder="x", occupy=1, lease_s=30, now=NOW, lease_id=uuid.uuid4())
    delete_limit(conn, "wh")
    assert list_limits(conn, NOW) == []
    with pytest.raises(NotFound):
        renew_lease(conn, "wh", b.id, lease_s=30, now=NOW)
    with pytest.raises(NotFound):
        delete_limit(conn, "wh")


def test_racing_acquirers_never_exceed_the_limit(store: Store) -> None:
    with store.connect() as conn:
        set_limit(conn, "wh", 3, NOW)
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            with store.connect() as conn:
                acquire_slots(conn, "wh", holder=f"t{i}", occupy=1, lease_s=30, now=NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with store.connect() as conn:
        [limit] = list_limits(conn, NOW)
    assert limit["used"] == 3 and len(limit["waiters"]) == 9
    positions = [w["position"] for w in limit["waiters"]]
    assert positions == sorted(positions) and len(set(positions)) == 9
