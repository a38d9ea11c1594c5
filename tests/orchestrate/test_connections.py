"""Connections: set, loaded by a flow, rotated by setting them again; their secrets in no
answer, event, log line (the server's access log included) or page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from coplane.cli import app
from coplane.client import CoplaneClient
from coplane.orchestrate.connections import (
    Connection,
    ConnectionLoadError,
    GenericConnection,
    HttpTokenConnection,
    PostgresConnection,
    S3Connection,
    connection_types,
)
from coplane.security.fernet import generate_key
from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import Store
from tests.conftest import LiveServer
from tests.factories import event_dict

KEY = generate_key()
PASSWORD = "s3cr3t-Passw0rd-one"
ROTATED = "s3cr3t-Passw0rd-two"
TOKEN = "tok-9f8e7d6c5b4a"
runner = CliRunner()

FIELDS: dict[str, Any] = {
    "host": "db.internal",
    "database": "wh",
    "user": "etl",
    "password": PASSWORD,
}
WAREHOUSE: dict[str, Any] = {"type": "postgres", "fields": FIELDS}


@pytest.fixture
def keyed(store: Store, db_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, events_retention_days=0, secret_key=KEY)
    with TestClient(create_app(settings, store=store)) as c:
        yield c


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A live server with a secret key, its output (the access log too) in server.log."""
    live = LiveServer(
        db_url,
        tmp_path / "server.log",
        env={"COPLANE_SECRET_KEY": KEY, "COPLANE_LOG_LEVEL": "debug"},
    )
    live.start()
    try:
        yield live
    finally:
        live.stop()


def test_the_builtin_types_come_through_the_entry_point_group() -> None:
    assert {"generic", "postgres", "s3", "http"} <= set(connection_types())


def test_set_read_and_rotate_without_secrets_in_answers(keyed: TestClient) -> None:
    made = keyed.put("/api/connections/warehouse", json=WAREHOUSE)
    assert made.status_code == 201
    assert made.json()["fields"] == {
        "host": "db.internal",
        "port": 5432,
        "database": "wh",
        "user": "etl",
        "sslmode": None,
    }
    assert made.json()["secret_fields"] == ["password"]
    listed = keyed.get("/api/connections")
    one = keyed.get("/api/connections/warehouse")
    for answer in (made, listed, one):
        assert PASSWORD not in answer.text
    resolved = keyed.get("/api/connections/warehouse/resolved")
    assert resolved.json()["fields"]["password"] == PASSWORD
    assert resolved.headers["cache-control"] == "no-store"
    rotated = {**WAREHOUSE, "fields": {**FIELDS, "password": ROTATED}}
    assert keyed.put("/api/connections/warehouse", json=rotated).status_code == 200
    again = keyed.get("/api/connections/warehouse/resolved").json()["fields"]
    assert again["password"] == ROTATED
    assert keyed.delete("/api/connections/warehouse").status_code == 204
    assert keyed.delete("/api/connections/warehouse").status_code == 404
    gone = keyed.get("/api/connections/warehouse/resolved")
    assert gone.status_code == 404 and gone.json()["errors"][0]["loc"] == ["path", "name"]


def test_bad_connections_are_refused_naming_the_field_never_the_secret(
    keyed: TestClient,
) -> None:
    def refused(name: str, body: object) -> list[object]:
        answer = keyed.put(f"/api/connections/{name}", json=body)
        assert answer.status_code == 422, answer.text
        assert PASSWORD not in answer.text
        loc: list[object] = answer.json()["errors"][0]["loc"]
        return loc

    assert refused("wh", {"type": "oracle", "fields": {}}) == ["body", "type"]
    bad_port = {**FIELDS, "port": "many"}
    assert refused("wh", {"type": "postgres", "fields": bad_port}) == ["body", "fields", "port"]
    no_host = {k: v for k, v in FIELDS.items() if k != "host"}
    assert refused("wh", {"type": "postgres", "fields": no_host}) == ["body", "fields", "host"]
    extra = {**FIELDS, "passwd": PASSWORD}
    assert refused("wh", {"type": "postgres", "fields": extra}) == ["body", "fields", "passwd"]
    assert refused("no spaces", WAREHOUSE) == ["path", "name"]


def test_without_a_secret_key_secrets_are_refused_and_plain_ones_kept(client: TestClient) -> None:
    refused = client.put("/api/connections/warehouse", json=WAREHOUSE)
    assert refused.status_code == 409 and "COPLANE_SECRET_KEY" in refused.json()["detail"]
    plain = {"type": "generic", "fields": {"values": {"region": "eu-west-1"}}}
    assert client.put("/api/connections/plain", json=plain).status_code == 201
    assert client.get("/api/connections/plain/resolved").json()["fields"] == {
        "values": {"region": "eu-west-1"},
        "secrets": {},
    }


