"""Cache keys of task runs: the default policy on the task's inputs and source, or the user's.

A task caches when it is declared with `cache=True`, a `cache_key_fn`, a `cache_expiration`
or `refresh_cache=True`. The default key is a hash of the task's qualified name, its source
code and its inputs, so editing the task or calling it with other inputs misses the cache,
and the same call anywhere that shares the result storage hits it. `cache_key_fn(context,
parameters)` gives the key instead (None: this call is not cached).

Inputs are hashed as JSON when they are JSON (sorted keys), else as their cloudpickle bytes.
An input that cannot be pickled makes the call uncacheable rather than failing it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

import cloudpickle

from coplane.orchestrate.context import RunContext

CacheKeyFn = Callable[[RunContext, dict[str, Any]], str | None]


class Unhashable(Exception):
    """An input has no stable hash: the call is not cached."""


def source_hash(fn: Callable[..., Any]) -> str:
    """A hash of a function's source (its bytecode when the source cannot be read)."""
    try:
        text = inspect.getsource(fn).encode()
    except (OSError, TypeError):  # made by exec, or in a REPL: its code and constants
        code = getattr(fn, "__code__", None)
        if code is None:
            text = repr(fn).encode()
        else:
            text = code.co_code + repr((code.co_consts, code.co_names)).encode()
    return hashlib.sha256(text).hexdigest()


def _default(value: Any) -> Any:
    try:
        return {"__pickle__": hashlib.sha256(cloudpickle.dumps(value)).hexdigest()}
    except Exception as exc:
        raise Unhashable(f"{type(value).__name__}: {exc}") from exc


def inputs_hash(parameters: Mapping[str, Any]) -> str:
    """A stable hash of a call's inputs; raises Unhashable when one cannot be hashed."""
    try:
        text = json.dumps(parameters, sort_keys=True, default=_default)
    except (TypeError, ValueError) as exc:  # e.g. a dict with keys of mixed types
        try:
            text = hashlib.sha256(cloudpickle.dumps(dict(parameters))).hexdigest()
        except Exception:
            raise Unhashable(str(exc)) from exc
    return hashlib.sha256(text.encode()).hexdigest()


def default_cache_key(task_key: str, source: str, parameters: Mapping[str, Any]) -> str:
    """The default policy: the task, its source and its inputs."""
    return hashlib.sha256(f"{task_key}\n{source}\n{inputs_hash(parameters)}".encode()).hexdigest()


def user_cache_key(fn: CacheKeyFn, ctx: RunContext, parameters: dict[str, Any]) -> str | None:
    """The key `cache_key_fn` gives, made safe as a file name (None: do not cache)."""
    key = fn(ctx, parameters)
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise TypeError(f"cache_key_fn returned {key!r}: expected a non-empty string or None")
    # the user's key becomes a file name: hash it, so any text is a valid, flat one
    return hashlib.sha256(key.encode()).hexdigest()
