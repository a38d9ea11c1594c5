"""SLA definitions and states round-trip through the store on both backends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter

from coplane.rules.facts import Evaluation
from coplane.rules.model import SLA, DurationSLA, FreshnessSLA
from coplane.store import Conn, NotFound
from coplane.store.slas import (
    delete_sla,
    list_slas,
    read_sla,
    replace_file_slas,
    save_sla_state,
    upsert_slas,
)
from tests.factories import at


def make_sla(**fields: Any) -> SLA:
    """An SLA from its JSON fields, defaulting to a daily freshness deadline."""
    given = {"kind": "freshness", "name": "sales", "target": "warehouse.sales", **fields}
    if given["kind"] == "freshness" and "max_age" not in given:
        given.setdefault("deadline", "0 9 * * *")
    return TypeAdapter(SLA).validate_python(given)


def test_definitions_round_trip(conn: Conn) -> None:
    fresh = make_sla(timezone="Europe/Berlin", notify=["slack"], severity="critical")
    slow = make_sla(
        kind="duration", name="slow", target="airflow.etl", max_duration="1h30m", factor=1.5
    )
    aged = make_sla(name="aged", max_age="2d", remediate={"flow": "refill", "parameters": {"a": 1}})
    upsert_slas(conn, [fresh, slow, aged], "api", at(0))

    listed = list_slas(conn)
    assert [s.sla for s in listed] == [aged, fresh, slow]
    assert all(s.state is None and s.origin == "api" for s in listed)
    slow_stored = read_sla(conn, "slow")
    got = slow_stored.sla
    assert isinstance(got, DurationSLA)
    assert got.max_duration == timedelta(hours=1, minutes=30)
    assert slow_stored.state is None and slow_stored.created == at(0)
    berlin = read_sla(conn, "sales").sla
    assert isinstance(berlin, FreshnessSLA)
    assert (berlin.deadline, berlin.timezone) == ("0 9 * * *", "Europe/Berlin")


def test_upsert_keeps_created_and_updates_definition(conn: Conn) -> None:
    upsert_slas(conn, [make_sla()], "api", at(0))
    changed = make_sla(deadline="30 8 * * *")
    upsert_slas(conn, [changed], "api", at(10))
    stored = read_sla(conn, "sales")
    assert stored.sla == changed and stored.created == at(0)
    row = conn.one("SELECT updated FROM slas WHERE name = 'sales'")
    assert row is not None and row["updated"] == at(10)
    upsert_slas(conn, [changed], "api", at(20))  # no change: updated stays
    row = conn.one("SELECT updated FROM slas WHERE name = 'sales'")
    assert row is not None and row["updated"] == at(10)


def test_replace_file_slas_keeps_api_ones(conn: Conn) -> None:
    upsert_slas(conn, [make_sla(name="from_api")], "api", at(0))
    replace_file_slas(conn, [make_sla(name="a"), make_sla(name="b")], at(0))
    replace_file_slas(conn, [make_sla(name="b", max_age="1h", deadline=None)], at(5))
    assert [(s.sla.name, s.origin) for s in list_slas(conn)] == [("b", "file"), ("from_api", "api")]
    b = read_sla(conn, "b").sla
    assert isinstance(b, FreshnessSLA) and b.max_age == timedelta(hours=1)
    replace_file_slas(conn, [], at(6))
    assert [s.sla.name for s in list_slas(conn)] == ["from_api"]


def test_state_upsert_and_delete(conn: Conn) -> None:
    upsert_slas(conn, [make_sla()], "file", at(0))
    save_sla_state(conn, "sales", Evaluation("at_risk", next_deadline=at(60)), at(1))
    save_sla_state(
        conn, "sales", Evaluation("ok", next_deadline=at(120), last_met=at(2), explanation="met"),
        at(3),
    )  # fmt: skip
    state = read_sla(conn, "sales").state
    assert state == {
        "status": "ok",
        "next_deadline": at(120),
        "last_met": at(2),
        "evaluated": at(3),
        "explanation": "met",
    }
    assert list_slas(conn)[0].state == state
    delete_sla(conn, "sales")
    assert conn.one("SELECT sla FROM sla_states") is None
    with pytest.raises(NotFound):
        delete_sla(conn, "sales")
    with pytest.raises(NotFound):
        read_sla(conn, "sales")
