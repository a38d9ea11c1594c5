"""The event model: decoding, validation errors that name the field, name matching."""

from __future__ import annotations

import json

import pytest

from coplane.events import EventDecodeError, decode_events, event_name_matches
from tests.factories import event_dict


def test_one_event_or_an_array_decode_to_a_list() -> None:
    one = event_dict("run.started", "airflow.prod.sales", run="r1")
    assert len(decode_events(json.dumps(one).encode())) == 1
    assert len(decode_events(json.dumps([one, one]).encode())) == 2


def test_optional_fields_default() -> None:
    [e] = decode_events(
        b'{"occurred": "2026-11-02T08:00:00+01:00", "event": "x.y", "resource": {"id": "r"}}'
    )
    assert e.id is None and e.related == [] and e.payload == {}
    assert e.occurred.utcoffset() is not None


def nested(levels: int) -> dict[str, object]:
    """A payload whose objects and arrays nest `levels` deep."""
    value: object = "bottom"
    for level in range(levels - 1):
        value = [value] if level % 2 else {"x": value}
    return {"top": value}


DEEP = nested(33)


def test_a_payload_at_the_limits_is_accepted() -> None:
    ok = {**event_dict("run.started", "p"), "payload": nested(32)}
    ok["resource"]["labels"] = {f"k{i}": "v" for i in range(64)}
    [e] = decode_events(json.dumps(ok).encode())
    assert len(e.resource.labels) == 64


@pytest.mark.parametrize(
    ("change", "loc", "message"),
    [
        ({"occurred": "2026-11-02T08:00:00"}, ["body", 0, "occurred"], "timezone"),
        ({"occurred": "yesterday"}, ["body", 0, "occurred"], "datetime"),
        ({"event": 5}, ["body", 0, "event"], "Expected `str`"),
        ({"event": "has space"}, ["body", 0, "event"], "regex"),
        # `$` alone also matched before a final newline (found by tests/fuzz)
        ({"event": "run.started\n"}, ["body", 0, "event"], "regex"),
        ({"event": ""}, ["body", 0, "event"], ""),
        ({"resource": {}}, ["body", 0, "resource", "id"], "`id`"),
        ({"resource": "r"}, ["body", 0, "resource"], "object"),
        ({"related": [{"id": "x"}]}, ["body", 0, "related", 0, "role"], "`role`"),
        ({"payload": {"note": "a\u0000b"}}, ["body", 0, "payload", "note"], "U+0000"),
        ({"occurred": "0001-01-01T00:00:00Z"}, ["body", 0, "occurred"], "between 1970"),
        ({"occurred": "9999-12-31T00:00:00+00:00"}, ["body", 0, "occurred"], "2999"),
        ({"payload": [1]}, ["body", 0, "payload"], "object"),
        ({"id": "not-a-uuid"}, ["body", 0, "id"], "uuid"),
        # the limits on one event
        (
            {"resource": {"id": "r", "labels": {f"k{i}": "v" for i in range(65)}}},
            ["body", 0, "resource", "labels"],
            "length <= 64",
        ),
        (
            {"resource": {"id": "r", "labels": {"k" * 201: "v"}}},
            ["body", 0, "resource", "labels"],
            "length <= 200",
        ),
        ({"resource": {"id": "r", "kind": "k" * 101}}, ["body", 0, "resource", "kind"], "<= 100"),
        ({"related": [{"id": "x", "role": "input"}] * 1001}, ["body", 0, "related"], "<= 1000"),
        ({"payload": {"blob": "x" * (1024 * 1024)}}, ["body", 0, "payload"], "limit is 1048576"),
        ({"payload": DEEP}, ["body", 0, "payload"], "nests 33 levels deep; the limit is 32"),
    ],
)
def test_invalid_fields_are_named(
    change: dict[str, object], loc: list[object], message: str
) -> None:
    bad = {**event_dict("run.started", "p"), **change}
    with pytest.raises(EventDecodeError) as info:
        decode_events(json.dumps([bad]).encode())
    assert info.value.loc == loc
    assert message.lower() in info.value.message.lower()
    assert not info.value.unreadable


def test_missing_required_field_is_named() -> None:
    bad = event_dict("run.started", "p")
    del bad["occurred"]
    with pytest.raises(EventDecodeError, match="occurred"):
        decode_events(json.dumps(bad).encode())


def test_malformed_json_is_unreadable() -> None:
    with pytest.raises(EventDecodeError) as info:
        decode_events(b'{"occurred": ')
    assert info.value.unreadable
    assert info.value.loc == ["body"]


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("run.*", "run.started", True),
        ("run.*", "run.completed", True),
        ("run.*", "asset.updated", False),
        ("run.*", "run", False),
        ("*", "anything.at.all", True),
        ("run.started", "run.started", True),
        ("run.started", "run.started.late", False),
        ("run.start", "run.started", False),
    ],
)
def test_event_name_matching(pattern: str, name: str, matches: bool) -> None:
    assert event_name_matches(pattern, name) is matches
