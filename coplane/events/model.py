"""The event every producer sends, as msgspec structs decoded straight from request bodies.

msgspec rather than pydantic on this path: decoding and validating 1,000 events costs about
2 ms with msgspec and 8 ms with pydantic, and ingest is the hot path (see PERF-NOTES).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

# `(?!\n)`: msgspec matches with Python's re.search, whose `$` also matches before a final
# newline, so without it "run.started\n" passed (found by tests/fuzz). `\Z` would say the
# same but is not valid in the JSON Schema (ECMA 262) pattern the OpenAPI schema shows.
EVENT_NAME_PATTERN = r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$(?!\n)"

EventName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=EVENT_NAME_PATTERN)]
ResourceId = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
Role = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Label = Annotated[str, msgspec.Meta(max_length=1000)]
LabelKey = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
# Limits on one event, checked while decoding (README "Limits"): they bound what one producer
# bug can put into every derived row and page.
MAX_LABELS = 64  # labels per resource
MAX_RELATED = 1_000  # related resources per event
MAX_PAYLOAD_BYTES = 1024 * 1024  # one event's payload, as compact JSON
MAX_PAYLOAD_DEPTH = 32  # nesting of objects and arrays in a payload
Labels = Annotated[dict[LabelKey, Label], msgspec.Meta(max_length=MAX_LABELS)]
Name = Annotated[str, msgspec.Meta(max_length=1000)]
Kind = Annotated[str, msgspec.Meta(max_length=100)]
# `tz=True`: a time without an offset is ambiguous and is refused, never guessed.
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
# Times outside this range are producer bugs (year 1, year 9999), not events; refusing
# them keeps the store's time partitions and date arithmetic sane.
OCCURRED_MIN = datetime(1970, 1, 1, tzinfo=UTC)
OCCURRED_MAX = datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC)
ZERO = timedelta(0)

# The structs below are `gc=False`: an event never takes part in a reference cycle, and
# leaving thousands of decoded events out of the cyclic collector halves decode time.


class Resource(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """The primary thing an event is about: a pipeline, a task, an asset."""

    id: ResourceId
    name: Name | None = None
    kind: Kind | None = None
    labels: Labels = {}


class RelatedResource(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Another resource involved in the event, with the role it plays."""

    id: ResourceId
    role: Role
    name: Name | None = None
    kind: Kind | None = None
    labels: Labels = {}


