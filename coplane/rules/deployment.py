"""What a deployment says: a flow entrypoint, its defaults, pool, code and schedule, as written.

The same model reads an entry of coplane.yaml's `deployments:` and the body of
`POST /api/deployments`, so both are checked alike; it is pure (it loads no code).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from coplane.rules.model import Cron, Duration, Name, TimeZone

# `path/to/flows.py:function` or `package.module:function`
_ENTRYPOINT = re.compile(
    r"^(?:[^:\s]+\.py|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):[A-Za-z_][A-Za-z0-9_]*$"
)


MAX_INTERVAL = timedelta(days=366)  # longer ones are a typo, and overflow date arithmetic


class Schedule(BaseModel):
    """When runs are created: a cron expression in an IANA time zone, or an interval."""

    model_config = ConfigDict(extra="forbid")
    cron: Cron | None = None
    timezone: TimeZone = "UTC"
    interval: Duration | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("a schedule has either `cron` (with `timezone`) or `interval`")
        if self.interval is not None and self.interval < timedelta(seconds=1):
            raise ValueError("an interval is at least 1s")
        if self.interval is not None and self.interval > MAX_INTERVAL:
            raise ValueError("an interval is at most 366d")
        return self


class DeploymentSpec(BaseModel):
    """One deployment as declared."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    entrypoint: str = Field(
        description="path/to/flows.py:function (relative to the code's root) or module:function"
    )
    parameters: dict[str, Any] = {}
    tags: list[str] = []
    work_pool: Name = "default"
    concurrency_limit: int | None = Field(None, ge=1)
    retries: int = Field(0, ge=0, le=100, description="new attempts of a crashed run")
    working_dir: str | None = Field(
        None, description="the code's root on the worker's machine (absolute)"
    )
    git_url: str | None = Field(None, description="a git repository to take the code from")
    git_ref: str = Field("main", description="branch, tag or commit of git_url")
    env: dict[str, str] = {}
    infrastructure: str = Field("process", min_length=1)
    schedules: list[Schedule] = []

    @field_validator("entrypoint")
    @classmethod
    def _check_entrypoint(cls, value: str) -> str:
        if not _ENTRYPOINT.match(value):
            raise ValueError(f"{value!r} is not path/to/file.py:function or module:function")
        return value

    @field_validator("working_dir")
    @classmethod
    def _check_working_dir(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"{value!r} is not an absolute path")
        return value

    @model_validator(mode="after")
    def _check(self) -> DeploymentSpec:
        if (self.working_dir is None) == (self.git_url is None):
            raise ValueError("a deployment's code is in `working_dir` or `git_url` (one of them)")
        return self
