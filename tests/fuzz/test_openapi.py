"""schemathesis against every operation of the OpenAPI schema: no 5xx, documented bodies."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from cryptography.fernet import Fernet
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.result import Err
from schemathesis.generation import GenerationMode

from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import open_store
from tests.factories import event_dict, events

# Per operation, valid and invalid cases. COPLANE_FUZZ_EXAMPLES raises it for a longer hunt.
EXAMPLES_PER_OPERATION = int(os.environ.get("COPLANE_FUZZ_EXAMPLES", "20"))


def _seed(url: str) -> None:
    """A pipeline run with a task, an updated asset and a failed check, so reads find rows."""
    store = open_store(url, pool_size=2)
    try:
        dag, task, asset = "airflow.prod.sales", "airflow.prod.sales.load", "s3://lake/orders"
        batch = events(
            event_dict("run.started", dag, run="r1", kind="pipeline"),
            event_dict(
                "run.completed",
                task,
                minutes=1,
                run="r1.load",
                kind="task",
                related=[
                    {"role": "parent", "id": dag},
                    {"role": "parent_run", "id": "r1"},
                    {"role": "output", "id": asset},
                ],
            ),
            event_dict("asset.updated", asset, minutes=2, related=[{"role": "run", "id": "r1"}]),
            event_dict("check.failed", asset, minutes=3, payload={"check": "not_null"}),
            event_dict("run.failed", dag, minutes=4, run="r1", payload={"error": "boom"}),
        )
        store.writer.submit(batch).result(timeout=30)
    finally:
        store.close()


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    """An app over a seeded SQLite file of this test's own; the app owns (and closes) its store.

    schemathesis runs the app's lifespan itself on the first request and ends it when the
    test ends, so the scheduler, SLA engine and dispatcher run as in a server.
    """
    url = f"sqlite:///{tmp_path / 'coplane.sqlite'}"
    _seed(url)
    # with a secret key, so that storing secrets is fuzzed past the "no key" refusal
    key = Fernet.generate_key().decode()
    return create_app(Settings(database_url=url, events_retention_days=0, secret_key=key))


# The schema as the app serves it. It is read from an app that is never started (serving
# /openapi.json through schemathesis would start its lifespan, and a store, at import);
# each test then sends its cases to its own started app.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(database_url="sqlite:///unused.sqlite")).openapi()
)
# One pytest parameter per operation, not `schema.parametrize()`: under pytest 9 its items
# all share one node id, which test workers (pytest-xdist) take for one test, and so ran one
# operation of the 39. Valid and invalid cases are drawn alike, as schemathesis does; an
# operation with nothing to make invalid draws valid ones only.
def _operations() -> list[Any]:
    """Every operation of the schema; an operation schemathesis cannot read fails collection."""
    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        found.append(result.ok())
    return found


OPERATIONS = _operations()


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_every_operation(operation: Any, app: FastAPI) -> None:
    """No input makes any operation answer 5xx, and documented responses match the schema."""
    cases = st.one_of(*(operation.as_strategy(generation_mode=m) for m in GenerationMode))

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        case.call_and_validate(app=app, checks=[not_a_server_error, response_schema_conformance])

    check()
