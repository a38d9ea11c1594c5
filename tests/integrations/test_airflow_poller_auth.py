"""The REST poller's authentication, with the real apache-airflow-client against a local API."""

from __future__ import annotations

import base64
import json
import time

from coplane.integrations.airflow.poller import AirflowReader, TokenSource
from tests.fake_http import FakeService, Reply, Request


def jwt(number: int) -> str:
    """A token that expires in an hour; `number` tells tokens apart."""
    claims = {"sub": "coplane", "exp": int(time.time()) + 3600, "n": number}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzUxMiJ9.{body}.signature"


class FakeAirflow:
    """POST /auth/token and GET /api/v2/dags/~/dagRuns; refuses the first token it issued,
    as an API server restarted with a new secret does."""

    def __init__(self) -> None:
        self.issued: list[str] = []

    def __call__(self, request: Request) -> Reply:
        if (request.method, request.path) == ("POST", "/auth/token"):
            assert request.json() == {"username": "admin", "password": "s3cret"}
            self.issued.append(jwt(len(self.issued)))
            return Reply(201, {"access_token": self.issued[-1]})
        assert (request.method, request.path) == ("GET", "/api/v2/dags/~/dagRuns")
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token != self.issued[-1] or len(self.issued) < 2:
            return Reply(401, {"detail": "Invalid JWT token"})
        return Reply(200, {"dag_runs": [], "total_entries": 0})


def test_a_refused_token_is_fetched_again_once() -> None:
    airflow = FakeAirflow()
    with FakeService(airflow) as fake:
        reader = AirflowReader(fake.url, TokenSource(fake.url, "admin", "s3cret"))
        try:
            assert list(reader.dag_runs(None)) == []
        finally:
            reader.close()
    assert len(airflow.issued) == 2  # the first token was refused, the second one worked
    runs = [r for r in fake.requests if r.path.endswith("/dagRuns")]
    assert [r.answered for r in runs] == [401, 200]
