"""`coplane slas backtest FILE --since 30d`: the config file's SLAs replayed over the database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coplane.cli import app
from coplane.events.model import Event, Resource
from coplane.store import Store
from coplane.store.events import insert_events

runner = CliRunner()

CONFIG = """\
slas:
  - name: orders_fresh
    kind: freshness
    target: wh.orders
    max_age: 1h
  - name: other
    kind: freshness
    target: wh.other
    max_age: 1h
"""


@pytest.fixture
def config(tmp_path: Path, store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file, and a database where wh.orders was updated 10 h and 5 h ago."""
    monkeypatch.setenv("COPLANE_DATABASE_URL", db_url)
    now = datetime.now(UTC).replace(microsecond=0)
    with store.connect() as conn:
        for hours in (10, 5):
            at = now - timedelta(hours=hours)
            event = Event(occurred=at, event="asset.updated", resource=Resource(id="wh.orders"))
            insert_events(conn, [event], at, store.partitions)
    path = tmp_path / "coplane.yaml"
    path.write_text(CONFIG)
    return path


def test_prints_the_breaches_of_each_sla(config: Path) -> None:
    result = runner.invoke(app, ["slas", "backtest", str(config), "--since", "1d"])
    assert result.exit_code == 0, result.output
    # never updated from 23 h ago (the backtest starts 24 h ago) until the update 10 h ago,
    # stale from 9 h ago until the update 5 h ago, and again from 4 h ago on
    assert "orders_fresh: 3 breaches in 1d" in result.output
    assert "other: 1 breach in 1d" in result.output
    assert "never updated" in result.output and "no update since" in result.output


def test_one_sla_by_name_as_json(config: Path) -> None:
    result = runner.invoke(
        app, ["slas", "backtest", str(config), "--since", "1d", "--name", "orders_fresh", "--json"]
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert list(found) == ["orders_fresh"]
    never, first, second = found["orders_fresh"]["breaches"]
    assert never["resolved_at"] is not None and first["resolved_at"] is not None
    assert second["resolved_at"] is None


def test_unknown_name_exits_2(config: Path) -> None:
    result = runner.invoke(app, ["slas", "backtest", str(config), "--name", "nope"])
    assert result.exit_code == 2 and "no SLA named 'nope'" in result.output


@pytest.mark.parametrize("since", ["garbage", "30x", "", "-1d"])
def test_since_garbage_exits_2(config: Path, since: str) -> None:
    result = runner.invoke(app, ["slas", "backtest", str(config), "--since", since])
    assert result.exit_code == 2
    assert "--since" in result.output


def test_unknown_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["slas", "backtest", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert "missing.yaml" in result.output


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "coplane.yaml"
    path.write_text("slas:\n  - name: a\n    kind: freshness\n   target: x\n    max_age: 1h\n")
    result = runner.invoke(app, ["slas", "backtest", str(path)])
    assert result.exit_code == 2
    assert f"{path}:4: invalid YAML" in result.output
