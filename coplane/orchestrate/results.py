"""Task results kept through fsspec, so a cached result is shared by every machine that sees it.

A result is one file named by its cache key under the storage URL: a local folder by default
(`COPLANE_RESULT_STORAGE`, else `results` under the user cache directory), or any URL fsspec
opens (`s3://bucket/prefix` with s3fs installed, `memory://` in tests). The file is a JSON
header line (serializer, when it was written, when it expires, the run that wrote it) then
the serialized value. It is written under a temporary name and moved into place, so a
reader never sees half a result; two runs writing one key both write a whole file and the
later one wins, which is fine since both are the result for that key.
"""

from __future__ import annotations

import json
import os
import pickle
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import cloudpickle
import fsspec

Serializer = Literal["pickle", "json"]
SERIALIZERS: tuple[Serializer, ...] = ("pickle", "json")


class ResultError(Exception):
    """A result could not be written or read back (the task run itself succeeded)."""


def default_storage() -> str:
    """`COPLANE_RESULT_STORAGE`, else `results` under the user cache directory."""
    given = os.environ.get("COPLANE_RESULT_STORAGE")
    if given:
        return given
    from platformdirs import user_cache_dir

    return str(Path(user_cache_dir("coplane")) / "results")


def serialize(value: Any, serializer: Serializer) -> bytes:
    """`value` as bytes; pickle is cloudpickle's, so lambdas and local classes survive."""
    if serializer == "json":
        try:
            return json.dumps(value, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise ResultError(f"the result cannot be stored as JSON: {exc}") from exc
    return bytes(cloudpickle.dumps(value))


def deserialize(data: bytes, serializer: str) -> Any:
    if serializer == "json":
        return json.loads(data)
    if serializer == "pickle":
        return pickle.loads(data)
    raise ResultError(f"unknown serializer {serializer!r} in a stored result")


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A result read back, with when it was written and by which run."""

    value: Any
    written: datetime
    expires: datetime | None
    run_id: str | None


class ResultStore:
    """Reads and writes results under one fsspec URL."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_storage()
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self.root = root.rstrip("/")

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def read(self, key: str, now: datetime) -> StoredResult | None:
        """The result stored under `key`, or None when there is none or it has expired."""
        try:
            with self.fs.open(self._path(key), "rb") as f:
                header = json.loads(f.readline())
                data = f.read()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ResultError(f"cannot read the result {key} from {self.url}: {exc}") from exc
        expires = _time(header.get("expires"))
        if expires is not None and expires <= now:
            return None
        try:
            value = deserialize(data, str(header.get("serializer")))
        except Exception as exc:
            raise ResultError(f"cannot load the result {key} from {self.url}: {exc}") from exc
        written = _time(header.get("written")) or now
        return StoredResult(value, written, expires, header.get("run_id"))

    def write(
        self,
        key: str,
        value: Any,
        serializer: Serializer,
        *,
        now: datetime,
        expires: datetime | None,
        run_id: str | None,
    ) -> None:
        """Store `value` under `key` (replacing what was there)."""
        header = {
            "serializer": serializer,
            "written": now.isoformat(),
            "expires": expires.isoformat() if expires else None,
            "run_id": run_id,
        }
        body = json.dumps(header).encode() + b"\n" + serialize(value, serializer)
        path = self._path(key)
        tmp = f"{self.root}/.{key}.{uuid.uuid4().hex}.tmp"
        try:
            self.fs.makedirs(self.root, exist_ok=True)
            with self.fs.open(tmp, "wb") as f:
                f.write(body)
            self.fs.mv(tmp, path)
        except OSError as exc:
            raise ResultError(f"cannot write the result {key} to {self.url}: {exc}") from exc


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
