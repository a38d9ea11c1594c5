"""The config file (coplane.yaml): its SLAs and alert channels, loaded with each problem's line.

Channel types are not listed here: each integration registers its config model
(coplane.alerts.registry.channel_models), and the `channels:` schema is built from them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from coplane.alerts.channels import ChannelBase
from coplane.alerts.registry import channel_models
from coplane.auth.vault import REFERENCE, check_name
from coplane.rules.automation import AutomationSpec
from coplane.rules.deployment import DeploymentSpec
from coplane.rules.model import SLA, Calendar
from coplane.security.files import UnreadableFile, read_secret_file, reason
from coplane.security.mask import masker

Loc = tuple[int | str, ...]


class CoplaneConfig(BaseModel):
    """The whole file: `slas:`, the `channels:` their `notify` entries name, the `calendars:`
    their `calendar` entries name, `deployments:` and `automations:`."""

    model_config = ConfigDict(extra="forbid")
    slas: list[SLA] = []
    channels: dict[str, ChannelBase] = {}
    calendars: dict[str, Calendar] = {}
    deployments: list[DeploymentSpec] = []
    automations: list[AutomationSpec] = []

    @field_validator("slas", "channels", "calendars", "deployments", "automations", mode="before")
    @classmethod
    def _empty_when_null(cls, value: Any, info: Any) -> Any:
        # `slas:` with every entry commented out is null in YAML: read it as none
        if value is None:
            return {} if info.field_name == "channels" else []
        return value


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a config file, at a 1-based line when known."""

    source: str
    line: int | None
    loc: Loc
    message: str

    def __str__(self) -> str:
        parts = [self.source if self.line is None else f"{self.source}:{self.line}"]
        if self.loc:
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.loc)
            parts.append(path.removeprefix("."))
        return ": ".join([*parts, self.message])