class Event(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One thing that happened, as a producer reports it."""

    occurred: AwareDatetime
    event: EventName
    resource: Resource
    id: uuid.UUID | None = None
    related: Annotated[list[RelatedResource], msgspec.Meta(max_length=MAX_RELATED)] = []
    payload: dict[str, Any] = {}

    def related_with(self, role: str) -> list[RelatedResource]:
        """The related resources that play `role`."""
        return [r for r in self.related if r.role == role]

    def first_related(self, role: str) -> RelatedResource | None:
        """The first related resource that plays `role`, if any."""
        for r in self.related:
            if r.role == role:
                return r
        return None


class EventDecodeError(ValueError):
    """A body that is not valid events; `loc` names where, `unreadable` means not even JSON.

    `problems` lists the first invalid field of every invalid event, the first being `message`
    at `loc`: a producer fixing a batch should not need one round trip per event.
    """

    def __init__(
        self,
        message: str,
        loc: list[str | int],
        *,
        unreadable: bool,
        problems: list[tuple[str, list[str | int]]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.unreadable = unreadable
        self.problems = problems or [(message, loc)]


_decoder = msgspec.json.Decoder(Event | list[Event])
_PATH_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]")


def _parse_path(path: str) -> list[str | int]:
    """Turn msgspec's `$[3].resource.id` into ["body", 3, "resource", "id"]."""
    loc: list[str | int] = ["body"]
    for name, index, key in _PATH_RE.findall(path.removeprefix("$")):
        loc.append(int(index) if index else (name or key))
    return loc


def validation_error(exc: msgspec.ValidationError) -> EventDecodeError:
    """msgspec's error as an EventDecodeError whose loc starts at "body"."""
    text = str(exc)
    message, sep, path = text.rpartition(" - at `")
    if not sep:  # at the top level msgspec names no path
        message, path = text, "$"
    loc = _parse_path(path.rstrip("`"))
    missing = message.removeprefix("Object missing required field `")
    if missing != message:  # point at the missing field itself
        loc.append(missing.rstrip("`"))
    if message == NAIVE_TIME_MESSAGE:
        message = NAIVE_TIME_HINT
    return EventDecodeError(message, loc, unreadable=False)


NAIVE_TIME_MESSAGE = "Expected `datetime` with a timezone component"
NAIVE_TIME_HINT = (
    "the time has no timezone: add Z or an offset (2026-11-02T08:00:00Z, "
    "2026-11-02T09:00:00+01:00)"
)


def decode_events(body: bytes) -> list[Event]:
    """Decode one event or an array of events; raise EventDecodeError naming the bad field."""
    try:
        decoded = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _every_problem(body, validation_error(exc)) from None
    except msgspec.DecodeError as exc:
        raise EventDecodeError(
            f"body is not valid JSON: {exc}", ["body"], unreadable=True
        ) from None
    except RecursionError:  # msgspec's own bound on nesting, reached while decoding
        raise too_deep() from None
    events = decoded if isinstance(decoded, list) else [decoded]
    problems: list[tuple[str, list[str | int]]] = []
    for index, event in enumerate(events):
        try:
            event.occurred = check_occurred(event.occurred, ["body", index, "occurred"])
            normalise_ids(event, ["body", index])
            if event.payload:
                check_payload(event.payload, ["body", index, "payload"])
        except EventDecodeError as exc:
            problems.append((exc.message, exc.loc))
    if problems:
        message, loc = problems[0]
        raise EventDecodeError(message, loc, unreadable=False, problems=problems)
    if b"\\u0000" in body:  # rare: only then walk the events to name the field
        for index, event in enumerate(events):
            check_no_nul(msgspec.to_builtins(event), ["body", index])
    return events


_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # searched in C: ids are on the hot path


def normal_id(value: str, loc: list[str | int]) -> str:
    """A resource id in NFC; refuse invisible and direction-changing characters (Unicode's
    format and control categories: zero-width spaces, bidi overrides, ...), naming the field.

    Two ids that look the same must be the same resource: without this, "café" composed and
    decomposed, or an id with a zero-width space, were distinct resources looking identical.
    """
    if value.isascii():  # almost every id: nothing to normalise, and no format characters
        if _ASCII_CONTROL.search(value) is not None:
            raise EventDecodeError(
                "control characters are not allowed in ids", loc, unreadable=False
            )
        return value
    for char in value:
        if unicodedata.category(char) in ("Cf", "Cc"):
            name = unicodedata.name(char, f"U+{ord(char):04X}")
            raise EventDecodeError(
                f"the invisible character U+{ord(char):04X} ({name}) is not allowed in ids",
                loc,
                unreadable=False,
            )
    return unicodedata.normalize("NFC", value)


def normalise_ids(event: Event, loc: list[str | int]) -> None:
    """The event's resource ids (its own and its related ones) checked and in NFC."""
    event.resource.id = normal_id(event.resource.id, [*loc, "resource", "id"])
    for index, related in enumerate(event.related):
        related.id = normal_id(related.id, [*loc, "related", index, "id"])


_one_event = msgspec.json.Decoder(Event)


def _every_problem(body: bytes, first: EventDecodeError) -> EventDecodeError:
    """`first` (msgspec stops at one error) with the problems of the batch's other events.

    Only run once a batch has failed, so the valid path pays nothing for it."""
    try:
        items = msgspec.json.decode(body, type=list[msgspec.Raw])
    except (msgspec.ValidationError, msgspec.DecodeError):
        return first  # one event, not an array: its one problem is all there is
    problems: list[tuple[str, list[str | int]]] = []
    for index, raw in enumerate(items):
        try:
            event = _one_event.decode(raw)
            check_occurred(event.occurred, ["body", index, "occurred"])
            if event.payload:
                check_payload(event.payload, ["body", index, "payload"])
        except msgspec.ValidationError as exc:
            error = validation_error(exc)
            problems.append((error.message, ["body", index, *error.loc[1:]]))
        except EventDecodeError as exc:
            problems.append((exc.message, exc.loc))
    if not problems:
        return first
    message, loc = problems[0]
    return EventDecodeError(message, loc, unreadable=False, problems=problems)


def check_occurred(at: datetime, loc: list[str | int]) -> datetime:
    """The time in UTC; refuse one outside OCCURRED_MIN..OCCURRED_MAX, naming the field.

    In UTC because RFC 3339 allows offsets up to ±23:59 and PostgreSQL only up to ±15:59:
    the instant is what counts, and every store keeps UTC."""
    if not OCCURRED_MIN <= at <= OCCURRED_MAX:
        raise EventDecodeError(
            f"must be between {OCCURRED_MIN:%Y-%m-%d} and {OCCURRED_MAX:%Y-%m-%d}",
            loc,
            unreadable=False,
        )
    return at if at.utcoffset() == ZERO else at.astimezone(UTC)


def check_payload(payload: dict[str, Any], loc: list[str | int]) -> None:
    """Refuse a payload larger or more deeply nested than the limits, naming the field."""
    encoded = _encoder.encode(payload)
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise EventDecodeError(
            f"is {len(encoded)} bytes as JSON; the limit is {MAX_PAYLOAD_BYTES}",
            loc,
            unreadable=False,
        )
    # Only a payload with many containers can be too deep: count them (fast) before walking.
    if encoded.count(b"{") + encoded.count(b"[") > MAX_PAYLOAD_DEPTH:
        deepest = _depth(payload)
        if deepest > MAX_PAYLOAD_DEPTH:
            raise EventDecodeError(
                f"nests {deepest} levels deep; the limit is {MAX_PAYLOAD_DEPTH}",
                loc,
                unreadable=False,
            )


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest in `value` (1 for a flat object), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        deepest = max(deepest, level)
        stack.extend((c, level + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def too_deep() -> EventDecodeError:
    """A body nested deeper than JSON decoding goes: a 422, not a RecursionError's 500."""
    return EventDecodeError(
        f"the body nests objects and arrays too deeply (payloads: at most {MAX_PAYLOAD_DEPTH})",
        ["body"],
        unreadable=False,
    )


def check_no_nul(value: Any, loc: list[str | int]) -> None:
    """Refuse U+0000 anywhere: PostgreSQL cannot store it in text or jsonb.

    Walked with a stack, not recursion: however deeply the value nests."""
    stack: list[tuple[Any, list[str | int]]] = [(value, loc)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise EventDecodeError(
                    "the character U+0000 is not allowed", where, unreadable=False
                )
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                stack.append((child, [*where, key]))
                stack.append((key, where))
        elif isinstance(item, list):
            stack.extend((child, [*where, i]) for i, child in reversed(list(enumerate(item))))


_encoder = msgspec.json.Encoder()


def encode_json(value: Any) -> bytes:
    """Encode structs, dicts and lists as compact JSON."""
    return _encoder.encode(value)
