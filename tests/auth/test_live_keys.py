"""A real server with COPLANE_AUTH=keys and real producers: the OpenLineage client's api_key
auth, coplane's own client and the CLI send their keys the way users configure them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport
from typer.testing import CliRunner

from coplane.auth.keys import create_key
from coplane.cli import app as cli
from coplane.client import ClientError, CoplaneClient
from coplane.store import open_store
from tests.conftest import LiveServer
from tests.factories import event_dict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def keyed_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("keys")
    url = f"sqlite:///{folder / 'coplane.sqlite'}"
    server = LiveServer(url, folder / "server.log", env={"COPLANE_AUTH": "keys"})
    server.start()
    store = open_store(url)
    try:
        with store.connect() as conn:
            keys = {s: create_key(conn, s, [s])[1] for s in ("ingest", "read")}
        yield server, keys
    finally:
        store.close()
        server.stop()


def test_the_openlineage_client_sends_its_api_key(
    keyed_server: tuple[LiveServer, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, keys = keyed_server
    monkeypatch.setenv("OPENLINEAGE_CONFIG", str(tmp_path / "none.yml"))
    event = RunEvent(
        eventType=RunState.START,
        eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=str(uuid.uuid4())),
        job=Job(namespace="spark", name="keyed_job"),
    )
    for key in (keys["ingest"], "cpl_wrong"):
        transport = HttpTransport(
            HttpConfig(
                url=server.url,
                timeout=10,
                retry={"total": 0},
                auth=ApiKeyTokenProvider({"api_key": key}),
            )
        )
        client = OpenLineageClient(transport=transport)
        try:
            client.emit(event)
        except Exception:  # the client raises on a 401 in some versions and logs in others
            pass
        finally:
            client.close()
        event = RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=datetime.now(UTC).isoformat(),
            run=event.run,
            job=event.job,
        )
    stored = httpx.get(
        f"{server.url}/api/events",
        params={"resource": "spark/keyed_job"},
        headers={"Authorization": f"Bearer {keys['read']}"},
        timeout=10,
    ).json()
    assert [e["event"] for e in stored["events"]] == ["run.started"]  # not the wrong key's


def test_coplanes_client_and_cli_send_the_key(
    keyed_server: tuple[LiveServer, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, keys = keyed_server
    with CoplaneClient(server.url, api_key=keys["ingest"], retries=0) as client:
        assert client.send_events([event_dict("run.started", "etl.keyed", run="k1")]).accepted == 1
    with (
        CoplaneClient(server.url, api_key=keys["read"], retries=0) as client,
        pytest.raises(ClientError) as refused,
    ):
        client.send_events([event_dict("run.started", "etl.keyed", run="k2")])
    assert refused.value.status == 403
    monkeypatch.setenv("COPLANE_API_KEY", keys["read"])
    listed = CliRunner().invoke(cli, ["slas", "list", "--server", server.url])
    assert listed.exit_code == 0, listed.output
    monkeypatch.delenv("COPLANE_API_KEY")
    refused_cli = CliRunner().invoke(cli, ["slas", "list", "--server", server.url])
    assert refused_cli.exit_code == 1 and "401" in refused_cli.output
    assert os.environ.get("COPLANE_API_KEY") is None
