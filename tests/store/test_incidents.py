"""Incidents open once per breach key, resolve when the breach is gone, and queue their alerts."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from coplane.rules.facts import Breach, Evaluation
from coplane.rules.model import FreshnessSLA
from coplane.store import Conflict, Conn, NotFound, Store
from coplane.store.dialects import Row
from coplane.store.incidents import (
    ack_incident,
    apply_evaluation,
    claim_pending_notifications,
    list_incidents,
    mark_failed,
    mark_sent,
    read_incident,
    read_notification,
    release_stale_claims,
    resolve_incident,
)
from tests.factories import at


def nothing(_: Breach) -> list[str]:
    """No downstream resources."""
    return []


def of(affected: dict[str, list[str]]) -> Callable[[Breach], list[str]]:
    """Downstream resources by breach key."""
    return lambda b: affected.get(b.key, [])


CHANNELS = ["slack", "pagerduty"]


def make_sla(**fields: Any) -> FreshnessSLA:
    """A daily freshness SLA notifying two channels."""
    given: dict[str, Any] = {"kind": "freshness", "name": "sales", "target": "wh.sales"}
    given |= {"deadline": "0 9 * * *", "notify": CHANNELS, "severity": "critical", **fields}
    return FreshnessSLA.model_validate(given)


def breached(*keys: str) -> Evaluation:
    """An evaluation breaching each key."""
    return Evaluation(
        "breached",
        [
            Breach(k, at(60), f"{k}: no update", window_start=at(0), resource="wh.sales")
            for k in keys
        ],
    )


def notifications(conn: Conn, incident_id: Any) -> list[Row]:
    """An incident's notifications as (channel, action, status) rows, in channel order."""
    return conn.query(
        "SELECT channel, action, status FROM notifications WHERE incident_id = ? "
        "ORDER BY action DESC, channel",
        (conn.uid(incident_id),),
    )


def queue_one(conn: Conn, minutes: float = 0) -> list[Row]:
    """Open one incident of its own SLA and return the notification rows it queued."""
    sla = make_sla(name=f"sla{minutes:g}")
    opened, _ = apply_evaluation(conn, sla, breached(f"k{minutes}"), nothing, at(minutes))
    return conn.query(
        "SELECT id FROM notifications WHERE incident_id = ? ORDER BY channel",
        (conn.uid(opened[0]["id"]),),
    )


