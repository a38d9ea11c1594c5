"""Ping keys: `/ping/{ping_key}/{slug}...` with and without COPLANE_AUTH=keys, the store, the
`/api/monitors/{slug}/ping-key` endpoints and `coplane cron keys`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from coplane.auth.keys import create_key
from coplane.cli import app as cli
from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import Store
from coplane.store.errors import NotFound
from coplane.store.ping_keys import (
    check_ping_key,
    create_ping_key,
    list_ping_keys,
    read_ping_key,
    revoke_ping_key,
)

SLUG = "nightly-backup"
PIPE = f"cron.{SLUG}"
KEY_SHAPE = re.compile(r"^cpk_[A-Za-z0-9_-]{24}$")


class Server:
    """The app under one auth mode, with an admin key to read back what the pings stored."""

    def __init__(self, client: TestClient, admin: dict[str, str], auth: str) -> None:
        self.client = client
        self.admin = admin  # headers reading the API needs (none without auth)
        self.auth = auth

    def runs(self, pipeline: str = PIPE) -> list[dict[str, Any]]:
        """The pipeline's runs, oldest first."""
        answer = self.client.get("/api/runs", params={"pipeline": pipeline}, headers=self.admin)
        assert answer.status_code == 200, answer.text
        return list(reversed(answer.json()["runs"]))

    def new_key(self, slug: str = SLUG) -> str:
        made = self.client.post(f"/api/monitors/{slug}/ping-key", headers=self.admin)
        assert made.status_code == 201, made.text
        key: str = made.json()["ping_key"]
        return key


@contextmanager
def running(store: Store, db_url: str, auth: str, **settings: Any) -> Iterator[Server]:
    """The app over `store` with COPLANE_AUTH=`auth` and these settings."""
    app = create_app(
        Settings(database_url=db_url, events_retention_days=0, auth=auth, **settings), store=store
    )
    admin: dict[str, str] = {}
    if auth == "keys":
        with store.connect() as conn:
            admin = {"Authorization": f"Bearer {create_key(conn, 'ops', ['admin'])[1]}"}
    with TestClient(app) as c:
        yield Server(c, admin, auth)


@pytest.fixture(params=["none", "keys"])
def server(request: pytest.FixtureRequest, store: Store, db_url: str) -> Iterator[Server]:
    """The app with COPLANE_AUTH=none and with COPLANE_AUTH=keys."""
    with running(store, db_url, request.param) as server:
        yield server


def not_found(response: Any) -> bool:
    """The plain 404 an unknown slug gets, revealing nothing."""
    return bool(
        response.status_code == 404
        and response.headers["content-type"].startswith("text/plain")
        and response.text == "not found"
    )


# --- the store --------------------------------------------------------------------------------


def test_store_keeps_one_hashed_key_per_monitor(store: Store) -> None:
    with store.connect() as conn:
        key, secret = create_ping_key(conn, SLUG)
        assert KEY_SHAPE.match(secret) and key.prefix == secret[:12] and key.slug == SLUG
        found = check_ping_key(conn, secret)
        assert found is not None and found.id == key.id and found.slug == SLUG
        assert read_ping_key(conn, SLUG) == found
        other, other_secret = create_ping_key(conn, "other-job")
        assert [k.slug for k in list_ping_keys(conn)] == ["nightly-backup", "other-job"]
        # rotation: the new key replaces the old one, which no longer checks
        rotated, new_secret = create_ping_key(conn, SLUG)
        assert new_secret != secret and rotated.id != key.id
        assert check_ping_key(conn, secret) is None
        assert check_ping_key(conn, new_secret) == rotated
        assert [k.slug for k in list_ping_keys(conn)] == ["nightly-backup", "other-job"]
        rows = conn.query("SELECT * FROM ping_keys")
        assert secret not in str(rows) and new_secret not in str(rows)  # hashes only
        assert revoke_ping_key(conn, SLUG) == rotated
        assert check_ping_key(conn, new_secret) is None
        with pytest.raises(NotFound, match="nightly-backup"):
            revoke_ping_key(conn, SLUG)
        with pytest.raises(NotFound, match="nightly-backup"):
            read_ping_key(conn, SLUG)
        assert check_ping_key(conn, other_secret) == other  # the other monitor keeps its key
        assert check_ping_key(conn, "cpl_" + other_secret[4:]) is None  # an API key's prefix
        assert check_ping_key(conn, other_secret + "/x") is None


