"""hypothesis on `POST /api/v1/lineage`: valid RunEvents are stored, invalid ones are a 4xx."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.test_events import JSON, aware_times, ids, text

# Per backend (the `client` fixture runs on SQLite and PostgreSQL).
EXAMPLES = 60
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def facet(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A facet: `_producer`, `_schemaURL` and the given fields, any of them left out."""
    base = {"_producer": st.just("https://example.com/p"), "_schemaURL": st.just(SCHEMA_URL)}
    return st.fixed_dictionaries({}, optional={**base, **fields})


# The facets the translator reads (spec facets, by name), and any others.
RUN_FACETS = st.fixed_dictionaries(
    {},
    optional={
        "parent": facet(
            job=st.fixed_dictionaries({"namespace": ids(1, 20), "name": ids(1, 20)}),
            run=st.fixed_dictionaries({"runId": st.uuids().map(str) | ids(1, 30)}),
        ),
        "errorMessage": facet(
            message=text(), programmingLanguage=text(max_size=10), stackTrace=text()
        ),
        "nominalTime": facet(
            nominalStartTime=aware_times().map(datetime.isoformat),
            nominalEndTime=aware_times().map(datetime.isoformat),
        ),
        "custom": JSON,
    },
)
JOB_FACETS = st.fixed_dictionaries(
    {},
    optional={
        "ownership": facet(owners=st.lists(st.fixed_dictionaries({"name": text()}), max_size=2)),
        "jobType": facet(jobType=text(max_size=10), integration=text(max_size=10)),
        "custom": JSON,
    },
)
DATASET_FACETS = st.fixed_dictionaries(
    {},
    optional={
        "dataQualityAssertions": facet(
            assertions=st.lists(
                st.fixed_dictionaries(
                    {"assertion": text(1, 20), "success": st.booleans()},
                    optional={"column": text(max_size=10)},
                ),
                max_size=3,
            )
        ),
        "outputStatistics": facet(rowCount=st.integers(0, 2**40), size=st.integers(0, 2**40)),
        "custom": JSON,
    },
)
DATASETS = st.lists(
    st.fixed_dictionaries(
        {"namespace": ids(1, 20), "name": ids(1, 40)},
        optional={
            "facets": DATASET_FACETS,
            "inputFacets": DATASET_FACETS,
            "outputFacets": DATASET_FACETS,
        },
    ),
    max_size=3,
)
RUN_EVENTS = st.fixed_dictionaries(
    {
        "eventTime": aware_times().map(datetime.isoformat),
        "run": st.fixed_dictionaries({}, optional={"facets": RUN_FACETS}),
        "job": st.fixed_dictionaries(
            {"namespace": ids(1, 30), "name": ids(1, 60)}, optional={"facets": JOB_FACETS}
        ),
        "producer": st.sampled_from(["https://github.com/OpenLineage/OpenLineage", ""]) | text(),
        "schemaURL": st.just(SCHEMA_URL),
    },
    optional={
        # optional in spec 2-0-x
        "eventType": st.sampled_from(["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]),
        "inputs": DATASETS,
        "outputs": DATASETS,
    },
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=FIXTURE_OK)
@given(event=RUN_EVENTS)
def test_valid_run_events_are_stored(client: TestClient, event: dict[str, Any]) -> None:
    """Any RunEvent built from the spec's fields is a 201, and its run event is stored."""
    run_id = str(uuid.uuid4())  # fresh per example, so examples never meet in the store
    event["run"]["runId"] = run_id
    r = client.post("/api/v1/lineage", json=event)
    assert r.status_code == 201, r.text
    body = r.json()
    # a dataset listed twice gives its checks twice, the second time as duplicates
    assert body["accepted"] >= 1
    stored = client.get("/api/events", params={"related": run_id}).json()["events"]
    assert stored, "the run event is not stored"


# Each makes a required field of a valid RunEvent invalid: (path, strategy for the new value,
# MISSING to delete it). `schemaURL` is required by the spec but not checked by coplane, which
# only reads the fields it needs (README "OpenLineage"), so it is not among them.
MISSING = object()
NOT_NULL_OR_STRING = st.integers() | st.booleans() | st.lists(st.integers(), max_size=2)
NOT_A_STRING = NOT_NULL_OR_STRING | st.none()
MUTATIONS: list[tuple[list[str | int], st.SearchStrategy[object]]] = [
    (["eventTime"], st.just(MISSING)),
    (["eventTime"], NOT_A_STRING),
    (["eventTime"], st.datetimes(datetime(1970, 1, 2)).map(datetime.isoformat)),  # naive
    (["eventTime"], text().map(lambda s: "z" + s)),
    (["run", "runId"], st.just(MISSING)),
    (["run", "runId"], NOT_A_STRING),
    (["run", "runId"], text().map(lambda s: "z" + s)),  # not a UUID
    (["run"], text() | st.integers()),
    (["job"], st.just(MISSING)),
    (["job"], text() | st.integers()),
    (["job", "namespace"], st.just(MISSING)),
    (["job", "namespace"], NOT_A_STRING | st.just("")),
    (["job", "name"], st.just(MISSING)),
    (["job", "name"], NOT_A_STRING | st.just("")),
    (["producer"], st.just(MISSING)),
    (["producer"], NOT_A_STRING),
    # eventType is optional in the spec: null is taken as absent, so it is not drawn here
    (["eventType"], NOT_NULL_OR_STRING | st.sampled_from(["start", "DONE", ""])),
    (["inputs"], text() | st.dictionaries(text(), text(), max_size=2)),
]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=FIXTURE_OK)
@given(event=RUN_EVENTS, mutation=st.sampled_from(MUTATIONS), data=st.data())
def test_invalid_run_events_are_a_4xx_naming_the_field(
    client: TestClient,
    event: dict[str, Any],
    mutation: tuple[list[str | int], st.SearchStrategy[object]],
    data: st.DataObject,
) -> None:
    """A missing or wrongly-typed required field is a 422 with the error body naming it."""
    event["run"]["runId"] = str(uuid.uuid4())
    path, values = mutation
    bad = copy.deepcopy(event)
    parent: Any = bad
    for step in path[:-1]:
        parent = parent[step]
    value = data.draw(values)
    if value is MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    r = client.post("/api/v1/lineage", json=bad)
    assert r.status_code == 422, r.text
    body = r.json()
    assert isinstance(body["detail"], str) and body["detail"]
    [error] = body["errors"]
    assert error["loc"] == ["body", *path], (error, path)
    assert isinstance(error["msg"], str) and error["msg"]
