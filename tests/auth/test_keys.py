"""API keys with COPLANE_AUTH=keys: every kind of endpoint with no key, a wrong key, a revoked
key and each scope; the keys API and CLI; the UI's login, roles and log-out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from coplane.auth.keys import check_key, create_key, list_keys, revoke_key
from coplane.cli import app as cli
from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import Store
from tests.factories import event_dict

EVENT = event_dict("run.started", "etl.nightly", run="r1", kind="pipeline")
OPENLINEAGE = {
    "eventType": "START",
    "eventTime": "2026-11-24T06:00:00Z",
    "run": {"runId": "0176a8c2-fe01-7ef7-b0a6-5c2e6c4a9f01"},
    "job": {"namespace": "spark", "name": "daily"},
    "producer": "https://example.com/p",
    "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
}
SLA = {"name": "fresh", "kind": "freshness", "target": "wh.t", "max_age": "1h"}

# (method, path, json body, the scope it needs)
ENDPOINTS: list[tuple[str, str, Any, str]] = [
    ("POST", "/api/events", EVENT, "ingest"),
    ("POST", "/api/v1/lineage", OPENLINEAGE, "ingest"),
    ("GET", "/ping/backup", None, "ingest"),
    ("GET", "/api/events", None, "read"),
    ("GET", "/api/runs", None, "read"),
    ("GET", "/api/slas", None, "read"),
    ("GET", "/openapi.json", None, "read"),
    (
        "POST",
        "/api/slas/backtest",
        {"sla": SLA, "start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z", "events": []},
        "read",
    ),
    ("POST", f"/api/incidents/{'0' * 32}/ack", None, "act"),  # admin keys only: no key has act
    ("POST", "/api/slas", SLA, "admin"),
    ("DELETE", "/api/slas/nothing", None, "admin"),
    ("POST", "/api/keys", {"name": "x", "scopes": ["read"]}, "admin"),
    ("GET", "/api/keys", None, "admin"),
    ("PUT", "/api/secrets/slack-token", {"value": "xoxb-123456"}, "admin"),
    ("GET", "/api/secrets", None, "admin"),
    ("DELETE", "/api/secrets/slack-token", None, "admin"),
    ("POST", "/api/monitors/backup/ping-key", None, "admin"),
    ("GET", "/api/monitors/backup/ping-key", None, "admin"),
]


@pytest.fixture
def keyed(store: Store, db_url: str) -> Iterator[TestClient]:
    """The app with COPLANE_AUTH=keys."""
    settings = Settings(database_url=db_url, events_retention_days=0, auth="keys")
    with TestClient(create_app(settings, store=store)) as c:
        yield c


@pytest.fixture
def secrets_by_scope(store: Store) -> dict[str, str]:
    out = {}
    with store.connect() as conn:
        for scope in ("ingest", "read", "admin"):
            out[scope] = create_key(conn, f"{scope}-key", [scope])[1]
        out["revoked"] = create_key(conn, "old", ["admin"])[1]
        revoke_key(conn, out["revoked"][:12])
    return out


def call(client: TestClient, method: str, path: str, body: Any, key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body", "needed"), ENDPOINTS)
def test_each_endpoint_with_each_key(
    keyed: TestClient,
    secrets_by_scope: dict[str, str],
    method: str,
    path: str,
    body: Any,
    needed: str,
) -> None:
    for label, key in [
        ("none", None),
        ("wrong", "cpl_not-a-key"),
        ("revoked", secrets_by_scope["revoked"]),
    ]:
        resp = call(keyed, method, path, body, key)
        assert resp.status_code == 401, (label, resp.text)
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert resp.json()["errors"][0]["loc"] == ["header", "authorization"]
    for scope in ("ingest", "read", "admin"):
        resp = call(keyed, method, path, body, secrets_by_scope[scope])
        allowed = scope == "admin" or scope == needed
        if allowed:
            assert resp.status_code not in (401, 403), (scope, resp.text)
        else:
            assert resp.status_code == 403, (scope, resp.text)
            assert f"do not include {needed}" in resp.json()["detail"]


def test_health_is_open_and_a_refused_request_stores_nothing(
    keyed: TestClient, secrets_by_scope: dict[str, str]
) -> None:
    assert keyed.get("/api/health").status_code == 200
    assert call(keyed, "POST", "/api/events", EVENT, secrets_by_scope["read"]).status_code == 403
    events = call(keyed, "GET", "/api/events", None, secrets_by_scope["read"]).json()
    assert events["events"] == []


def test_keys_api_shows_a_secret_once_and_revokes(keyed: TestClient, store: Store) -> None:
    with store.connect() as conn:
        admin = create_key(conn, "ops", ["admin"])[1]
    made = call(keyed, "POST", "/api/keys", {"name": "airflow", "scopes": ["ingest"]}, admin)
    assert made.status_code == 201
    secret = made.json()["key"]
    assert secret.startswith("cpl_") and made.json()["prefix"] == secret[:12]
    listed = call(keyed, "GET", "/api/keys", None, admin).json()["keys"]
    assert [k["name"] for k in listed] == ["ops", "airflow"]
    assert secret not in str(listed)  # only prefixes are ever shown again
    assert call(keyed, "POST", "/api/events", EVENT, secret).status_code == 202
    assert call(keyed, "DELETE", f"/api/keys/{made.json()['id']}", None, admin).status_code == 204
    assert call(keyed, "POST", "/api/events", EVENT, secret).status_code == 401
    missing = call(keyed, "DELETE", "/api/keys/cpl_nothing", None, admin)
    assert missing.status_code == 404 and "no key" in missing.json()["detail"]
    assert missing.json()["errors"][0]["loc"] == ["path", "key"]
    blank = call(keyed, "POST", "/api/keys", {"name": " \r", "scopes": ["read"]}, admin)
    assert blank.status_code == 422 and blank.json()["errors"][0]["loc"] == ["body", "name"]
    bad = call(keyed, "POST", "/api/keys", {"name": "x", "scopes": ["root"]}, admin)
    assert bad.status_code == 422 and "scopes" in str(bad.json()["errors"][0]["loc"])
    with store.connect() as conn:  # stored as a hash: the secret is nowhere in the table
        rows = conn.query("SELECT * FROM api_keys")
    assert secret not in str(rows)


def test_without_auth_everything_stays_open(client: TestClient) -> None:
    assert client.post("/api/events", json=EVENT).status_code == 202
    assert client.get("/").status_code == 200


# --- the UI -----------------------------------------------------------------------------------


def login(client: TestClient, key: str, next_: str = "/") -> Any:
    form = client.get(f"/login?next={next_}")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    return client.post(
        "/login",
        data={"csrf_token": token.group(1), "key": key, "next": next_},
        follow_redirects=False,
    )


def test_the_ui_asks_for_a_login_and_roles_limit_the_forms(
    keyed: TestClient, secrets_by_scope: dict[str, str]
) -> None:
    first = keyed.get("/graph?focus=x", follow_redirects=False)
    assert (
        first.status_code == 303 and first.headers["location"] == "/login?next=%2Fgraph%3Ffocus%3Dx"
    )
    assert login(keyed, "cpl_wrong").status_code == 401
    assert "only send events" in login(keyed, secrets_by_scope["ingest"]).text
    done = login(keyed, secrets_by_scope["read"], "/events")
    assert done.status_code == 303 and done.headers["location"] == "/events"
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    page = keyed.get("/events")
    assert page.status_code == 200 and "read-key (read)" in page.text and "Log out" in page.text
    # a viewer cannot acknowledge: the form's POST needs admin
    token = keyed.cookies.get("coplane_csrf")
    denied = keyed.post(f"/incidents/{'0' * 32}/ack", data={"csrf_token": token})
    assert denied.status_code == 403 and "do not include act" in denied.text
    login(keyed, secrets_by_scope["admin"])
    stale = keyed.post(f"/incidents/{'0' * 32}/ack", data={"csrf_token": token})
    assert stale.status_code == 403  # a login gives a new CSRF token: the old one is refused
    token = keyed.cookies.get("coplane_csrf")
    allowed = keyed.post(f"/incidents/{'0' * 32}/ack", data={"csrf_token": token})
    assert allowed.status_code == 404  # past the key check: there is no such incident
    out = keyed.post(
        "/logout", data={"csrf_token": keyed.cookies.get("coplane_csrf")}, follow_redirects=False
    )
    assert out.status_code == 303
    assert keyed.get("/", follow_redirects=False).status_code == 303


def test_login_refuses_a_forged_form_and_foreign_redirects(
    keyed: TestClient, secrets_by_scope: dict[str, str]
) -> None:
    keyed.get("/login")
    forged = keyed.post("/login", data={"csrf_token": "x" * 43, "key": secrets_by_scope["read"]})
    assert forged.status_code == 403 and "coplane_key" not in forged.headers.get("set-cookie", "")
    away = login(keyed, secrets_by_scope["read"], "//evil.example/")
    assert away.headers["location"] == "/"


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_creates_lists_and_revokes_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COPLANE_DATABASE_URL", f"sqlite:///{tmp_path / 'c.sqlite'}")
    runner = CliRunner()
    made = runner.invoke(cli, ["keys", "create", "airflow", "--scope", "ingest", "--scope", "read"])
    assert made.exit_code == 0, made.output
    secret = re.search(r"cpl_[\w-]+", made.stdout)
    assert secret and "shown only now" in made.output
    listed = runner.invoke(cli, ["keys", "list"])
    assert (
        "airflow" in listed.stdout and "ingest,read" in listed.stdout and "active" in listed.stdout
    )
    assert secret.group(0) not in listed.stdout and secret.group(0)[:12] in listed.stdout
    revoked = runner.invoke(cli, ["keys", "revoke", secret.group(0)[:12]])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert runner.invoke(cli, ["keys", "revoke", "cpl_nothing"]).exit_code == 1
    assert runner.invoke(cli, ["keys", "create", "x", "--scope", "root"]).exit_code == 2


def test_keys_store_functions(store: Store) -> None:
    with store.connect() as conn:
        key, secret = create_key(conn, "ci", ["read", "ingest"])
        assert key.scopes == ("ingest", "read") and key.allows("read") and not key.allows("admin")
        with pytest.raises(ValueError, match="scopes"):
            create_key(conn, "x", [])
        with pytest.raises(ValueError, match="name"):
            create_key(conn, " ", ["read"])
        assert [k.name for k in list_keys(conn)] == ["ci"]
        found = check_key(conn, secret)
        assert found is not None and found.id == key.id and found.used is None
        assert check_key(conn, secret) is not None  # now it has been used
        assert list_keys(conn)[0].used is not None
        assert check_key(conn, "not-even-prefixed") is None


def test_ingest_is_rate_limited_per_key(store: Store, db_url: str) -> None:
    settings = Settings(
        database_url=db_url, events_retention_days=0, auth="keys", ingest_rate_limit=1
    )
    with store.connect() as conn:
        first = create_key(conn, "first", ["ingest", "read"])[1]
        other = create_key(conn, "other", ["ingest"])[1]
    with TestClient(create_app(settings, store=store)) as c:
        answers = [call(c, "POST", "/api/events", EVENT, first).status_code for _ in range(3)]
        assert answers == [202, 202, 429]  # a burst of twice the rate, then a wait
        limited = call(c, "POST", "/api/events", EVENT, first)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "COPLANE_INGEST_RATE_LIMIT" in limited.json()["detail"]
        assert call(c, "POST", "/api/events", EVENT, other).status_code == 202  # its own bucket
        assert call(c, "GET", "/api/events", None, first).status_code == 200  # reads are not


def test_login_and_log_out_refuse_incomplete_or_forged_forms(keyed: TestClient) -> None:
    keyed.get("/login")
    token = keyed.cookies.get("coplane_csrf")
    empty = keyed.post("/login", data={"csrf_token": token, "next": "/"})
    assert empty.status_code == 400 and "user name and password, or an API key" in empty.text
    forged = keyed.post("/logout", data={"csrf_token": "x" * 43}, follow_redirects=False)
    assert forged.status_code == 403 and "expired" in forged.text
