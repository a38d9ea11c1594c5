"""Input built to break the server gets a 4xx naming where it is, on both backends: a NUL in
any query parameter, bodies nested far deeper than any producer nests."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from coplane.events.model import EventDecodeError, check_no_nul
from tests.factories import event_dict

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


def test_ids_that_look_alike_are_one_resource(client: TestClient) -> None:
    composed, decomposed = "wh.caf\u00e9", "wh.cafe\u0301"
    for rid in (composed, decomposed):
        sent = client.post("/api/events", json=event_dict("asset.updated", rid, kind="asset"))
        assert sent.status_code == 202
    assert len(client.get("/api/events", params={"resource": composed}).json()["events"]) == 2


@pytest.mark.parametrize(
    "rid", ["wh.\u200bsales", "wh.sales\u202e", "wh.\u2066x\u2069", "wh.\ufeffx", "wh.\tx"]
)
def test_invisible_characters_in_ids_are_422(client: TestClient, rid: str) -> None:
    own = client.post("/api/events", json=event_dict("asset.updated", rid, kind="asset"))
    assert own.status_code == 422
    assert own.json()["errors"][0]["loc"] == ["body", 0, "resource", "id"]
    related = event_dict("run.started", "etl.x", related=[{"role": "output", "id": rid}])
    answer = client.post("/api/events", json=[related, related])
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == ["body", 0, "related", 0, "id"]
    job = json.dumps({"namespace": "n", "name": rid})
    lineage = LINEAGE.format("1").replace('{"namespace":"n","name":"j"}', job)
    assert client.post("/api/v1/lineage", content=lineage).status_code == 422