def test_a_flow_loads_what_the_cli_set_and_no_secret_leaks(
    server: LiveServer, tmp_path: Path
) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text(TOKEN + "\n")
    base = ["--server", server.url]
    done = runner.invoke(
        app,
        ["connections", "set", "warehouse", "--type", "postgres", "--field", "host=db.internal",
         "--field", "database=wh", "--field", "user=etl", "--field", "port=6432",
         "--secret", f"password={PASSWORD}", *base],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "secret fields: password" in done.output and PASSWORD not in done.output
    api = runner.invoke(
        app,
        ["connections", "set", "api", "--type", "http", "--field", "base_url=https://api.invalid",
         "--secret-file", f"token={secret_file}", *base],
    )  # fmt: skip
    assert api.exit_code == 0, api.output
    extra = runner.invoke(
        app,
        ["connections", "set", "misc", "--type", "generic", "--field", "region=eu",
         "--secret", f"api_key={TOKEN}", *base],
    )  # fmt: skip
    assert extra.exit_code == 0, extra.output

    with CoplaneClient(server.url) as client:
        wh = Connection.load("warehouse", client=client)
        assert isinstance(wh, PostgresConnection)
        assert wh.url() == f"postgresql://etl:{PASSWORD}@db.internal:6432/wh"
        assert PASSWORD not in repr(wh) and PASSWORD not in wh.model_dump_json()
        token = HttpTokenConnection.load("api", client=client)
        assert token.headers() == {"Authorization": f"Bearer {TOKEN}"}
        misc = GenericConnection.load("misc", client=client)
        assert misc.values == {"region": "eu"}
        assert misc.secrets["api_key"].get_secret_value() == TOKEN
        with pytest.raises(ConnectionLoadError, match="not a S3Connection"):
            S3Connection.load("warehouse", client=client)
        with pytest.raises(ConnectionLoadError, match="404"):
            Connection.load("nothing", client=client)
        # rotated in one place: the next load sees the new password
        again = runner.invoke(
            app,
            ["connections", "set", "warehouse", "--type", "postgres", "--field", "host=db.internal",
             "--field", "database=wh", "--field", "user=etl", "--secret", f"password={ROTATED}",
             *base],
        )  # fmt: skip
        assert again.exit_code == 0
        rotated = PostgresConnection.load("warehouse", client=client)
        assert rotated.password is not None and rotated.password.get_secret_value() == ROTATED

        # a flow that logs or reports a secret by mistake: stored masked, never in clear
        run_id = "00000000-0000-4000-8000-000000000001"
        client.request(
            "POST",
            "/api/logs",
            json={"logs": [{"run_id": run_id, "task_run_id": None, "level": "INFO",
                            "timestamp": "2026-11-02T08:00:00+00:00", "logger": "flow",
                            "message": f"connecting with {PASSWORD}"}]},
        ).raise_for_status()  # fmt: skip
    logs = httpx.get(f"{server.url}/api/runs/{run_id}/logs").text
    assert "connecting with ****" in logs and PASSWORD not in logs

    httpx.post(
        f"{server.url}/api/events", json=[event_dict("run.started", "sdk.flow.etl", run="r1")]
    ).raise_for_status()
    listed = runner.invoke(app, ["connections", "list", *base])
    assert listed.exit_code == 0 and "warehouse" in listed.output
    answers = [
        listed.output,
        httpx.get(f"{server.url}/api/connections").text,
        httpx.get(f"{server.url}/api/connections/warehouse").text,
        httpx.get(f"{server.url}/api/events").text,
        httpx.get(f"{server.url}/api/runs").text,
        httpx.get(f"{server.url}/").text,
        httpx.get(f"{server.url}/events").text,
        httpx.get(f"{server.url}/pipelines/sdk.flow.etl").text,
    ]
    server.stop()  # its whole log written out, the access log of every request above included
    written = server.log_path.read_text()
    assert "GET /api/connections/warehouse/resolved" in written  # the access log is there
    for text in [*answers, written]:
        for secret in (PASSWORD, ROTATED, TOKEN):
            assert secret not in text
    assert runner.invoke(app, ["connections", "delete", "misc", *base]).exit_code == 1  # stopped


def test_loading_needs_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COPLANE_URL", raising=False)
    with pytest.raises(ConnectionLoadError, match="COPLANE_URL"):
        Connection.load("warehouse")


def test_cli_errors_name_the_option(server: LiveServer) -> None:
    bad = runner.invoke(
        app,
        ["connections", "set", "x", "--type", "http", "--field", "nope", "--server", server.url],
    )
    assert bad.exit_code == 2 and "--field" in bad.output
    missing = runner.invoke(
        app,
        ["connections", "set", "x", "--type", "http", "--secret-file", "token=/nonexistent/t",
         "--server", server.url],
    )  # fmt: skip
    assert missing.exit_code == 2 and "/nonexistent/t" in missing.output
    refused = runner.invoke(
        app, ["connections", "set", "x", "--type", "http", "--server", server.url]
    )
    assert refused.exit_code == 2 and "422" in refused.output and "base_url" in refused.output


def test_secrets_rotate_rewraps_connections(keyed: TestClient, db_url: str) -> None:
    assert keyed.put("/api/connections/warehouse", json=WAREHOUSE).status_code == 201
    new = generate_key()
    env = {"COPLANE_DATABASE_URL": db_url, "COPLANE_SECRET_KEY": f"{new},{KEY}"}
    done = runner.invoke(app, ["secrets", "rotate"], env=env)
    assert done.exit_code == 0, done.output
    assert "1 connections" in done.output
    settings = Settings(database_url=db_url, events_retention_days=0, secret_key=new)
    store = keyed.app.state.store  # type: ignore[attr-defined]
    with TestClient(create_app(settings, store=store)) as only_new:
        fields = only_new.get("/api/connections/warehouse/resolved").json()["fields"]
    assert fields["password"] == PASSWORD
