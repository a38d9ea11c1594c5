"""Settings from the environment, secrets from *_FILE, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from coplane.cli import app
from coplane.settings import Settings

runner = CliRunner()


def test_defaults_need_no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("COPLANE_DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    s = Settings()
    assert s.database_url == f"sqlite:///{tmp_path / 'coplane' / 'coplane.sqlite'}"
    assert (s.host, s.port) == ("127.0.0.1", 4200)


def test_database_url_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("postgresql://coplane:s3cret@db:5432/coplane\n")
    monkeypatch.delenv("COPLANE_DATABASE_URL", raising=False)
    monkeypatch.setenv("COPLANE_DATABASE_URL_FILE", str(secret))
    assert Settings().database_url == "postgresql://coplane:s3cret@db:5432/coplane"


def test_the_variable_wins_over_its_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("postgresql://from-file/db")
    monkeypatch.setenv("COPLANE_DATABASE_URL", "sqlite:///direct.sqlite")
    monkeypatch.setenv("COPLANE_DATABASE_URL_FILE", str(secret))
    assert Settings().database_url == "sqlite:///direct.sqlite"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"COPLANE_DATABASE_URL_FILE": "/nonexistent/url"},
            "COPLANE_DATABASE_URL_FILE: cannot read /nonexistent/url: No such file",
        ),
        ({"COPLANE_DATABASE_URL": "sqlite:///"}, "needs a file path"),
        ({"COPLANE_PORT": "99999"}, "COPLANE_PORT"),
        ({"COPLANE_LOG_LEVEL": "loud"}, "COPLANE_LOG_LEVEL"),
    ],
)
def test_bad_settings_are_named_by_the_cli(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    monkeypatch.delenv("COPLANE_DATABASE_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert message in result.output


def test_a_setting_file_that_is_not_text_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    binary = tmp_path / "key"
    binary.write_bytes(b"\x80\x81 not a key")
    monkeypatch.setenv("COPLANE_SECRET_KEY_FILE", str(binary))
    result = runner.invoke(app, ["secrets", "list"])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert f"COPLANE_SECRET_KEY_FILE: cannot read {binary}: not UTF-8 text (byte 0)" in said
