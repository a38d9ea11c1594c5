"""Secrets stored encrypted at rest: the vault, rotation, `${secret:NAME}` in channels, the API
and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from coplane.alerts.channels import ChannelConfig
from coplane.alerts.dispatcher import Dispatcher
from coplane.alerts.notifier import Alert, Notifier
from coplane.auth.keys import create_key
from coplane.auth.vault import (
    SecretError,
    Vault,
    delete_secret,
    list_secrets,
    references,
)
from coplane.cli import app as cli
from coplane.integrations.slack.config import SlackChannel
from coplane.server import create_app
from coplane.settings import Settings
from coplane.slas.config import ConfigError, parse_config
from coplane.store import Store
from coplane.store.channels import list_channel_states
from coplane.store.dialects import Conn
from coplane.store.errors import NotFound
from tests.alerts.test_dispatcher import Harness, Recorder

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
TOKEN = "xoxb-1111-2222-secret-token"


def raw_values(conn: Conn) -> list[str]:
    return [r["value"] for r in conn.query("SELECT value FROM secrets")]


# -- the vault ---------------------------------------------------------------------------------


def test_a_stored_secret_is_encrypted_and_reads_back(conn: Conn) -> None:
    vault = Vault(NEW_KEY)
    assert vault.put(conn, "slack-token", TOKEN) is True
    assert vault.get(conn, "slack-token") == TOKEN
    [stored] = raw_values(conn)
    assert TOKEN not in stored  # a copy of the database does not hold it
    assert Fernet(NEW_KEY.encode()).decrypt(stored.encode()).decode() == TOKEN
    assert vault.put(conn, "slack-token", TOKEN + "-2") is False  # replaced, not added
    assert vault.get(conn, "slack-token") == TOKEN + "-2"
    [info] = list_secrets(conn)
    assert info.name == "slack-token" and info.updated >= info.created
    assert set(info.json()) == {"name", "created", "updated"}


def test_another_key_cannot_read_and_no_key_cannot_store(conn: Conn) -> None:
    Vault(OLD_KEY).put(conn, "pd", "routing-key-1234")
    with pytest.raises(SecretError, match="'pd' cannot be decrypted"):
        Vault(NEW_KEY).get(conn, "pd")
    with pytest.raises(SecretError, match="no COPLANE_SECRET_KEY is set"):
        Vault(None).put(conn, "pd", "routing-key-1234")
    with pytest.raises(SecretError, match="'other' is not stored"):
        Vault(OLD_KEY).get(conn, "other")


def test_names_and_values_are_checked(conn: Conn) -> None:
    vault = Vault(NEW_KEY)
    with pytest.raises(ValueError, match="is not a secret name"):
        vault.put(conn, "has space", "value-123")
    with pytest.raises(ValueError, match="cannot be empty"):
        vault.put(conn, "empty", "")
    with pytest.raises(ValueError, match="at most 65536 bytes"):
        vault.put(conn, "big", "x" * 65537)
    assert raw_values(conn) == []


def test_rotation_re_encrypts_under_the_first_key(conn: Conn) -> None:
    Vault(OLD_KEY).put(conn, "a", "value-aaaa")
    Vault(OLD_KEY).put(conn, "b", "value-bbbb")
    before = raw_values(conn)
    assert Vault(f"{NEW_KEY},{OLD_KEY}").rotate(conn) == 2
    assert raw_values(conn) != before
    only_new = Vault(NEW_KEY)  # the old key can now be dropped
    assert [only_new.get(conn, n) for n in ("a", "b")] == ["value-aaaa", "value-bbbb"]


def test_rotation_is_all_or_nothing_when_a_secret_cannot_be_opened(conn: Conn) -> None:
    Vault(OLD_KEY).put(conn, "a", "value-aaaa")
    lost = Fernet.generate_key().decode()
    Vault(lost).put(conn, "b", "value-bbbb")
    before = raw_values(conn)
    with pytest.raises(SecretError, match="no key in COPLANE_SECRET_KEY decrypts 'b'"):
        Vault(f"{NEW_KEY},{OLD_KEY}").rotate(conn)
    assert raw_values(conn) == before


def test_deleting_an_unknown_secret_is_not_found(conn: Conn) -> None:
    Vault(NEW_KEY).put(conn, "a", "value-aaaa")
    delete_secret(conn, "a")
    with pytest.raises(NotFound, match="no secret named 'a'"):
        delete_secret(conn, "a")


def test_a_bad_secret_key_setting_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="key 2 of 2 is not a Fernet key") as caught:
        Settings(secret_key=f"{NEW_KEY},not-a-key-at-all")
    assert "not-a-key-at-all" not in str(caught.value)


def test_the_secret_key_can_come_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "key"
    path.write_text(NEW_KEY + "\n")
    monkeypatch.setenv("COPLANE_SECRET_KEY_FILE", str(path))
    assert Settings().secret_key == NEW_KEY
    assert NEW_KEY not in repr(Settings())


# -- references in the config file ---------------------------------------------------------


SLACK_WITH_REFERENCE = """
channels:
  slack:
    type: slack
    token: ${secret:slack-token}
    channel: "#alerts"
