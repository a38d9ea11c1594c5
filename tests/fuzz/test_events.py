"""hypothesis on the event model: valid events round-trip, invalid ones name the field."""

from __future__ import annotations

import copy
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coplane.events.model import (
    MAX_LABELS,
    MAX_PAYLOAD_DEPTH,
    Event,
    EventDecodeError,
    RelatedResource,
    Resource,
    decode_events,
    encode_json,
)

EXAMPLES = 200

# Text without U+0000 (refused by design, see check_no_nul) or lone surrogates (not UTF-8).
TEXT_CHARS = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")


def text(min_size: int = 0, max_size: int = 30) -> st.SearchStrategy[str]:
    return st.text(TEXT_CHARS, min_size=min_size, max_size=max_size)


# Resource ids: no control or format (invisible, bidi) characters, which ids refuse by
# design, and in NFC, the form ids are stored in (see normal_id).
ID_CHARS = st.characters(blacklist_categories=["Cs", "Cc", "Cf"])


def ids(min_size: int = 1, max_size: int = 60) -> st.SearchStrategy[str]:
    return (
        st.text(ID_CHARS, min_size=min_size, max_size=max_size)
        .map(lambda s: unicodedata.normalize("NFC", s))
        .filter(lambda s: min_size <= len(s) <= max_size)
    )


NAME_SEGMENT = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=12
)
EVENT_NAMES = st.lists(NAME_SEGMENT, min_size=1, max_size=4).map(".".join)
# Whole-minute offsets, as far as RFC 3339 goes (PostgreSQL's own limit is ±15:59: decoding
# turns every time into UTC, which test_openlineage.py checks on PostgreSQL).
MAX_OFFSET_MINUTES = 23 * 60 + 59
OFFSETS = st.integers(-MAX_OFFSET_MINUTES, MAX_OFFSET_MINUTES).map(
    lambda m: timezone(timedelta(minutes=m))
)


