"""The documentation covers every setting, command and endpoint, the site builds without a
warning, and CI runs the README's test command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from typer.models import CommandInfo

from coplane.cli import app as cli_app
from coplane.server import create_app
from coplane.settings import SECRET_SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
# the hand-written pages (the generated references would list everything by construction)
DOCS = "\n".join(p.read_text() for p in sorted((ROOT / "docs").rglob("*.md")))


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`COPLANE_{name.upper()}`" in CONFIGURATION, f"COPLANE_{name.upper()} missing"
    for name in SECRET_SETTINGS:
        assert f"COPLANE_{name.upper()}_FILE" in CONFIGURATION


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
        assert f"`coplane {command}" in DOCS, command
    for group, subs in groups.items():
        for sub in subs:
            assert f"`coplane {group} {sub}" in DOCS, f"{group} {sub}"


def test_every_endpoint_is_documented() -> None:
    # the OpenAPI schema lists every route, however the routers are nested
    paths = create_app().openapi()["paths"]
    assert "/api/events" in paths and "/api/slas" in paths  # the check below checks something
    for path, operations in paths.items():
        for method in operations:
            assert f"`{method.upper()} {path}" in DOCS, f"{method.upper()} {path}"


def test_ci_runs_the_readme_test_command() -> None:
    match = re.search(r"\*\*Install and run the tests\*\*.*?```sh\n(.+?)\n```", README, re.S)
    assert match, "README lacks the test command block"
    ci = (ROOT / ".ci" / "run").read_text()
    assert match.group(1) in ci.splitlines()


def test_the_site_builds_with_no_warning(tmp_path: Path) -> None:
    # strict: a broken link or anchor, or a page left out of the navigation, fails the build
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    cli = (tmp_path / "cli" / "index.html").read_text()
    assert "the year to list" in cli  # an option's help: only the generated reference has it
    api = (tmp_path / "http-api" / "index.html").read_text()
    assert "Send log lines of flow and task runs" in api  # a route's summary, generated


def test_the_readme_is_short_and_links_into_the_docs() -> None:
    assert len(README.splitlines()) <= 250
    for target in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / target).is_file(), target
