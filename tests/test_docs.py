"""The README documents every setting, command and endpoint, and CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path

from typer.models import CommandInfo

from coplane.cli import app as cli_app
from coplane.server import create_app
from coplane.settings import SECRET_SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`COPLANE_{name.upper()}`" in README, f"COPLANE_{name.upper()} missing"
    for name in SECRET_SETTINGS:
        assert f"COPLANE_{name.upper()}_FILE" in README


def test_every_command_is_documented() -> None:
    def name(c: CommandInfo) -> str:
        assert c.callback is not None
        return c.name or c.callback.__name__.replace("_", "-")

    commands = [name(c) for c in cli_app.registered_commands]
    groups = {
        g.name: [name(c) for c in g.typer_instance.registered_commands]
        for g in cli_app.registered_groups
        if g.typer_instance is not None
    }
    for command in commands:
        assert f"`coplane {command}" in README, command
    for group, subs in groups.items():
        for sub in subs:
            assert f"`coplane {group} {sub}" in README, f"{group} {sub}"


def test_every_endpoint_is_documented() -> None:
    # the OpenAPI schema lists every route, however the routers are nested
    paths = create_app().openapi()["paths"]
    assert "/api/events" in paths and "/api/slas" in paths  # the check below checks something
    for path, operations in paths.items():
        for method in operations:
            assert f"`{method.upper()} {path}" in README, f"{method.upper()} {path}"


def test_ci_runs_the_readme_test_command() -> None:
    match = re.search(r"\*\*Install and run the tests\*\*.*?```sh\n(.+?)\n```", README, re.S)
    assert match, "README lacks the test command block"
    ci = (ROOT / ".ci" / "run").read_text()
    assert match.group(1) in ci.splitlines()