# --- pinging with a key -----------------------------------------------------------------------


def test_every_key_url_pings_in_both_auth_modes(server: Server) -> None:
    key = server.new_key()
    c = server.client
    # an unknown monitor still needs ?create=1, as with the slug URLs
    assert not_found(c.get(f"/ping/{key}/{SLUG}"))
    assert c.get(f"/ping/{key}/{SLUG}/start?create=1").text == "OK"  # start (GET)
    done = c.post(f"/ping/{key}/{SLUG}/0", content=b"all copied\n")  # exit code (POST)
    assert done.status_code == 200 and done.text == "OK"
    assert c.head(f"/ping/{key}/{SLUG}/fail").status_code == 200  # fail (HEAD)
    assert c.post(f"/ping/{key}/{SLUG}").text == "OK"  # success (POST)
    rid = "5b0f7c1e-8d5c-4a8e-9a51-0d1f6c3b2a10"
    assert c.head(f"/ping/{key}/{SLUG}/start", params={"rid": rid}).status_code == 200
    assert c.get(f"/ping/{key}/{SLUG}/3", params={"rid": rid}).text == "OK"
    runs = server.runs()
    assert [r["state"] for r in runs] == ["completed", "failed", "completed", "failed"]
    assert runs[3]["run_key"] == rid and runs[3]["error"] == "exit code 3"
    detail = c.get(f"/api/runs/{runs[0]['id']}", headers=server.admin).json()
    assert detail["events"][-1]["payload"]["log"] == "all copied\n"
    # the slug URLs' checks apply as they are
    assert c.get(f"/ping/{key}/{SLUG}/256").status_code == 400
    assert c.get(f"/ping/{key}/{SLUG}?rid=nope").status_code == 400
    assert not_found(c.get(f"/ping/{key}/{SLUG}/log"))


def test_wrong_revoked_and_other_monitors_keys_are_404(server: Server) -> None:
    key = server.new_key()
    other = server.new_key("other-job")
    old = server.new_key("rotated-job")
    server.new_key("rotated-job")  # replaces `old`
    revoked = server.new_key("revoked-job")
    gone = server.client.delete("/api/monitors/revoked-job/ping-key", headers=server.admin)
    assert gone.status_code == 204
    refused = (
        f"/ping/cpk_{'x' * 24}/{SLUG}",  # no such key
        f"/ping/{other}/{SLUG}",  # another monitor's key
        f"/ping/{key[:-1]}/{SLUG}",  # almost the key
        f"/ping/{old}/rotated-job",  # replaced by a newer key
        f"/ping/{revoked}/revoked-job",  # revoked
    )
    for path in refused:
        for suffix in ("", "/start", "/fail", "/0", "/7"):
            for method in ("GET", "POST", "HEAD"):
                answer = server.client.request(method, f"{path}{suffix}?create=1")
                assert answer.status_code == 404, (path, suffix, method, answer.text)
                if method != "HEAD":
                    assert not_found(answer), (path, suffix, method)
    assert server.runs() == [] and server.runs("cron.other-job") == []
    assert server.runs("cron.rotated-job") == [] and server.runs("cron.revoked-job") == []
    # the right key still works after all that
    assert server.client.get(f"/ping/{key}/{SLUG}?create=1").status_code == 200


