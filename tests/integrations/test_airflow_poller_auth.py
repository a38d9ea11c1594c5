"""The REST poller's authentication, with the real apache-airflow-client against a local API."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from typer.testing import CliRunner

from coplane.cli import app as cli
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


def test_the_password_can_come_from_a_file(tmp_path: Path) -> None:
    password = tmp_path / "airflow-password"
    password.write_text("s3cret\n")
    airflow = FakeAirflow()
    runner = CliRunner()
    args = ["airflow", "poll", "--once", "--username", "admin", "--server", "http://127.0.0.1:9"]
    with FakeService(airflow) as fake:
        runner.invoke(cli, [*args, "--url", fake.url, "--password-file", str(password)])
        token = fake.requests[0]
    assert token.path == "/auth/token" and token.answered == 201
    assert token.json()["password"] == "s3cret"  # the file's line, without its newline


def test_a_password_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    args = ["airflow", "poll", "--once", "--url", "http://127.0.0.1:9", "--username", "admin"]
    done = CliRunner().invoke(cli, [*args, "--password-file", str(missing)])
    said = " ".join(done.output.split())
    assert done.exit_code == 2 and f"--password-file: cannot read {missing}" in said
    done = CliRunner().invoke(cli, args, env={"AIRFLOW_PASSWORD": ""})
    assert done.exit_code == 2 and "give --password, --password-file" in done.output
