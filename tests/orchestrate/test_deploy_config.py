"""Deployments declared in coplane.yaml: checked with their lines, stored, and reloaded."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.orchestrate.support import wait_state, write_flows

CONFIG = """\
slas: []
deployments:
  - name: hello
    entrypoint: flows.py:hello
    working_dir: {folder}
    parameters:
      name: from-yaml
    schedules:
      - cron: "0 6 * * *"
        timezone: Europe/Berlin
"""


def test_slas_check_names_each_bad_deployment_line(tmp_path: Path) -> None:
    config = tmp_path / "coplane.yaml"
    config.write_text(
        "deployments:\n"
        "  - name: a\n"
        "    entrypoint: flows.py\n"  # line 3
        "    working_dir: /srv/code\n"
        "  - name: b\n"
        "    entrypoint: flows.py:f\n"
        "    working_dir: /srv/code\n"
        "    schedules:\n"
        "      - cron: '0 25 * * *'\n"  # line 9
        "    colour: red\n"  # line 10
    )
    done = subprocess.run([sys.executable, "-m", "coplane", "slas", "check", str(config)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert f"{config}:3: deployments[0].entrypoint: " in done.stderr
    assert "is not path/to/file.py:function" in done.stderr
    assert f"{config}:9: deployments[1].schedules[0].cron: " in done.stderr
    assert f"{config}:10: deployments[1].colour: " in done.stderr


@pytest.fixture
def configured(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[
    tuple[LiveServer, Path, Path]
]:  # fmt: skip
    folder = write_flows(tmp_path / "code")
    config = tmp_path / "coplane.yaml"
    config.write_text(CONFIG.format(folder=folder))
    monkeypatch.setenv("COPLANE_CONFIG", str(config))
    s = LiveServer(db_url, tmp_path / "server.log")
    s.start()
    try:
        yield s, config, folder
    finally:
        s.stop()


@pytest.mark.slow
def test_file_deployments_load_run_and_reload(configured: tuple[LiveServer, Path, Path]) -> None:
    server, config, folder = configured
    d = httpx.get(f"{server.url}/api/deployments/hello").json()
    assert d["origin"] == "file" and d["parameters"] == {"name": "from-yaml"}
    assert d["schedules"][0]["cron"] == "0 6 * * *" and d["schedules"][0]["next_runs"]
    assert [r["state"] for r in d["runs"]] == ["scheduled"]  # the next 06:00, made ahead
    body = {"name": "hello", "entrypoint": "flows.py:boom", "working_dir": str(folder)}
    put = httpx.put(f"{server.url}/api/deployments/hello", json=body)
    assert put.status_code == 409 and "config file" in put.json()["detail"]
    assert httpx.delete(f"{server.url}/api/deployments/hello").status_code == 409

    run = httpx.post(f"{server.url}/api/deployments/hello/runs", json={}).json()
    assert wait_state(server, run["id"], "completed", "failed")["state"] == "completed"
    assert (folder / "out" / run["id"]).read_text() == "from-yaml 1"

    # a deployment whose function is not there: the reload names its line, nothing changes
    config.write_text(CONFIG.format(folder=folder).replace("flows.py:hello", "flows.py:gone"))
    resp = httpx.post(f"{server.url}/api/slas/reload")
    assert resp.status_code == 422
    assert f"{config}:4: deployments[0].entrypoint: " in resp.json()["detail"]
    assert httpx.get(f"{server.url}/api/deployments/hello").json()["entrypoint"] == (
        "flows.py:hello"
    )

    config.write_text(CONFIG.format(folder=folder).replace("name: hello", "name: renamed"))
    assert httpx.post(f"{server.url}/api/slas/reload").status_code == 200
    names = [d["name"] for d in httpx.get(f"{server.url}/api/deployments").json()["deployments"]]
    assert names == ["renamed"]  # the one the file no longer has is gone


def test_a_server_refuses_a_file_with_a_deployment_it_cannot_load(tmp_path: Path) -> None:
    config = tmp_path / "coplane.yaml"
    config.write_text(CONFIG.format(folder=tmp_path / "nowhere"))
    server = LiveServer(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "server.log",
                        config=config)  # fmt: skip
    with pytest.raises(RuntimeError, match=r"deployments\[0\]\.working_dir: "):
        server.start()
    server.stop()
    assert os.path.exists(tmp_path / "server.log")
