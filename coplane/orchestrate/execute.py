"""Run one flow run of a deployment in this process: `python -m coplane.orchestrate.execute`.

This is the seam between the server side (deployments, workers) and the flow SDK. A worker
starts it in the deployment's working directory (a local folder, or a checkout of its git
repository at its ref) with the deployment's environment plus:

- `COPLANE_URL`, and `COPLANE_API_KEY` when the worker has one: where to report;
- `COPLANE_FLOW_RUN_ID`: the run's id as coplane stores it (the one `/api/runs/{id}` takes);
- `COPLANE_FLOW` and `COPLANE_FLOW_RUN_KEY`: the run's pipeline resource id (`sdk.<name>`,
  as the SDK names a flow) and its run key, so that events sent with that resource and
  `{"role": "run", "id": key}` land on that run (its id is derived from the two, see
  `coplane.events.derive.run_uuid`);
- `COPLANE_DEPLOYMENT`: the deployment's name;
- `COPLANE_ENTRYPOINT`: `path/to/flows.py:func` (relative to the working directory) or
  `package.module:func`;
- `COPLANE_PARAMETERS`: the run's parameters as a JSON object;
- `COPLANE_RELATED`: what caused the run (`[{"role": "cause", "id": "automation:<name>"}]`),
  a JSON list to add to the related resources of every event about the run, so that an
  automation's own runs never trigger it again (the SDK should carry it on likewise).

It loads the entrypoint, validates the parameters against its signature (a pydantic model
built from it) and calls it (an `async def` through `asyncio.run`). If the loaded object has
a truthy `__coplane_flow__` attribute it is a flow of the SDK, which reports its own `run.*`
events onto `COPLANE_FLOW_RUN_ID`; this module then reports nothing. For any other callable
it reports `run.started`, then `run.completed` or `run.failed` (with the traceback) itself,
through `coplane.client`. Exit status: 0 completed, 1 failed (reported), 2 bad invocation.

`python -m coplane.orchestrate.execute --describe ENTRYPOINT` prints, as JSON, the flow's
name and the JSON schema of its parameters: what a deployment stores to check parameters
against when a run is created. It runs where the code is, in a process of its own, so that
importing user code never touches the server's process.

This module runs in the user's environment: it imports only `coplane.client` of coplane.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from coplane.client import CoplaneClient

EXIT_COMPLETED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class EntrypointError(Exception):
    """An entrypoint that cannot be loaded, or parameters its signature refuses."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def load_entrypoint(entrypoint: str, root: Path) -> Callable[..., Any]:
    """The callable `entrypoint` names: `path/to/file.py:func` under `root`, or `module:func`."""
    target, sep, attr = entrypoint.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise EntrypointError(
            f"entrypoint {entrypoint!r} must be path/to/file.py:function or module:function"
        )
    if target.endswith(".py"):
        path = (root / target).resolve()
        if not path.is_file():
            raise EntrypointError(f"entrypoint {entrypoint!r}: no file {path}")
        # the file's own folder first, as `python path/to/file.py` would have it
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(f"coplane_flow_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise EntrypointError(f"entrypoint {entrypoint!r}: cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise EntrypointError(f"entrypoint {entrypoint!r}: importing {path} failed: "
                                  f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
    else:
        sys.path.insert(0, str(root))
        try:
            module = importlib.import_module(target)
        except Exception as exc:
            raise EntrypointError(
                f"entrypoint {entrypoint!r}: importing {target} failed: {type(exc).__name__}: {exc}"
            ) from exc
    func = getattr(module, attr, None)
    if func is None:
        raise EntrypointError(f"entrypoint {entrypoint!r}: {target} has no {attr!r}")
    if not callable(func):
        raise EntrypointError(f"entrypoint {entrypoint!r}: {attr!r} is not callable")
    return func  # type: ignore[no-any-return]


def is_coplane_flow(func: Callable[..., Any]) -> bool:
    """Whether `func` is a flow of the SDK, which reports its own run."""
    return bool(getattr(func, "__coplane_flow__", False))


def flow_name(func: Callable[..., Any]) -> str:
    """The flow's name: an SDK flow's `name`, else the function's."""
    name = getattr(func, "name", None)
    return name if isinstance(name, str) and name else str(getattr(func, "__name__", "flow"))


def parameters_model(func: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of `func`'s parameters, built from its signature."""
    fields: dict[str, Any] = {}
    for p in inspect.signature(func).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            continue
        annotation = Any if p.annotation is p.empty else p.annotation
        fields[p.name] = (annotation, ... if p.default is p.empty else p.default)
    extra = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(func).parameters.values())
    config = ConfigDict(extra="allow" if extra else "forbid", arbitrary_types_allowed=True)
    model: type[BaseModel] = create_model("Parameters", __config__=config, **fields)
    return model


def describe(func: Callable[..., Any]) -> dict[str, Any]:
    """What a deployment keeps of a flow: its name and its parameters' JSON schema."""
    model = parameters_model(func)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a default JSON cannot show is left out, not fatal
        try:
            schema = model.model_json_schema()
        except Exception:  # a parameter type JSON cannot describe: accept any value for it
            schema = {"type": "object"}
    return {"flow": flow_name(func), "coplane_flow": is_coplane_flow(func), "schema": schema}


def validate_parameters(func: Callable[..., Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments to call `func` with, or EntrypointError naming the parameter."""
    model = parameters_model(func)
    try:
        validated = model.model_validate(dict(parameters))
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else None
        raise EntrypointError(f"parameter {name}: {first['msg']}", name) from None
    return {**dict(validated), **(validated.model_extra or {})}


def _event(name: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    flow = os.environ.get("COPLANE_FLOW", "sdk.unknown")
    related = [
        {"role": "run", "id": os.environ.get("COPLANE_FLOW_RUN_KEY", "")},
        {"role": "source", "id": "deployment"},
    ]
    if deployment := os.environ.get("COPLANE_DEPLOYMENT"):
        related.append({"role": "deployment", "id": f"deployment.{deployment}"})
    try:
        causes = json.loads(os.environ.get("COPLANE_RELATED") or "[]")
    except ValueError:
        causes = []
    related += [r for r in causes if isinstance(r, dict) and {"id", "role"} <= r.keys()]
    return {
        "occurred": datetime.now(UTC).isoformat(),
        "event": name,
        "resource": {"id": flow, "kind": "pipeline", "name": flow.removeprefix("sdk.")},
        "related": related,
        "payload": payload or {},
    }


def _report(client: CoplaneClient | None, name: str, payload: dict[str, Any] | None = None) -> None:
    if client is not None:
        client.send_events([_event(name, payload)])


def run_from_environment(environ: Mapping[str, str]) -> int:
    """Run the flow run the environment describes; the exit status."""
    entrypoint = environ.get("COPLANE_ENTRYPOINT")
    if not entrypoint:
        print("COPLANE_ENTRYPOINT is not set", file=sys.stderr)
        return EXIT_USAGE
    url = environ.get("COPLANE_URL")
    client = CoplaneClient(url, api_key=environ.get("COPLANE_API_KEY") or None) if url else None
    try:
        try:
            parameters = json.loads(environ.get("COPLANE_PARAMETERS") or "{}")
            if not isinstance(parameters, dict):
                raise EntrypointError("COPLANE_PARAMETERS must be a JSON object")
            func = load_entrypoint(entrypoint, Path.cwd())
            kwargs = validate_parameters(func, parameters)
        except (EntrypointError, json.JSONDecodeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            _report(client, "run.failed", {"error": {"message": str(exc)}})
            return EXIT_FAILED
        own_events = not is_coplane_flow(func)
        if own_events:
            _report(client, "run.started", {"parameters": parameters})
        try:
            result = func(**kwargs)
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
        except BaseException as exc:
            tb = traceback.format_exc()
            print(tb, file=sys.stderr, end="")
            if own_events:
                message = f"{type(exc).__name__}: {exc}"
                _report(client, "run.failed", {"error": {"message": message, "traceback": tb}})
            return EXIT_FAILED
        if own_events:
            _report(client, "run.completed")
        return EXIT_COMPLETED
    finally:
        if client is not None:
            client.close()


async def _await(awaitable: Any) -> Any:
    return await awaitable


def main(argv: list[str]) -> int:
    """`execute` (a run, from the environment) or `execute --describe ENTRYPOINT`."""
    if argv[:1] == ["--describe"] and len(argv) == 2:
        try:
            print(json.dumps(describe(load_entrypoint(argv[1], Path.cwd()))))
        except EntrypointError as exc:
            print(json.dumps({"error": str(exc)}))
            return EXIT_FAILED
        return EXIT_COMPLETED
    if argv:
        print("usage: python -m coplane.orchestrate.execute [--describe ENTRYPOINT]",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    return run_from_environment(os.environ)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