def test_breach_opens_once_and_resolves(conn: Conn) -> None:
    sla = make_sla()
    affected = {"sales:d1": ["wh.report", "dash.sales"]}
    opened, resolved = apply_evaluation(conn, sla, breached("sales:d1"), of(affected), at(61))
    assert resolved == []
    [inc] = opened
    assert (inc["sla"], inc["key"], inc["severity"]) == ("sales", "sales:d1", "critical")
    assert inc["reason"] == "sales:d1: no update" and inc["affected"] == affected["sales:d1"]
    assert (inc["due"], inc["window_start"], inc["opened"]) == (at(60), at(0), at(61))
    assert inc["resolved"] is None
    assert notifications(conn, inc["id"]) == [
        {"channel": "pagerduty", "action": "trigger", "status": "pending"},
        {"channel": "slack", "action": "trigger", "status": "pending"},
    ]

    # the same evaluation again: nothing new
    assert apply_evaluation(conn, sla, breached("sales:d1"), of(affected), at(62)) == ([], [])
    assert len(notifications(conn, inc["id"])) == 2

    # a second key opens a second incident, the first stays open
    opened2, resolved2 = apply_evaluation(
        conn, sla, breached("sales:d1", "sales:d2"), nothing, at(63)
    )
    assert [i["key"] for i in opened2] == ["sales:d2"] and resolved2 == []
    assert opened2[0]["affected"] == []

    # the breach of d1 is gone: it resolves, with a resolve notification per channel
    opened3, resolved3 = apply_evaluation(conn, sla, breached("sales:d2"), nothing, at(70))
    assert opened3 == []
    assert [(i["id"], i["resolved"]) for i in resolved3] == [(inc["id"], at(70))]
    actions = [n["action"] for n in notifications(conn, inc["id"])]
    assert actions == ["trigger", "trigger", "resolve", "resolve"]
    assert apply_evaluation(conn, sla, breached("sales:d2"), nothing, at(71)) == ([], [])

    # the same key may open again once resolved
    again, _ = apply_evaluation(conn, sla, breached("sales:d1", "sales:d2"), nothing, at(80))
    assert [i["key"] for i in again] == ["sales:d1"] and again[0]["id"] != inc["id"]

    # other SLAs' incidents are left alone
    other = make_sla(name="other")
    assert apply_evaluation(conn, other, Evaluation("ok"), nothing, at(90)) == ([], [])
    listed = list_incidents(conn, "open", 10)
    assert [(i["key"], i["opened"]) for i in listed] == [
        ("sales:d1", at(80).isoformat()),
        ("sales:d2", at(63).isoformat()),
    ]
    [closed] = list_incidents(conn, "resolved", 10)
    assert closed["id"] == str(inc["id"]) and closed["resolved"] == at(70).isoformat()
    assert closed["affected"] == ["wh.report", "dash.sales"]
    assert [(n["channel"], n["action"], n["status"]) for n in closed["notifications"]] == [
        (c, a, "pending") for a in ("trigger", "resolve") for c in sorted(CHANNELS)
    ]
    assert len(list_incidents(conn, None, 2)) == 2 and len(list_incidents(conn, None, 10)) == 3


def test_concurrent_evaluators_open_one_incident(store: Store) -> None:
    sla = make_sla()
    barrier = threading.Barrier(2, timeout=10)
    results: list[tuple[list[Row], list[Row]]] = []
    errors: list[BaseException] = []

    def evaluate() -> None:
        try:
            with store.connect() as c:
                barrier.wait()
                with c.transaction():
                    results.append(apply_evaluation(c, sla, breached("sales:d1"), nothing, at(61)))
                    time.sleep(0.3)  # hold the uncommitted incident while the other inserts
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert sorted(len(opened) for opened, _ in results) == [0, 1]
    with store.connect() as c:
        assert len(c.query("SELECT id FROM incidents WHERE resolved IS NULL")) == 1
        assert len(c.query("SELECT id FROM notifications")) == len(CHANNELS)


def test_ack_and_resolve(conn: Conn) -> None:
    [inc], _ = apply_evaluation(conn, make_sla(), breached("k"), nothing, at(0))
    missing = uuid.uuid4()
    with pytest.raises(NotFound):
        ack_incident(conn, missing, at(1))
    with pytest.raises(NotFound):
        ack_incident(conn, "not-a-uuid", at(1))
    with pytest.raises(NotFound):
        resolve_incident(conn, missing, at(1), CHANNELS)
    with pytest.raises(NotFound):
        read_incident(conn, missing)

    assert ack_incident(conn, inc["id"], at(1))["acked"] == at(1)
    assert ack_incident(conn, str(inc["id"]), at(2))["acked"] == at(1)  # the first ack stays
    done = resolve_incident(conn, inc["id"], at(3), ["slack"])
    assert done["resolved"] == at(3)
    assert notifications(conn, inc["id"])[-1] == {
        "channel": "slack",
        "action": "resolve",
        "status": "pending",
    }
    with pytest.raises(Conflict):
        resolve_incident(conn, inc["id"], at(4), ["slack"])
    with pytest.raises(Conflict):
        ack_incident(conn, inc["id"], at(4))
    assert len(notifications(conn, inc["id"])) == len(CHANNELS) + 1
    # the evaluator does not resolve it a second time
    assert apply_evaluation(conn, make_sla(), Evaluation("ok"), nothing, at(5)) == ([], [])


