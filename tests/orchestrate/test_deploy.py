"""Deploying flows through the API and the CLI: the signature is read where the code is, and
bad entrypoints and parameters are refused naming them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.orchestrate.support import deploy, start_run, wait_state, write_flows


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    s = LiveServer(db_url, tmp_path / "server.log")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _put(server: LiveServer, body: Mapping[str, object]) -> httpx.Response:
    return httpx.put(f"{server.url}/api/deployments/{body['name']}", json=body, timeout=60)


@pytest.mark.slow
def test_a_deployment_keeps_its_flows_signature_and_runs(
    server: LiveServer, tmp_path: Path
) -> None:
    folder = write_flows(tmp_path / "code")
    d = deploy(server, folder, "hello", "hello", parameters={"name": "sales"}, tags=["nightly"])
    assert d["flow"] == "sdk.hello" and d["work_pool"] == "default" and d["origin"] == "api"
    schema = d["signature"]["schema"]
    assert schema["required"] == ["name"] and schema["properties"]["n"]["type"] == "integer"

    run_id = start_run(server, "hello", n=3)
    run = wait_state(server, run_id, "completed", "failed")
    assert run["state"] == "completed", run
    assert run["pipeline"] == "sdk.hello" and run["source"] == "deployment"
    assert (folder / "out" / run_id).read_text() == "sales 3"
    # its output went to the server's log as it ran, line by line, with the run's id
    assert f"run [{run_id[:8]}] hello sales x3" in server.log_path.read_text()
    listed = httpx.get(f"{server.url}/api/runs", params={"pipeline": "sdk.hello"}).json()
    assert [r["id"] for r in listed["runs"]] == [run_id]
    assert httpx.get(f"{server.url}/api/deployments").json()["deployments"][0]["name"] == "hello"
    assert httpx.get(f"{server.url}/api/flow-runs/{run_id}").json()["remediates"] is None

    other = {"name": "other", "entrypoint": "flows.py:hello", "working_dir": str(folder)}
    mismatch = httpx.put(f"{server.url}/api/deployments/hello", json=other)
    assert mismatch.status_code == 422 and mismatch.json()["errors"][0]["loc"] == ["body", "name"]
    assert httpx.post(f"{server.url}/api/deployments", json=other).status_code == 201
    assert httpx.post(f"{server.url}/api/deployments", json=other).status_code == 409
    assert httpx.delete(f"{server.url}/api/deployments/other").status_code == 204
    assert httpx.get(f"{server.url}/api/deployments/other").status_code == 404
    unknown = "00000000-0000-4000-8000-000000000000"
    assert httpx.get(f"{server.url}/api/flow-runs/{unknown}").status_code == 404
    assert httpx.get(f"{server.url}/api/incidents/{unknown}/remediation").status_code == 404


@pytest.mark.slow
def test_bad_entrypoints_are_named(server: LiveServer, tmp_path: Path) -> None:
    folder = write_flows(tmp_path / "code")
    (folder / "broken.py").write_text("def f(:\n")
    cases = {
        "flows.py:nothere": "flows.py has no 'nothere'",
        "missing.py:f": "no file",
        "broken.py:f": "SyntaxError",
        "flows.py": "is not path/to/file.py:function",
    }
    for entrypoint, message in cases.items():
        body = {"name": "x", "entrypoint": entrypoint, "working_dir": str(folder)}
        resp = _put(server, body)
        assert resp.status_code == 422, (entrypoint, resp.text)
        error = resp.json()["errors"][0]
        assert error["loc"] == ["body", "entrypoint"] and message in error["msg"], entrypoint
    resp = _put(server, {"name": "x", "entrypoint": "f.py:f", "working_dir": "relative"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["loc"] == ["body", "working_dir"]
    resp = _put(server, {"name": "x", "entrypoint": "f.py:f", "working_dir": str(tmp_path / "no")})
    assert resp.status_code == 422 and resp.json()["errors"][0]["loc"] == ["body", "working_dir"]


@pytest.mark.slow
def test_parameters_are_checked_at_deploy_and_at_each_run(
    server: LiveServer, tmp_path: Path
) -> None:
    folder = write_flows(tmp_path / "code")
    body = {"name": "hello", "entrypoint": "flows.py:hello", "working_dir": str(folder)}
    resp = _put(server, {**body, "parameters": {"n": "many"}})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["loc"] == ["body", "parameters", "n"]
    resp = _put(server, {**body, "parameters": {"colour": "red"}})
    assert resp.status_code == 422 and "no such parameter" in resp.json()["detail"]
    assert resp.json()["errors"][0]["loc"] == ["body", "parameters", "colour"]
    assert _put(server, body).status_code == 200  # `name` may be left for each run to give
    resp = _put(server, {**body, "schedules": [{"interval": "1h"}]})  # not with a schedule
    assert resp.status_code == 422 and resp.json()["errors"][0]["loc"] == [
        "body", "parameters", "name"
    ]  # fmt: skip

    runs = f"{server.url}/api/deployments/hello/runs"
    resp = httpx.post(runs, json={"parameters": {}})
    assert resp.status_code == 422 and resp.json()["errors"][0]["loc"] == [
        "body", "parameters", "name"
    ]  # fmt: skip
    assert "required" in resp.json()["detail"]
    resp = httpx.post(runs, json={"parameters": {"name": "a", "n": "x"}})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["loc"] == ["body", "parameters", "n"]
    assert httpx.post(f"{server.url}/api/deployments/nope/runs", json={}).status_code == 404
    # nothing was queued by the refused requests
    assert httpx.get(f"{server.url}/api/flow-runs").json()["flow_runs"] == []


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coplane", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )  # fmt: skip


@pytest.mark.slow
def test_coplane_deploy_from_the_code_folder(server: LiveServer, tmp_path: Path) -> None:
    folder = write_flows(tmp_path / "code")
    done = _cli("deploy", "flows.py:hello", "--name", "hello", "--param", "name=cli",
                "--param", "n=2", "--server", server.url, cwd=folder)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "deployment hello: sdk.hello on pool default" in done.stdout
    d = httpx.get(f"{server.url}/api/deployments/hello").json()
    assert d["working_dir"] == str(folder) and d["parameters"] == {"name": "cli", "n": 2}

    done = _cli("deploy", "flows.py:hello", "--name", "hello", "--param", "n=two",
                "--server", server.url, cwd=folder)  # fmt: skip
    assert done.returncode == 2 and "parameter n" in done.stderr, done.stderr
    done = _cli("deploy", "flows.py:absent", "--name", "bad", "--server", server.url, cwd=folder)
    assert done.returncode == 2 and "flows.py has no 'absent'" in done.stderr
    done = _cli("deploy", "flows.py:hello", "--name", "x", "--param", "oops", "--server",
                server.url, cwd=folder)  # fmt: skip
    assert done.returncode == 2 and "--param 'oops'" in done.stderr


def _git(*args: str, cwd: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


@pytest.mark.slow
def test_a_git_deployment_runs_the_branch_as_it_is_when_the_run_starts(
    server: LiveServer, tmp_path: Path
) -> None:
    bare, work = tmp_path / "repo.git", tmp_path / "work"
    _git("init", "--bare", "--initial-branch=main", str(bare), cwd=tmp_path)
    _git("clone", str(bare), str(work), cwd=tmp_path)
    out = tmp_path / "versions"
    source = "from pathlib import Path\n\ndef flow(out: str) -> None:\n    {body}\n"
    (work / "pipelines").mkdir()
    (work / "pipelines" / "job.py").write_text(source.format(body="Path(out).write_text('v1')"))
    _git("add", ".", cwd=work)
    _git("commit", "-m", "v1", cwd=work)
    _git("push", "origin", "HEAD:main", cwd=work)

    body = {"name": "from-git", "entrypoint": "pipelines/job.py:flow", "git_url": str(bare),
            "git_ref": "main", "parameters": {"out": str(out)}}  # fmt: skip
    assert _put(server, body).status_code == 200
    first = start_run(server, "from-git")
    assert wait_state(server, first, "completed", "failed")["state"] == "completed"
    assert out.read_text() == "v1"

    (work / "pipelines" / "job.py").write_text(source.format(body="Path(out).write_text('v2')"))
    _git("commit", "-am", "v2", cwd=work)
    _git("push", "origin", "HEAD:main", cwd=work)
    second = start_run(server, "from-git")
    assert wait_state(server, second, "completed", "failed")["state"] == "completed"
    assert out.read_text() == "v2"  # the branch was fetched again, not a copy kept

    resp = _put(server, {**body, "git_ref": "no-such-branch"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["loc"] == ["body", "git_ref"]
