"""Deployments: where a flow's code is, reading its signature, checking parameters, registering.

A deployment points at code, not at a copy of it: a folder on the worker's machine, or a git
repository and ref that is fetched again each time a run starts (a mirror kept under the
cache folder, then the ref's tree exported into a folder of the run's own). The signature is
read by loading the entrypoint in a subprocess (`execute --describe`), never in the server's
own process, and kept as a JSON schema that every run's parameters are checked against.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import platformdirs

from coplane.rules.deployment import DeploymentSpec
from coplane.store.deployments import DeploymentRow

DESCRIBE_TIMEOUT_S = 60.0


class DeploymentError(Exception):
    """A deployment or run that cannot be accepted; `loc` names the field at fault."""

    def __init__(self, message: str, loc: list[str | int]) -> None:
        super().__init__(message)
        self.loc = loc
        self.index = 0  # the entry of a config file's `deployments:` it is about


def code_cache_dir() -> Path:
    """Where git mirrors of deployments' repositories are kept."""
    override = os.environ.get("COPLANE_CODE_CACHE")
    return Path(override) if override else Path(platformdirs.user_cache_dir("coplane")) / "code"


def _git(args: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeploymentError(f"git {args[0]} failed: {exc}", ["git_url"]) from None
    if done.returncode != 0:
        raise DeploymentError(
            f"git {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}", ["git_url"]
        )
    return done.stdout


def fetch_git_tree(url: str, ref: str, into: Path, cache: Path | None = None) -> str:
    """Fetch `url` into its cached mirror and export `ref`'s tree into `into`; the commit."""
    cache = cache or code_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    mirror = cache / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}.git"
    # workers on one machine share the mirror: one fetches at a time
    with (cache / f"{mirror.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (mirror / "HEAD").exists():
            _git(["fetch", "--prune", "--quiet", "origin", "+refs/*:refs/*"], cwd=mirror)
        else:
            _git(["clone", "--mirror", "--quiet", url, str(mirror)])
        try:
            commit = _git(["rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=mirror).strip()
        except DeploymentError:
            raise DeploymentError(f"git_ref {ref!r} is not in {url}", ["git_ref"]) from None
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit], cwd=mirror, capture_output=True,
            check=True,
        )  # fmt: skip
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return commit


@contextmanager
def code_root(working_dir: str | None, git_url: str | None, git_ref: str | None) -> Iterator[Path]:
    """The folder a deployment's code is in for one use: its working directory, or a fresh
    export of its git ref (removed afterwards)."""
    if git_url is None:
        root = Path(working_dir or ".")
        if not root.is_dir():
            raise DeploymentError(f"working_dir {root} is not a directory here", ["working_dir"])
        yield root
        return
    folder = Path(tempfile.mkdtemp(prefix="coplane-run-"))
    try:
        fetch_git_tree(git_url, git_ref or "main", folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def describe_entrypoint(entrypoint: str, root: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The flow's name and parameters' schema, read by `execute --describe` run in `root`."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "coplane.orchestrate.execute", "--describe", entrypoint],
            cwd=root, env={**os.environ, **env}, capture_output=True, text=True,
            timeout=DESCRIBE_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise DeploymentError(
            f"loading {entrypoint!r} took over {DESCRIBE_TIMEOUT_S:g} s", ["entrypoint"]
        ) from None
    # the answer is the last line: importing user code may print before it
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        detail = done.stderr.strip().splitlines()[-1:] or ["no answer"]
        raise DeploymentError(f"loading {entrypoint!r} failed: {detail[0]}", ["entrypoint"])
    if "error" in answer:
        raise DeploymentError(str(answer["error"]), ["entrypoint"])
    return answer


def check_parameters(
    schema: dict[str, Any], parameters: Mapping[str, Any], loc: list[str | int]
) -> None:
    """Raise DeploymentError naming the first parameter `schema` refuses (under `loc`)."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dict(parameters)), key=lambda e: list(e.path))
    if not errors:
        return
    error = errors[0]
    if error.path:
        name = str(error.path[0])
        raise DeploymentError(f"parameter {name}: {error.message}", [*loc, name])
    if error.validator == "required":
        missing = next(iter(error.validator_value), "")
        for m in error.validator_value:
            if m not in parameters:
                missing = m
                break
        raise DeploymentError(f"parameter {missing}: required, and has no default", [*loc, missing])
    if error.validator == "additionalProperties":
        known = set(schema.get("properties", {}))
        extra = sorted(set(parameters) - known)
        name = extra[0] if extra else ""
        raise DeploymentError(
            f"parameter {name}: the flow has no such parameter "
            f"(it takes: {', '.join(sorted(known)) or 'none'})",
            [*loc, name],
        )
    raise DeploymentError(error.message, loc)


def build_deployment(spec: DeploymentSpec, origin: str) -> DeploymentRow:
    """The row to store for `spec`: loads its entrypoint where its code is to read the
    signature, and checks the default parameters against it."""
    with code_root(spec.working_dir, spec.git_url, spec.git_url and spec.git_ref) as root:
        described = describe_entrypoint(spec.entrypoint, root, spec.env)
    schema = described.get("schema") or {"type": "object"}
    # defaults may leave out required parameters, for each run to give; not when schedules
    # make runs with the defaults alone
    partial = schema if spec.schedules else {k: v for k, v in schema.items() if k != "required"}
    check_parameters(partial, spec.parameters, ["parameters"])
    return DeploymentRow(
        name=spec.name,
        entrypoint=spec.entrypoint,
        flow=f"sdk.{described.get('flow') or spec.name}",
        signature={"schema": schema, "coplane_flow": bool(described.get("coplane_flow"))},
        parameters=spec.parameters,
        tags=spec.tags,
        work_pool=spec.work_pool,
        concurrency_limit=spec.concurrency_limit,
        retries=spec.retries,
        working_dir=spec.working_dir,
        git_url=spec.git_url,
        git_ref=spec.git_ref if spec.git_url else None,
        env=spec.env,
        infrastructure=spec.infrastructure,
        origin=origin,
    )