"""


def test_a_reference_stays_in_the_loaded_config_and_resolves_from_the_store(conn: Conn) -> None:
    config = parse_config(SLACK_WITH_REFERENCE, "coplane.yaml")
    channel = config.channels["slack"]
    assert isinstance(channel, SlackChannel) and channel.token == "${secret:slack-token}"
    assert references(channel.model_dump()) == {"slack-token"}
    vault = Vault(NEW_KEY)
    vault.put(conn, "slack-token", TOKEN)
    resolved = vault.resolve_channel(conn, channel)
    assert isinstance(resolved, SlackChannel) and resolved.token == TOKEN
    assert channel.token == "${secret:slack-token}"  # the loaded config is left as it was


def test_a_malformed_reference_is_a_config_problem_with_its_line() -> None:
    text = SLACK_WITH_REFERENCE.replace("${secret:slack-token}", "${secret:slack token}")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "coplane.yaml")
    assert "coplane.yaml:5: channels.slack.token: ${secret:slack token}: 'slack token'" in str(
        caught.value
    )


def test_an_env_reference_reads_the_file_its_FILE_variable_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    monkeypatch.delenv("SLACK_TOKEN", raising=False)
    monkeypatch.setenv("SLACK_TOKEN_FILE", str(path))
    text = SLACK_WITH_REFERENCE.replace("${secret:slack-token}", "${SLACK_TOKEN}")
    channel = parse_config(text, "coplane.yaml").channels["slack"]
    assert isinstance(channel, SlackChannel) and channel.token == TOKEN
    monkeypatch.setenv("SLACK_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"coplane.yaml:5: .*SLACK_TOKEN_FILE: cannot read"):
        parse_config(text, "coplane.yaml")
    monkeypatch.delenv("SLACK_TOKEN_FILE")
    with pytest.raises(ConfigError, match="SLACK_TOKEN is not set"):
        parse_config(text, "coplane.yaml")


# -- the dispatcher --------------------------------------------------------------------------


class SecretHarness(Harness):
    """Recording channels built from the resolved config, so a test sees what was resolved."""

    def __init__(self, store: Store, vault: Vault, **channels: ChannelConfig) -> None:
        self.built: list[ChannelConfig] = []
        self.store = store
        self.recorders = {name: Recorder() for name in channels}
        self.configs = dict(channels)
        self.dispatcher = Dispatcher(
            store, channels, "https://coplane.example.com/", build=self._build, vault=vault
        )

    def _build(self, config: ChannelConfig) -> Notifier:
        self.built.append(config)
        return self.recorders["slack"]


@pytest.fixture
def secret_harness(store: Store) -> Iterator[SecretHarness]:
    channel = parse_config(SLACK_WITH_REFERENCE, "coplane.yaml").channels["slack"]
    h = SecretHarness(store, Vault(NEW_KEY), slack=channel)
    yield h
    h.dispatcher.stop()


def test_a_missing_secret_disables_the_channel_until_it_is_set(
    secret_harness: SecretHarness, store: Store
) -> None:
    h = secret_harness
    h.breach(h.sla())
    h.run()
    [note] = h.notifications()
    assert note["status"] == "dead"
    assert "secret 'slack-token' is not stored" in note["last_error"]
    with store.connect() as conn:
        state = list_channel_states(conn)["slack"]
        assert state["disabled"] is not None and "slack-token" in state["last_error"]
        Vault(NEW_KEY).put(conn, "slack-token", TOKEN)
    h.breach(h.sla("other"))
    h.run()  # setting the secret changed the channel's fingerprint: it is enabled again
    with store.connect() as conn:
        assert list_channel_states(conn)["slack"]["disabled"] is None
    [alert] = h.recorders["slack"].sent
    assert isinstance(alert, Alert) and alert.sla == "other"
    [built] = h.built
    assert isinstance(built, SlackChannel) and built.token == TOKEN


def test_a_secret_set_again_rebuilds_the_notifier(
    secret_harness: SecretHarness, store: Store
) -> None:
    h = secret_harness
    with store.connect() as conn:
        Vault(NEW_KEY).put(conn, "slack-token", TOKEN)
    h.breach(h.sla("one"))
    h.run()
    with store.connect() as conn:
        Vault(NEW_KEY).put(conn, "slack-token", TOKEN + "-new")
    h.breach(h.sla("two"))
    h.run()
    tokens = [c.token for c in h.built if isinstance(c, SlackChannel)]
    assert tokens == [TOKEN, TOKEN + "-new"]
    assert [a.sla for a in h.recorders["slack"].sent] == ["one", "two"]


# -- the API ---------------------------------------------------------------------------------


@pytest.fixture
def api(store: Store, db_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, events_retention_days=0, secret_key=NEW_KEY)
    with TestClient(create_app(settings, store=store)) as c:
        yield c


def test_the_api_stores_lists_and_deletes_without_ever_answering_a_value(
    api: TestClient, store: Store
) -> None:
    created = api.put("/api/secrets/slack-token", json={"value": TOKEN})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "slack-token" and TOKEN not in created.text
    replaced = api.put("/api/secrets/slack-token", json={"value": TOKEN + "-2"})
    assert replaced.status_code == 200 and TOKEN not in replaced.text
    listed = api.get("/api/secrets")
    assert [s["name"] for s in listed.json()["secrets"]] == ["slack-token"]
    assert TOKEN not in listed.text
    with store.connect() as conn:
        assert Vault(NEW_KEY).get(conn, "slack-token") == TOKEN + "-2"
    assert api.delete("/api/secrets/slack-token").status_code == 204
    gone = api.delete("/api/secrets/slack-token")
    assert gone.status_code == 404 and "no secret named 'slack-token'" in gone.json()["detail"]
    assert gone.json()["errors"][0]["loc"] == ["path", "name"]


@pytest.mark.parametrize(
    ("path", "body", "status", "loc", "says"),
    [
        ("/api/secrets/has%20space", {"value": "abcdefgh"}, 422, ["path", "name"], "not a secret"),
        ("/api/secrets/ok", {"value": ""}, 422, ["body", "value"], "value"),
        ("/api/secrets/ok", {}, 422, ["body", "value"], "value"),
    ],
)
def test_the_api_names_the_field_of_a_bad_secret(
    api: TestClient, path: str, body: Any, status: int, loc: list[str], says: str
) -> None:
    resp = api.put(path, json=body)
    assert resp.status_code == status, resp.text
    assert says in resp.json()["detail"]
    assert resp.json()["errors"][0]["loc"][: len(loc)] == loc


def test_the_api_without_a_secret_key_says_how_to_make_one(store: Store, db_url: str) -> None:
    settings = Settings(database_url=db_url, events_retention_days=0)
    with TestClient(create_app(settings, store=store)) as c:
        resp = c.put("/api/secrets/a", json={"value": "abcdefgh"})
    assert resp.status_code == 409
    assert "no COPLANE_SECRET_KEY is set" in resp.json()["detail"]
    assert "generate-key" in resp.json()["detail"]


def test_only_admin_keys_reach_the_secrets(store: Store, db_url: str) -> None:
    settings = Settings(
        database_url=db_url, events_retention_days=0, secret_key=NEW_KEY, auth="keys"
    )
    with store.connect() as conn:
        keys = {s: create_key(conn, s, [s])[1] for s in ("ingest", "read", "admin")}
    with TestClient(create_app(settings, store=store)) as c:
        for scope, key in keys.items():
            headers = {"Authorization": f"Bearer {key}"}
            listed = c.get("/api/secrets", headers=headers)
            put = c.put("/api/secrets/a", json={"value": "abcdefgh"}, headers=headers)
            expected = 200 if scope == "admin" else 403
            assert listed.status_code == expected, (scope, listed.text)
            assert put.status_code in ((201, 200) if scope == "admin" else (403,)), scope


# -- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("COPLANE_DATABASE_URL", db_url)
    monkeypatch.setenv("COPLANE_SECRET_KEY", NEW_KEY)
    return {}


def test_the_cli_sets_lists_rotates_and_deletes(
    cli_env: dict[str, str], store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    value = tmp_path / "token"
    value.write_text(TOKEN + "\n")
    result = runner.invoke(cli, ["secrets", "set", "slack-token", "--value-file", str(value)])
    assert result.exit_code == 0, result.output
    assert "stored secret slack-token" in result.output and TOKEN not in result.output
    piped = runner.invoke(cli, ["secrets", "set", "pd", "--value-file", "-"], input="rk-12345\n")
    assert piped.exit_code == 0, piped.output
    asked = runner.invoke(cli, ["secrets", "set", "hook"], input="hook-secret-1\n")
    assert asked.exit_code == 0 and "hook-secret-1" not in asked.output
    listed = runner.invoke(cli, ["secrets", "list"])
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.output.splitlines()[:3]] == [
        "hook",
        "pd",
        "slack-token",
    ]
    assert TOKEN not in listed.output and "3 secrets" in listed.output

    key = runner.invoke(cli, ["secrets", "generate-key"]).output.strip()
    Fernet(key.encode())  # a usable key
    monkeypatch.setenv("COPLANE_SECRET_KEY", f"{key},{NEW_KEY}")
    rotated = runner.invoke(cli, ["secrets", "rotate"])
    assert rotated.exit_code == 0 and "re-encrypted 3 secrets" in rotated.output
    with store.connect() as conn:
        assert Vault(key).get(conn, "slack-token") == TOKEN
        assert Vault(key).get(conn, "pd") == "rk-12345"

    deleted = runner.invoke(cli, ["secrets", "delete", "pd"])
    assert deleted.exit_code == 0 and "deleted secret pd" in deleted.output
    again = runner.invoke(cli, ["secrets", "delete", "pd"])
    assert again.exit_code == 1 and "no secret named 'pd'" in again.output


def test_the_cli_names_what_is_wrong(
    cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    bad_name = runner.invoke(cli, ["secrets", "set", "a b", "--value-file", "-"], input="x")
    assert bad_name.exit_code == 2 and "'a b' is not a secret name" in bad_name.output
    missing = tmp_path / "nope"
    no_file = runner.invoke(cli, ["secrets", "set", "a", "--value-file", str(missing)])
    said = " ".join(no_file.output.split())
    assert no_file.exit_code == 2 and f"--value-file: cannot read {missing}" in said
    empty = runner.invoke(cli, ["secrets", "set", "a", "--value-file", "-"], input="\n")
    assert empty.exit_code == 2 and "--value-file -: a secret cannot be empty" in empty.output
    monkeypatch.delenv("COPLANE_SECRET_KEY")
    no_key = runner.invoke(cli, ["secrets", "set", "a", "--value-file", "-"], input="abcdefg")
    assert no_key.exit_code == 1 and "no COPLANE_SECRET_KEY is set" in no_key.output
    monkeypatch.setenv("COPLANE_SECRET_KEY", "short")
    bad_key = runner.invoke(cli, ["secrets", "rotate"])
    assert bad_key.exit_code == 2
    assert "COPLANE_SECRET_KEY: key 1 of 1 is not a Fernet key" in bad_key.output


def test_a_stored_url_that_is_refused_fails_the_channel_naming_the_field(
    conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COPLANE_OUTBOUND_ALLOW", raising=False)
    text = "channels:\n  hook:\n    type: webhook\n    url: ${secret:hook-url}\n"
    channel = parse_config(text, "coplane.yaml").channels["hook"]  # checked once resolved
    vault = Vault(NEW_KEY)
    vault.put(conn, "hook-url", "http://169.254.169.254/latest/meta-data")
    with pytest.raises(SecretError, match=r"url: refused: 169\.254\.169\.254") as caught:
        vault.resolve_channel(conn, channel)
    assert "latest/meta-data" not in str(caught.value)  # the stored value is not shown
