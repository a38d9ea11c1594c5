"""Caching: the default key, `cache_key_fn`, expiry, refresh, and results kept through fsspec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import fsspec
import httpx
import pytest

from coplane import flow, task
from coplane.orchestrate.context import RunContext
from tests.conftest import LiveServer
from tests.orchestrate.sdk import collected, names


def test_the_same_inputs_hit_the_cache_and_other_inputs_miss(tmp_path: Path) -> None:
    calls: list[int] = []

    @task(cache=True, result_storage=str(tmp_path / "results"))
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    @flow
    def squares() -> list[int]:
        return [square(2), square(2), square(3)]

    with collected() as reported:
        assert squares() == [4, 4, 9]
        assert squares() == [4, 4, 9]
    assert calls == [2, 3]
    states = [e["event"] for e in reported.events
              if e["resource"]["id"] == "sdk.squares.square" and e["event"] != "run.started"]
    assert states == ["run.completed", "run.cached", "run.completed"] + ["run.cached"] * 3
    hit = next(e for e in reported.events if e["event"] == "run.cached")
    assert hit["payload"]["result"] == "4"
    assert hit["payload"]["cached_from"]  # the task run that stored it


def test_an_expired_result_is_computed_again(tmp_path: Path) -> None:
    calls: list[int] = []

    @task(cache_expiration=0.5, result_storage=str(tmp_path))
    def stamp() -> int:
        calls.append(1)
        return len(calls)

    @flow
    def stamping() -> int:
        return stamp()

    with collected():
        assert stamping() == 1
        assert stamping() == 1  # cached
        time.sleep(0.6)
        assert stamping() == 2  # expired: run again, and stored again
        assert stamping() == 2


def test_refresh_cache_runs_and_replaces_the_stored_result(tmp_path: Path) -> None:
    calls: list[int] = []

    def body() -> int:
        calls.append(1)
        return len(calls)

    cached = task(cache=True, result_storage=str(tmp_path), name="count")(body)
    refreshing = cached.with_options(refresh_cache=True)

    @flow
    def counting(refresh: bool) -> int:
        return refreshing() if refresh else cached()

    with collected():
        assert counting(False) == 1
        assert counting(True) == 2
        assert counting(False) == 2


def test_cache_key_fn_decides_the_key_and_none_skips_the_cache(tmp_path: Path) -> None:
    calls: list[str] = []

    def by_table(ctx: RunContext, parameters: dict[str, Any]) -> str | None:
        assert ctx.task_name == "extract"
        if parameters["table"] == "volatile":
            return None
        return f"extract/{parameters['table']}"

    @task(cache_key_fn=by_table, result_storage=str(tmp_path))
    def extract(table: str, attempt: int) -> str:
        calls.append(table)
        return f"{table} rows"

    @flow
    def extracting() -> list[str]:
        return [extract("sales", 1), extract("sales", 2), extract("volatile", 1),
                extract("volatile", 1)]  # fmt: skip

    with collected():
        assert extracting() == ["sales rows"] * 2 + ["volatile rows"] * 2
    assert calls == ["sales", "volatile", "volatile"]


def test_a_changed_task_source_misses_the_cache(tmp_path: Path) -> None:
    results = str(tmp_path)

    def make(version: str) -> Any:
        namespace: dict[str, Any] = {}
        exec(f"def body():\n    return {version!r}\n", namespace)
        return task(cache=True, result_storage=results, name="versioned")(namespace["body"])

    @flow
    def versioned(t: Any) -> str:
        result: str = t()
        return result

    with collected() as reported:
        assert versioned(make("v1")) == "v1"
        assert versioned(make("v2")) == "v2"
    assert "run.cached" not in names(reported.events, "sdk.versioned.versioned")


def test_an_input_that_cannot_be_hashed_runs_uncached(tmp_path: Path) -> None:
    calls: list[int] = []

    @task(cache=True, result_storage=str(tmp_path))
    def uses_lock(lock: Any) -> int:
        calls.append(1)
        return 1

    @flow
    def locking() -> None:
        lock = threading.Lock()
        uses_lock(lock)
        uses_lock(lock)

    with collected():
        locking()
    assert len(calls) == 2


def test_results_go_through_an_fsspec_memory_filesystem_as_json() -> None:
    root = f"memory://coplane-test/{uuid.uuid4().hex}"
    calls: list[int] = []

    @task(cache=True, result_storage=root, result_serializer="json")
    def report() -> dict[str, Any]:
        calls.append(1)
        return {"rows": 3, "tables": ["a", "b"]}

    @flow
    def reporting() -> dict[str, Any]:
        return report()

    with collected():
        assert reporting() == {"rows": 3, "tables": ["a", "b"]}
        assert reporting() == {"rows": 3, "tables": ["a", "b"]}
    assert len(calls) == 1
    fs, path = fsspec.core.url_to_fs(root)
    [stored] = [p for p in fs.ls(path, detail=False) if not p.rsplit("/", 1)[1].startswith(".")]
    header, body = fs.cat(stored).split(b"\n", 1)
    assert json.loads(header)["serializer"] == "json"
    assert json.loads(body) == {"rows": 3, "tables": ["a", "b"]}


def test_a_result_json_cannot_hold_still_completes_the_run(tmp_path: Path) -> None:
    @task(cache=True, result_storage=str(tmp_path), result_serializer="json")
    def odd() -> object:
        return {1, 2}

    @flow
    def storing() -> object:
        return odd()

    with collected() as reported:
        assert storing() == {1, 2}
    [done] = [e for e in reported.events if e["event"] == "run.completed"
              and e["resource"]["id"] == "sdk.storing.odd"]  # fmt: skip
    assert "JSON" in done["payload"]["result_error"]


CROSS_PROCESS = textwrap.dedent("""
    import sys
    from coplane import flow, task

    @task(cache=True, result_storage=sys.argv[1])
    def expensive(n: int) -> int:
        with open(sys.argv[2], "a") as f:
            f.write("ran\\n")
        return n * 10

    @flow
    def shared_cache(n: int) -> int:
        return expensive(n)

    print(shared_cache(4))
""")


@pytest.mark.slow
def test_a_result_cached_by_one_process_is_reused_by_another(
    live_server: LiveServer, tmp_path: Path
) -> None:
    script = tmp_path / "cached_flow.py"
    script.write_text(CROSS_PROCESS)
    ran = tmp_path / "ran.txt"
    env = {**os.environ, "COPLANE_URL": live_server.url,
           "COPLANE_SPOOL_DIR": str(tmp_path / "spool")}  # fmt: skip
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "results"), str(ran)],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        assert out.stdout.strip() == "40"
    assert ran.read_text() == "ran\n"  # the second process did not run the task
    runs = httpx.get(f"{live_server.url}/api/runs",
                     params={"pipeline": "sdk.shared_cache.expensive"}).json()["runs"]  # fmt: skip
    assert sorted(r["state"] for r in runs) == ["cached", "completed"]
    cached = httpx.get(f"{live_server.url}/api/runs", params={"state": "cached"}).json()["runs"]
    assert [r["pipeline"] for r in cached] == ["sdk.shared_cache.expensive"]
    assert cached[0]["parent_run"]