def test_two_claimers_get_disjoint_rows(store: Store, conn: Conn) -> None:
    for minutes in range(5):
        queue_one(conn, minutes)
    barrier = threading.Barrier(2, timeout=10)
    claims: list[list[Row]] = []

    def claim() -> None:
        with store.connect() as c:
            barrier.wait()
            claims.append(claim_pending_notifications(c, at(10), 100))

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    ids = [row["id"] for rows in claims for row in rows]
    assert len(ids) == 10 and len(set(ids)) == 10
    assert claim_pending_notifications(conn, at(10), 100) == []


def test_claim_order_and_due(conn: Conn) -> None:
    late = queue_one(conn, 5)
    early = queue_one(conn, 0)
    assert claim_pending_notifications(conn, at(-1), 10) == []  # not due yet
    first = claim_pending_notifications(conn, at(10), 2)
    assert {r["id"] for r in first} == {r["id"] for r in early}
    assert all(r["claimed"] == at(10) for r in first)
    assert {r["id"] for r in claim_pending_notifications(conn, at(10), 10)} == {
        r["id"] for r in late
    }


def test_transient_failure_retries_after_retry_at(conn: Conn) -> None:
    rows = queue_one(conn)
    claimed = claim_pending_notifications(conn, at(1), 10)
    assert len(claimed) == 2
    nid = claimed[0]["id"]
    mark_failed(conn, nid, at(2), "503 from Slack", permanent=False, retry_at=at(7))
    n = read_notification(conn, nid)
    assert (n["status"], n["claimed"], n["attempts"], n["due"]) == ("pending", None, 1, at(7))
    assert n["last_error"] == "503 from Slack"
    assert claim_pending_notifications(conn, at(6), 10) == []
    [again] = claim_pending_notifications(conn, at(7), 10)
    assert again["id"] == nid

    mark_sent(conn, nid, at(8), {"ts": "1700000000.000100", "channel": "C1"})
    n = read_notification(conn, nid)
    assert (n["status"], n["sent"], n["attempts"]) == ("sent", at(8), 2)
    assert n["response"] == {"ts": "1700000000.000100", "channel": "C1"}
    assert n["last_error"] is None
    with pytest.raises(Conflict):
        mark_sent(conn, nid, at(9), None)  # sent rows are not sent again

    other = next(r["id"] for r in rows if r["id"] != nid)
    mark_failed(conn, other, at(2), "channel_not_found", permanent=True, retry_at=None)
    n = read_notification(conn, other)
    assert (n["status"], n["attempts"], n["last_error"]) == ("dead", 1, "channel_not_found")
    assert claim_pending_notifications(conn, at(100), 10) == []
    with pytest.raises(NotFound):
        mark_failed(conn, uuid.uuid4(), at(2), "x", permanent=True, retry_at=None)


def test_unclaimed_and_stale_claims(conn: Conn) -> None:
    [row, _] = queue_one(conn)
    with pytest.raises(Conflict):
        mark_sent(conn, row["id"], at(1), None)  # never claimed
    claim_pending_notifications(conn, at(1), 10)
    assert release_stale_claims(conn, at(1)) == 0  # claimed at(1) is not before at(1)
    assert release_stale_claims(conn, at(2)) == 2
    assert len(claim_pending_notifications(conn, at(3), 10)) == 2


def test_affected_is_computed_only_for_new_incidents(conn: Conn) -> None:
    sla = make_sla(notify=[])
    asked: list[str] = []

    def affected(b: Breach) -> list[str]:
        asked.append(b.key)
        return ["wh.report"]

    apply_evaluation(conn, sla, breached("sales:d1"), affected, at(61))
    for minute in (62, 63, 64):  # the breach stays open on later passes
        apply_evaluation(conn, sla, breached("sales:d1"), affected, at(minute))
    apply_evaluation(conn, sla, breached("sales:d1", "sales:d2"), affected, at(65))
    assert asked == ["sales:d1", "sales:d2"]
