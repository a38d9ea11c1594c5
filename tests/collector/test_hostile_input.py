"""Input built to break the server gets a 4xx naming where it is, on both backends: a NUL in
any query parameter, bodies nested far deeper than any producer nests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from coplane.events.model import EventDecodeError, check_no_nul

DEPTH = 10_000
DEEP = '{"a":' * DEPTH + "1" + "}" * DEPTH
EVENT = '{{"occurred":"2026-01-01T00:00:00Z","event":"x.y","resource":{{"id":"r"}},"payload":{}}}'
LINEAGE = (
    '{{"eventType":"START","eventTime":"2026-01-01T00:00:00Z","run":{{"runId":"a"}},'
    '"job":{{"namespace":"n","name":"j"}},"x":{}}}'
)


@pytest.mark.parametrize(
    "path", ["/api/events", "/api/runs", "/api/lineage", "/events", "/api/incidents"]
)
def test_a_nul_in_a_query_parameter_is_422(client: TestClient, path: str) -> None:
    for params in ({"resource": "a\x00b"}, {"node": "\x00", "state": "open"}):
        answer = client.get(path, params=params)
        assert answer.status_code == 422, answer.text
        [error] = answer.json()["errors"]
        assert error["loc"][0] == "query" and "U+0000" in error["msg"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/events", EVENT.format(DEEP)),
        ("/api/events", EVENT.format('{"s":"\\u0000","d":' + DEEP + "}")),
        ("/api/v1/lineage", LINEAGE.format(DEEP)),
        ("/api/v1/lineage/batch", "[" + LINEAGE.format(DEEP) + "]"),
    ],
)
def test_a_body_nested_ten_thousand_deep_is_422(client: TestClient, path: str, body: str) -> None:
    answer = client.post(path, content=body)
    assert answer.status_code == 422, answer.text
    assert "nests objects and arrays too deeply" in answer.json()["detail"]
    assert client.get("/api/events").json()["events"] == []


def test_nul_is_found_however_deep() -> None:
    value: object = "ok\x00"
    for _ in range(DEPTH):
        value = {"a": [value]}
    with pytest.raises(EventDecodeError) as caught:
        check_no_nul(value, ["body"])
    assert caught.value.loc[:3] == ["body", "a", 0] and len(caught.value.loc) == 1 + 2 * DEPTH