def test_a_rotated_key_stops_working_and_its_successor_works(server: Server) -> None:
    first = server.new_key()
    assert server.client.get(f"/ping/{first}/{SLUG}?create=1").status_code == 200
    second = server.new_key()
    assert not_found(server.client.get(f"/ping/{first}/{SLUG}"))
    assert server.client.get(f"/ping/{second}/{SLUG}").status_code == 200
    assert len(server.runs()) == 2


def test_slugs_that_look_like_keys_are_refused(server: Server) -> None:
    key = server.new_key()
    assert not_found(server.client.get("/ping/cpk_abc?create=1"))
    # a key followed by a key-like slug: no monitor may have that slug
    assert not_found(server.client.get(f"/ping/{key}/cpk_abc?create=1"))
    made = server.client.post("/api/monitors/cpk_abc/ping-key", headers=server.admin)
    assert made.status_code == 422 and made.json()["errors"][0]["loc"] == ["path", "slug"]


def test_with_keys_required_the_slug_urls_still_need_an_api_key(store: Store, db_url: str) -> None:
    with running(store, db_url, "keys") as server:
        key = server.new_key()
        assert server.client.get(f"/ping/{SLUG}?create=1").status_code == 401
        assert server.client.get(f"/ping/{key}/{SLUG}?create=1").status_code == 200
        # an API key in the URL is not a ping key
        api_key = server.admin["Authorization"].removeprefix("Bearer ")
        assert server.client.get(f"/ping/{api_key}/{SLUG}").status_code == 401


def test_ping_keys_are_rate_limited_each_on_its_own(store: Store, db_url: str) -> None:
    with running(store, db_url, "keys", ingest_rate_limit=1) as server:
        key, other = server.new_key(), server.new_key("other-job")
        c = server.client
        answers = [c.get(f"/ping/{key}/{SLUG}?create=1").status_code for _ in range(3)]
        assert answers == [200, 200, 429]  # a burst of twice the rate, then a wait
        limited = c.get(f"/ping/{key}/{SLUG}")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "COPLANE_INGEST_RATE_LIMIT" in limited.json()["detail"]
        assert limited.json()["errors"][0]["loc"] == ["path", "ping_key"]
        assert len(server.runs()) == 2  # the refused pings stored nothing
        assert c.get(f"/ping/{other}/other-job?create=1").status_code == 200  # its own bucket
        # made-up keys are not limited, nor counted: they are simply not found
        for _ in range(3):
            assert not_found(c.get(f"/ping/cpk_{'y' * 24}/{SLUG}"))


# --- the API ----------------------------------------------------------------------------------


def test_the_api_creates_shows_and_revokes_a_key(server: Server) -> None:
    c, admin = server.client, server.admin
    path = f"/api/monitors/{SLUG}/ping-key"
    missing = c.get(path, headers=admin)
    assert missing.status_code == 404 and SLUG in missing.json()["detail"]
    assert missing.json()["errors"][0]["loc"] == ["path", "slug"]
    made = c.post(path, headers=admin)
    assert made.status_code == 201
    body = made.json()
    assert set(body) == {"slug", "ping_key", "ping_url", "prefix", "created"}
    assert KEY_SHAPE.match(body["ping_key"]) and body["prefix"] == body["ping_key"][:12]
    assert body["ping_url"] == f"http://127.0.0.1:4200/ping/{body['ping_key']}/{SLUG}"
    shown = c.get(path, headers=admin)
    assert shown.status_code == 200
    assert shown.json() == {"slug": SLUG, "prefix": body["prefix"], "created": body["created"]}
    assert c.delete(path, headers=admin).status_code == 204
    again = c.delete(path, headers=admin)
    assert again.status_code == 404 and again.json()["errors"][0]["loc"] == ["path", "slug"]
    assert c.get(path, headers=admin).status_code == 404
    for method in ("GET", "POST", "DELETE"):
        bad = c.request(method, "/api/monitors/bad slug!/ping-key", headers=admin)
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["path", "slug"]