class ConfigError(Exception):
    """A config file with problems: all of them, one per line in `str()`."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def problem_at(path: Path, loc: Loc, message: str) -> ConfigProblem:
    """A problem found after validation (loading a deployment's code, say), at its line."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        root = None
    if root is None:
        return ConfigProblem(str(path), None, loc, message)
    return ConfigProblem(str(path), *_locate(root, loc), message)


def load_config(path: Path) -> CoplaneConfig:
    """Read and validate a config file; raise ConfigError naming each problem's line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = ConfigProblem(str(path), None, (), f"cannot read: {reason(exc)}")
        raise ConfigError([problem]) from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str) -> CoplaneConfig:
    """Validate config YAML; `source` names the file in problems."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = None if root is None else loader.construct_document(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        message = str(getattr(exc, "problem", None) or exc)
        raise ConfigError([ConfigProblem(source, line, (), f"invalid YAML: {message}")]) from None
    finally:
        loader.dispose()
    if root is None or data is None:
        return CoplaneConfig()
    if not isinstance(data, dict):
        message = "the file must be a mapping with slas: and channels:"
        raise ConfigError([ConfigProblem(source, root.start_mark.line + 1, (), message)])

    found: list[tuple[Loc, str]] = []
    data = _expand_env(data, (), found)
    data = _resolve_calendars(data, found)
    config: CoplaneConfig | None = None
    try:
        config = _schema().model_validate(data)
    except ValidationError as exc:
        found += [_describe(e) for e in exc.errors(include_url=False)]
    found += _check_names(data)
    if found or config is None:
        problems = [ConfigProblem(source, *_locate(root, loc), message) for loc, message in found]
        raise ConfigError(sorted(problems, key=lambda p: p.line or 0))
    masker.add(*credentials(config))
    return config


@cache
def _schema() -> type[CoplaneConfig]:
    """CoplaneConfig with `channels:` checked against every installed channel type's model."""
    models = tuple(channel_models().values())
    channel: Any = Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
    return create_model("CoplaneConfig", __base__=CoplaneConfig, channels=(dict[str, channel], {}))


def credentials(config: CoplaneConfig) -> list[str]:
    """The channels' credentials (their fields kept out of repr), to be masked wherever shown;
    `${secret:NAME}` references are not credentials themselves."""
    found: list[str] = []
    for channel in config.channels.values():
        for name, field in type(channel).model_fields.items():
            if field.repr:
                continue
            value = getattr(channel, name)
            values = value.values() if isinstance(value, dict) else [value]
            found += [v for v in values if isinstance(v, str) and not REFERENCE.search(v)]
    return found


_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TAGS = ("kind", "type")  # the discriminators of SLA and ChannelConfig


def _expand_env(value: Any, loc: Loc, found: list[tuple[Loc, str]]) -> Any:
    """`value` with `${NAME}` in its strings replaced from the environment: variable NAME, or
    else the content of the file variable NAME_FILE names (as Docker and Kubernetes mount
    secrets). `${secret:NAME}` references to stored secrets are checked and left in place."""
    if isinstance(value, dict):
        return {k: _expand_env(v, (*loc, k), found) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, (*loc, i), found) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    for name in REFERENCE.findall(value):
        problem = check_name(name)
        if problem:
            found.append((loc, f"${{secret:{name}}}: {problem}"))
    problems: list[str] = []
    values = {name: _env_value(name, problems) for name in set(_ENV_VAR.findall(value))}
    if problems:
        found.append((loc, "; ".join(sorted(problems))))
        return value
    return _ENV_VAR.sub(lambda m: values[m.group(1)] or "", value)


def _env_value(name: str, problems: list[str]) -> str | None:
    """Variable `name`, or the content of the file `name`_FILE names; None (and a problem)
    when neither is there."""
    if name in os.environ:
        return os.environ[name]
    path = os.environ.get(f"{name}_FILE")
    if path is None:
        problems.append(f"environment variable {name} is not set (nor {name}_FILE)")
        return None
    try:
        return read_secret_file(path)
    except UnreadableFile as exc:
        problems.append(f"{name}_FILE: {exc}")
        return None


def _describe(error: Any) -> tuple[Loc, str]:
    """A pydantic error as (loc, message), in the file's words."""
    loc: Loc = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    ctx = error.get("ctx", {})
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        tag = ctx["discriminator"].strip("'")
        loc = (*loc, tag)
        if error["type"] == "union_tag_invalid":
            message = f"{ctx['tag']!r} is not one of {ctx['expected_tags']}"
        else:
            message = (
                f"Field required: one of {_tags(SLA, tag) if tag == 'kind' else _channel_tags()}"
            )
    elif error["type"] == "extra_forbidden":
        top = "; the file has slas:, channels: and calendars:"
        message = "unknown key" + (top if len(loc) == 1 else "")
    return loc, message


def _tags(union: Any, field: str) -> str:
    """The values of a discriminated union's tag `field`, such as 'freshness', 'completion'."""
    members = get_args(get_args(union)[0])
    return ", ".join(repr(get_args(m.model_fields[field].annotation)[0]) for m in members)


def _channel_tags() -> str:
    """The installed channel types, as the `type:` of a channel may name them."""
    return ", ".join(repr(kind) for kind in channel_models())


def _resolve_calendars(data: dict[str, Any], found: list[tuple[Loc, str]]) -> dict[str, Any]:
    """`data` with each SLA's (and channel quiet period's) `calendar: NAME` replaced by that
    entry of `calendars:`.

    An SLA is stored with its calendar's definition, so its rule needs nothing else and a
    changed calendar changes (and re-evaluates) the SLAs using it. A calendar that is itself
    invalid is reported once, where it is defined.
    """
    calendars = data.get("calendars")
    defined = calendars if isinstance(calendars, dict) else {}

    def resolve(entry: Any, loc: Loc) -> Any:
        name = entry.get("calendar") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            return entry
        # A calendar that cannot be had is reported once; an empty (valid) one stands in for
        # it meanwhile, so that it raises no second problem where it is named.
        without = {**entry, "calendar": {}}
        if name not in defined:
            known = ", ".join(sorted(defined)) or "none are defined"
            message = f"no calendar named {name!r} in calendars: ({known})"
            found.append(((*loc, "calendar"), message))
            return without
        try:
            Calendar.model_validate(defined[name])
        except ValidationError:
            return without
        return {**entry, "calendar": defined[name]}

    out = dict(data)
    slas = data.get("slas")
    if isinstance(slas, list):
        out["slas"] = [resolve(sla, ("slas", i)) for i, sla in enumerate(slas)]
    channels = data.get("channels")
    if isinstance(channels, dict):
        out["channels"] = {}
        for name, channel in channels.items():
            quiet = channel.get("quiet") if isinstance(channel, dict) else None
            if isinstance(quiet, list):
                loc = ("channels", name, "quiet")
                quiet = [resolve(q, (*loc, j)) for j, q in enumerate(quiet)]
                channel = {**channel, "quiet": quiet}
            out["channels"][name] = channel
    return out


def _check_names(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """SLA names are unique, and every `notify` entry of an SLA, and every channel of an
    automation's `notify` action, names a channel of `channels:`."""
    channels = data.get("channels")
    defined = set(channels) if isinstance(channels, dict) else set()
    found: list[tuple[Loc, str]] = []
    if isinstance(channels, dict | None):
        found += _check_automation_channels(data.get("automations"), defined)
    slas = data.get("slas")
    if not isinstance(slas, list):
        return found
    names: set[str] = set()
    for i, sla in enumerate(slas):
        if not isinstance(sla, dict):
            continue
        name = sla.get("name")
        if isinstance(name, str):
            if name in names:
                found.append((("slas", i, "name"), f"another SLA is already named {name!r}"))
            names.add(name)
        notify = sla.get("notify")
        if isinstance(notify, list) and isinstance(channels, dict | None):
            for j, channel in enumerate(notify):
                if isinstance(channel, str) and channel not in defined:
                    message = _unknown_channel(channel, defined)
                    found.append((("slas", i, "notify", j), message))
    return found


def _unknown_channel(name: str, defined: set[str]) -> str:
    known = ", ".join(sorted(defined)) or "none are defined"
    return f"no channel named {name!r} in channels: ({known})"


def _check_automation_channels(automations: Any, defined: set[str]) -> list[tuple[Loc, str]]:
    """Every channel a `notify` action of `automations:` names is one of `defined`."""
    found: list[tuple[Loc, str]] = []
    for i, automation in enumerate(automations if isinstance(automations, list) else []):
        actions = automation.get("actions") if isinstance(automation, dict) else None
        for j, action in enumerate(actions if isinstance(actions, list) else []):
            if not isinstance(action, dict) or action.get("type") != "notify":
                continue
            names = action.get("channels")
            for k, name in enumerate(names if isinstance(names, list) else []):
                if isinstance(name, str) and name not in defined:
                    loc: Loc = ("automations", i, "actions", j, "channels", k)
                    found.append((loc, _unknown_channel(name, defined)))
    return found


def _locate(root: yaml.Node, loc: Loc) -> tuple[int, Loc]:
    """The 1-based line of the node at pydantic's `loc`, and `loc` without union tags.

    Mappings are entered by key (the line is the key's), sequences by index; a part naming
    no key is a union tag when it is the mapping's `kind`/`type`, else a missing field,
    which points at the mapping that lacks it.
    """
    node: yaml.Node | None = root
    line = root.start_mark.line
    path: list[int | str] = []
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            entries = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
            if str(part) in entries:
                key, node = entries[str(part)]
                line = key.start_mark.line
            elif any(entries[t][1].value == part for t in _TAGS if t in entries):
                continue
            else:
                node = None
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line
        else:
            node = None
        path.append(part)
    return line + 1, tuple(path)
