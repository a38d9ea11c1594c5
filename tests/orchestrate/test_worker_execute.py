"""`python -m coplane.orchestrate.execute` on its own: loading, checking and calling a flow,
and the exit status a worker reads (no server: nothing is reported)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coplane.orchestrate.execute import EntrypointError, load_entrypoint, validate_parameters
from coplane.orchestrate.infrastructure import load_infrastructure

FLOWS = """
import asyncio

def add(a: int, b: int = 2) -> None:
    print(a + b)

async def later(n: int) -> None:
    await asyncio.sleep(0)
    print("async", n)

def anything(**kwargs) -> None:
    print(sorted(kwargs))

value = 3
"""


def _execute(
    folder: Path, entrypoint: str | None, parameters: object
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "COPLANE_PARAMETERS": json.dumps(parameters)}
    if entrypoint is not None:
        env["COPLANE_ENTRYPOINT"] = entrypoint
    return subprocess.run([sys.executable, "-m", "coplane.orchestrate.execute"], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip


def test_execute_calls_the_flow_and_exits_with_its_outcome(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    done = _execute(tmp_path, "flows.py:add", {"a": "40"})
    assert done.returncode == 0 and done.stdout.strip() == "42"  # "40" validated to 40
    done = _execute(tmp_path, "flows.py:later", {"n": 1})
    assert done.returncode == 0 and done.stdout.strip() == "async 1"
    done = _execute(tmp_path, "flows:anything", {"x": 1, "y": 2})  # a module path
    assert done.returncode == 0 and done.stdout.strip() == "['x', 'y']"
    done = _execute(tmp_path, "flows.py:add", {"a": "x"})
    assert done.returncode == 1 and "parameter a:" in done.stderr
    done = _execute(tmp_path, "flows.py:add", {"a": 1, "c": 3})
    assert done.returncode == 1 and "parameter c:" in done.stderr
    done = _execute(tmp_path, "flows.py:add", [1])
    assert done.returncode == 1 and "must be a JSON object" in done.stderr
    done = _execute(tmp_path, None, {})
    assert done.returncode == 2 and "COPLANE_ENTRYPOINT is not set" in done.stderr


def test_loading_names_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    with pytest.raises(EntrypointError, match="'value' is not callable"):
        load_entrypoint("flows.py:value", tmp_path)
    with pytest.raises(EntrypointError, match="importing nosuchmodule failed"):
        load_entrypoint("nosuchmodule:f", tmp_path)
    with pytest.raises(EntrypointError, match=r"must be path/to/file\.py:function"):
        load_entrypoint("flows.py", tmp_path)
    add = load_entrypoint("flows.py:add", tmp_path)
    assert validate_parameters(add, {"a": 1}) == {"a": 1, "b": 2}
    with pytest.raises(EntrypointError) as missing:
        validate_parameters(add, {})
    assert missing.value.field == "a"


def test_an_unknown_infrastructure_kind_names_the_installed_ones() -> None:
    assert load_infrastructure("process") is not None
    with pytest.raises(KeyError, match=r"no infrastructure kind .kubernetes.; installed: .*proc"):
        load_infrastructure("kubernetes")
