"""A real keyed server: an ingest key limited to some resources writes only those, and no key
forges the events coplane's server records itself."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from coplane.auth.keys import create_key
from coplane.cli import app as cli
from coplane.events.names import RESERVED_PREFIXES, is_reserved
from coplane.store import open_store
from tests.conftest import LiveServer
from tests.factories import event_dict


@pytest.fixture
def keyed(db_url: str, tmp_path: Path) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    server = LiveServer(db_url, tmp_path / "server.log", env={"COPLANE_AUTH": "keys"})
    server.start()
    store = open_store(db_url)
    try:
        with store.connect() as conn:
            keys = {
                "cron": create_key(conn, "cron", ["ingest"], resources=["airflow.prod.*"])[1],
                "any": create_key(conn, "sdk", ["ingest"])[1],
                "admin": create_key(conn, "admin", ["admin"])[1],
            }
        yield server, keys
    finally:
        store.close()
        server.stop()


def send(server: LiveServer, key: str, body: object, path: str = "/api/events") -> httpx.Response:
    return httpx.post(
        server.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def stored(server: LiveServer, key: str, resource: str) -> list[object]:
    found = httpx.get(
        f"{server.url}/api/events?resource={resource}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    events: list[object] = found.json()["events"]
    return events


def test_a_key_limited_to_resources_writes_only_those(
    keyed: tuple[LiveServer, dict[str, str]],
) -> None:
    server, keys = keyed
    mine = event_dict("run.failed", "airflow.prod.sales", run="r1", kind="pipeline")
    assert send(server, keys["cron"], mine).status_code == 202
    theirs = event_dict("asset.updated", "wh.finance.ledger", kind="asset")
    refused = send(server, keys["cron"], [mine, theirs])
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["loc"] == ["body", 1, "resource", "id"]
    assert refused.json()["detail"] == (
        "event 'asset.updated' about 'wh.finance.ledger': the key cron may send events only "
        "about airflow.prod.*"
    )
    assert stored(server, keys["admin"], "wh.finance.ledger") == []  # nothing of the batch
    assert len(stored(server, keys["admin"], "airflow.prod.sales")) == 1
    # the same through OpenLineage, and a ping of a monitor outside its resources
    lineage = {
        "eventType": "START",
        "eventTime": datetime.now(UTC).isoformat(),
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "finance", "name": "ledger"},
        "producer": "https://example.com/producer",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }
    assert send(server, keys["cron"], lineage, "/api/v1/lineage").status_code == 403
    batch = send(server, keys["cron"], [lineage], "/api/v1/lineage/batch").json()
    assert batch["summary"]["failed"] == 1
    assert "finance/ledger" in batch["failed_events"][0]["reason"]
    ping = httpx.post(
        f"{server.url}/ping/backup?create=1", headers={"Authorization": f"Bearer {keys['cron']}"}
    )
    assert ping.status_code == 403 and ping.json()["errors"][0]["loc"] == ["path", "resource", "id"]
    # an unlimited key still sends anything a producer sends
    assert send(server, keys["any"], theirs).status_code == 202


@pytest.mark.parametrize("name", ["remediation.requested", "automation.triggered"])
def test_no_key_forges_the_servers_own_events(
    keyed: tuple[LiveServer, dict[str, str]], name: str
) -> None:
    server, keys = keyed
    forged = event_dict(name, "airflow.prod.sales", payload={"incident": "x"})
    for key in ("cron", "any", "admin"):
        refused = send(server, keys[key], forged)
        assert refused.status_code == 403, key
        assert refused.json()["errors"][0]["loc"] == ["body", "event"]
        assert f"event {name!r}: names starting with" in refused.json()["detail"]
    assert stored(server, keys["admin"], "airflow.prod.sales") == []
    # the flow SDK's own run events are a producer's, and stay open to any ingest key
    run = event_dict("run.started", "sdk.flow.nightly", run="f1", kind="pipeline")
    assert send(server, keys["any"], run).status_code == 202


def test_an_open_server_takes_no_reserved_names_either(client: TestClient) -> None:
    forged = event_dict("remediation.requested", "etl.nightly")
    assert client.post("/api/events", json=forged).status_code == 403


def test_the_reserved_prefixes_are_one_list() -> None:
    assert RESERVED_PREFIXES == ("remediation.", "automation.")
    assert is_reserved("remediation.requested") and not is_reserved("run.remediation")


def test_keys_are_limited_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPLANE_DATABASE_URL", f"sqlite:///{tmp_path / 'c.sqlite'}")
    runner = CliRunner()
    made = runner.invoke(cli, ["keys", "create", "cron", "--resources", "airflow.prod.*,cron.x"])
    assert made.exit_code == 0, made.output
    assert "resources airflow.prod.*, cron.x" in made.stderr
    # piped (no terminal), a table is printed whole, however narrow rich's fallback width
    listed = runner.invoke(cli, ["keys", "list"]).stdout
    assert re.search(r"cron\W+ingest\W+airflow\.prod\.\*,cron\.x", listed)
    for bad in ("a*b", "*", " "):
        refused = runner.invoke(cli, ["keys", "create", "x", "--resources", bad])
        assert refused.exit_code == 2 and "--resources: resource pattern" in refused.stderr


def test_the_api_names_a_bad_resource_pattern(db_url: str) -> None:
    from coplane.server import create_app
    from coplane.settings import Settings

    store = open_store(db_url)
    try:
        with store.connect() as conn:
            admin = create_key(conn, "admin", ["admin"])[1]
        settings = Settings(database_url=db_url, events_retention_days=0, auth="keys")
        with TestClient(create_app(settings, store=store)) as c:
            auth = {"Authorization": f"Bearer {admin}"}
            body = {"name": "x", "scopes": ["ingest"], "resources": ["a*b"]}
            bad = c.post("/api/keys", json=body, headers=auth)
            assert bad.status_code == 422
            assert bad.json()["errors"][0]["loc"] == ["body", "resources"]
            body["resources"] = ["airflow.prod.*"]
            good = c.post("/api/keys", json=body, headers=auth)
            assert good.status_code == 201 and good.json()["resources"] == ["airflow.prod.*"]
    finally:
        store.close()