@st.composite
def aware_times(draw: st.DrawFn) -> datetime:
    """An instant within the accepted range, written with any offset."""
    instant = draw(
        st.datetimes(
            datetime(1970, 1, 1), datetime(2999, 12, 31, 23, 59, 59), timezones=st.just(UTC)
        )
    )
    return instant.astimezone(draw(OFFSETS))


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text(), inner, max_size=3),
    max_leaves=12,
)
LABELS = st.dictionaries(text(1, 20), text(), max_size=4)
RESOURCES = st.builds(
    Resource,
    id=ids(1, 60),
    name=st.none() | text(),
    kind=st.none() | text(max_size=20),
    labels=LABELS,
)
RELATED = st.builds(
    RelatedResource,
    id=ids(1, 60),
    role=text(1, 20),
    name=st.none() | text(),
    kind=st.none() | text(max_size=20),
    labels=LABELS,
)
EVENTS = st.builds(
    Event,
    occurred=aware_times(),
    event=EVENT_NAMES,
    resource=RESOURCES,
    id=st.none() | st.uuids(),
    related=st.lists(RELATED, max_size=4),
    payload=st.dictionaries(text(), JSON, max_size=4),
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(event=EVENTS, as_array=st.booleans())
def test_valid_events_round_trip(event: Event, as_array: bool) -> None:
    """encode_json then decode_events gives the same event back, alone or in an array, with
    its time as the same instant in UTC."""
    [decoded] = decode_events(encode_json([event] if as_array else event))
    assert decoded == event  # aware datetimes compare as instants
    assert decoded.occurred.utcoffset() == timedelta(0)
    in_utc = msgspec.structs.replace(event, occurred=event.occurred.astimezone(UTC))
    assert encode_json(decoded) == encode_json(in_utc)


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(batch=st.lists(EVENTS, max_size=5))
def test_valid_batches_round_trip(batch: list[Event]) -> None:
    """A batch decodes to the same events in the same order."""
    assert decode_events(encode_json(batch)) == batch


MISSING = object()
Mutation = tuple[list[str | int], object]
RELATED_0: list[str | int] = ["related", 0]


def _deep() -> object:
    value: object = "leaf"
    for _ in range(MAX_PAYLOAD_DEPTH + 1):
        value = [value]
    return value


# Each makes one field of a valid event (as JSON) invalid: the path of the field, and a
# strategy for its new value (MISSING deletes it). The error must point at that path.
MUTATIONS: list[tuple[list[str | int], st.SearchStrategy[object]]] = [
    # a required field missing
    (["occurred"], st.just(MISSING)),
    (["event"], st.just(MISSING)),
    (["resource"], st.just(MISSING)),
    (["resource", "id"], st.just(MISSING)),
    ([*RELATED_0, "id"], st.just(MISSING)),
    ([*RELATED_0, "role"], st.just(MISSING)),
    # a field of the wrong type
    (["occurred"], st.integers() | st.booleans() | st.none()),
    (["event"], st.integers() | st.lists(st.integers(), max_size=2)),
    (["resource"], text() | st.integers()),
    (["resource", "id"], st.integers() | st.none()),
    (["resource", "labels"], st.lists(text(), max_size=2)),
    (["resource", "labels", "k"], st.integers() | st.none()),
    (["related"], st.dictionaries(text(), text(), max_size=2)),
    ([*RELATED_0, "role"], st.integers() | st.booleans()),
    (["payload"], st.lists(st.integers(), max_size=2)),
    (["id"], text().map(lambda s: "z" + s)),  # never a UUID
    # a value out of bounds
    (["event"], st.tuples(EVENT_NAMES, st.sampled_from([" ", "\n", "!", ".", "/"])).map("".join)),
    (["event"], st.just("")),
    (["resource", "id"], st.just("") | text(1001, 1100)),
    ([*RELATED_0, "role"], text(101, 120)),
    (["resource", "labels"], st.just({f"k{i}": "v" for i in range(MAX_LABELS + 1)})),
    (["occurred"], st.datetimes(datetime(1970, 1, 2)).map(datetime.isoformat)),  # no offset
    (
        ["occurred"],
        st.datetimes(max_value=datetime(1969, 12, 31), timezones=st.just(UTC)).map(
            datetime.isoformat
        ),
    ),
    (
        ["occurred"],
        st.datetimes(min_value=datetime(3000, 1, 2), timezones=st.just(UTC)).map(
            datetime.isoformat
        ),
    ),
    (["payload"], st.just({"deep": _deep()})),
    # U+0000, which PostgreSQL cannot store
    (["resource", "id"], st.tuples(text(max_size=5), text(max_size=5)).map("\x00".join)),
    ([*RELATED_0, "role"], st.just("\x00")),
]


def _set(event: dict[str, Any], path: list[str | int], value: object) -> None:
    parent: Any = event
    for step in path[:-1]:
        parent = parent[step]
    if value is MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    batch=st.lists(EVENTS, min_size=1, max_size=3),
    data=st.data(),
    mutation=st.sampled_from(MUTATIONS),
    as_array=st.booleans(),
)
def test_invalid_events_name_the_field(
    batch: list[Event],
    data: st.DataObject,
    mutation: tuple[list[str | int], st.SearchStrategy[object]],
    as_array: bool,
) -> None:
    """One bad field anywhere is an EventDecodeError whose loc is "body", the index, the field."""
    path, values = mutation
    plain: list[dict[str, Any]] = msgspec.to_builtins(batch)
    index = data.draw(st.integers(0, len(plain) - 1)) if as_array else 0
    bad = copy.deepcopy(plain[index])
    bad.setdefault("related", []).insert(0, {"id": "x", "role": "input"})
    bad["resource"].setdefault("labels", {})["k"] = "v"
    _set(bad, path, data.draw(values))
    plain[index] = bad
    body = encode_json(plain if as_array else bad)
    with pytest.raises(EventDecodeError) as info:
        decode_events(body)
    loc = info.value.loc
    assert not info.value.unreadable
    assert loc[0] == "body"
    if as_array:
        assert loc[1] == index
    # the field itself, or (a limit on a container) the container holding it
    assert loc[-len(path) :] == path or loc[-len(path) + 1 :] == path[:-1], (loc, path)


@settings(max_examples=EXAMPLES, deadline=None)
@given(value=JSON)
def test_any_json_decodes_or_names_the_field(value: object) -> None:
    """Any JSON body is events or an EventDecodeError at "body...", never another exception."""
    error = _error_of(encode_json(value))
    assert error is None or (error.loc[0] == "body" and not error.unreadable)


@settings(max_examples=EXAMPLES, deadline=None)
@given(body=st.binary(max_size=200))
def test_any_bytes_decode_or_name_the_body(body: bytes) -> None:
    """Bytes that are not JSON are an unreadable body, loc ["body"]."""
    error = _error_of(body)
    assert (
        error is None or error.loc == ["body"] or (error.loc[0] == "body" and not error.unreadable)
    )


def _error_of(body: bytes) -> EventDecodeError | None:
    """The EventDecodeError decoding `body` raises; any other exception propagates."""
    try:
        decode_events(body)
    except EventDecodeError as exc:
        return exc
    return None