def test_the_ping_url_is_built_on_the_public_url(store: Store, db_url: str) -> None:
    with running(store, db_url, "none", public_url="https://coplane.example.com/") as server:
        made = server.client.post(f"/api/monitors/{SLUG}/ping-key").json()
        assert made["ping_url"] == (f"https://coplane.example.com/ping/{made['ping_key']}/{SLUG}")


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
def test_the_api_needs_an_admin_key(store: Store, db_url: str, method: str) -> None:
    with store.connect() as conn:
        read = create_key(conn, "reader", ["read"])[1]
        ingest = create_key(conn, "cron", ["ingest"])[1]
        create_ping_key(conn, SLUG)
    with running(store, db_url, "keys") as server:
        path = f"/api/monitors/{SLUG}/ping-key"
        assert server.client.request(method, path).status_code == 401
        for scope, secret in (("read", read), ("ingest", ingest)):
            answer = server.client.request(
                method, path, headers={"Authorization": f"Bearer {secret}"}
            )
            assert answer.status_code == 403, (scope, answer.text)
            assert "do not include admin" in answer.json()["detail"]
        assert server.client.request(method, path, headers=server.admin).status_code < 300


def test_the_openapi_schema_documents_the_key_urls(server: Server) -> None:
    schema = server.client.get("/openapi.json", headers=server.admin).json()
    for path in (
        "/ping/{ping_key}/{slug}",
        "/ping/{ping_key}/{slug}/start",
        "/ping/{ping_key}/{slug}/fail",
        "/ping/{ping_key}/{slug}/{exit_code}",
    ):
        operations = schema["paths"][path]
        assert set(operations) == {"get", "post", "head"}
        [key] = [p for p in operations["get"]["parameters"] if p["name"] == "ping_key"]
        assert key["in"] == "path" and key["schema"]["pattern"].startswith("^cpk_")


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_creates_lists_and_revokes_ping_keys(
    store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COPLANE_DATABASE_URL", db_url)
    monkeypatch.setenv("COPLANE_PUBLIC_URL", "https://coplane.example.com")
    runner = CliRunner()
    made = runner.invoke(cli, ["cron", "keys", "create", SLUG])
    assert made.exit_code == 0, made.output
    url = made.stdout.strip()  # the URL alone on stdout, for `$(...)`
    match = re.fullmatch(rf"https://coplane\.example\.com/ping/(cpk_[\w-]+)/{SLUG}", url)
    assert match and KEY_SHAPE.match(match.group(1))
    assert "shown only now" in made.stderr and match.group(1) not in made.stderr
    listed = runner.invoke(cli, ["cron", "keys", "list"])
    assert listed.exit_code == 0
    assert SLUG in listed.stdout and match.group(1)[:12] in listed.stdout
    assert match.group(1) not in listed.stdout and "1 ping keys" in listed.stdout
    # the printed URL pings, until the key is revoked
    with running(store, db_url, "keys") as server:
        assert server.client.get(url.split(".com", 1)[1] + "?create=1").status_code == 200
        revoked = runner.invoke(cli, ["cron", "keys", "revoke", SLUG])
        assert revoked.exit_code == 0 and f"({SLUG})" in revoked.stdout
        assert not_found(server.client.get(url.split(".com", 1)[1]))
    assert "0 ping keys" in runner.invoke(cli, ["cron", "keys", "list"]).stdout


def test_cli_refuses_unknown_and_invalid_slugs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COPLANE_DATABASE_URL", f"sqlite:///{tmp_path / 'c.sqlite'}")
    runner = CliRunner()
    missing = runner.invoke(cli, ["cron", "keys", "revoke", "no-such-job"])
    assert missing.exit_code == 1 and "'no-such-job' has no ping key" in missing.stderr
    for slug in ("cpk_abc", "bad slug", "-x"):
        bad = runner.invoke(cli, ["cron", "keys", "create", "--", slug])
        assert bad.exit_code == 2 and "not a monitor slug" in bad.stderr, slug
        assert bad.stdout == ""
