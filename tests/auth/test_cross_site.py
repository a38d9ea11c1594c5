"""A page on another site cannot make a visitor's browser change anything in coplane: not on
an open loopback server, not with a user's session, not by logging them in."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from coplane.auth.keys import create_key
from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import Store
from coplane.web.csrf import CSRF_COOKIE
from tests.factories import event_dict

EVENT = event_dict("run.started", "etl.nightly", run="r1", kind="pipeline")
INCIDENT = "0" * 32
ELSEWHERE = [
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain
    {"Origin": "https://evil.example"},  # an older browser: no Sec-Fetch-Site
    {"Origin": "null"},  # a sandboxed frame or a file
]
HERE = [
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "none"},  # typed by the user
    {"Origin": "http://testserver"},
    {},  # no browser: curl, a producer
]


def csrf_form(client: TestClient) -> dict[str, str]:
    token = client.cookies.get(CSRF_COOKIE) or "t" * 43
    client.cookies.set(CSRF_COOKIE, token)
    return {"csrf_token": token}


@pytest.mark.parametrize("headers", ELSEWHERE)
def test_a_page_elsewhere_changes_nothing_on_an_open_server(
    client: TestClient, headers: dict[str, str]
) -> None:
    made = client.post("/api/monitors/backup/ping-key", headers=headers)
    assert made.status_code == 403
    assert made.json()["errors"][0]["loc"] == ["header", "origin"]
    why = next(iter(headers.items()))
    assert f"refused a cross-site request ({why[0]}: {why[1]})" in made.json()["detail"]
    assert client.get("/api/monitors/backup/ping-key").status_code == 404  # none was made
    # a form can send JSON as text/plain, which the events endpoint would read
    sent = client.post(
        "/api/events",
        content=json.dumps(EVENT),
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert sent.status_code == 403
    assert client.get("/api/events").json()["events"] == []
    page = client.post(f"/incidents/{INCIDENT}/ack", data=csrf_form(client), headers=headers)
    assert page.status_code == 403 and "cross-site" in page.text
    assert page.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("headers", HERE)
def test_the_same_origin_and_non_browsers_pass(client: TestClient, headers: dict[str, str]) -> None:
    sent = client.post("/api/events", json=EVENT, headers=headers)
    assert sent.status_code == 202
    page = client.post(f"/incidents/{INCIDENT}/ack", data=csrf_form(client), headers=headers)
    assert page.status_code == 404  # past the guard and the CSRF check: no such incident


def test_links_from_elsewhere_and_pings_still_work(client: TestClient) -> None:
    away = {"Sec-Fetch-Site": "cross-site"}
    assert client.get("/", headers=away).status_code == 200  # a link in a Slack alert
    assert client.post("/ping/backup?create=1", headers=away).status_code == 200
    assert client.get("/api/runs", headers=away).status_code == 200


def test_public_url_is_this_server_behind_a_proxy(store: Store, db_url: str) -> None:
    settings = Settings(
        database_url=db_url, events_retention_days=0, public_url="https://coplane.example.com/"
    )
    with TestClient(create_app(settings, store=store)) as c:
        ok = c.post("/api/events", json=EVENT, headers={"Origin": "https://coplane.example.com"})
        assert ok.status_code == 202
        other_port = c.post(
            "/api/events", json=EVENT, headers={"Origin": "https://coplane.example.com:8443"}
        )
        assert other_port.status_code == 403


@pytest.fixture
def keyed(store: Store, db_url: str) -> Iterator[tuple[TestClient, str]]:
    settings = Settings(database_url=db_url, events_retention_days=0, auth="keys")
    with store.connect() as conn:
        admin = create_key(conn, "admin", ["admin"])[1]
    with TestClient(create_app(settings, store=store)) as c:
        yield c, admin


def test_a_bearer_key_is_no_ambient_credential(keyed: tuple[TestClient, str]) -> None:
    client, admin = keyed
    away = {"Sec-Fetch-Site": "cross-site"}
    with_key = client.post(
        "/api/monitors/backup/ping-key", headers={**away, "Authorization": f"Bearer {admin}"}
    )
    assert with_key.status_code == 201
    # the same key in the login cookie is what a browser would attach by itself
    client.cookies.set("coplane_key", admin)
    assert client.post("/api/monitors/backup/ping-key", headers=away).status_code == 403
    token = csrf_form(client)["csrf_token"]
    with_token = client.post("/api/monitors/backup/ping-key", headers={"X-CSRF-Token": token})
    assert with_token.status_code == 201


def test_a_change_under_api_with_the_cookie_needs_the_csrf_token(
    keyed: tuple[TestClient, str],
) -> None:
    client, admin = keyed
    client.cookies.set("coplane_key", admin)
    token = csrf_form(client)["csrf_token"]
    missing = client.post("/api/events", json=EVENT)
    assert missing.status_code == 403
    assert missing.json()["errors"][0]["loc"] == ["header", "x-csrf-token"]
    wrong = client.post("/api/events", json=EVENT, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    assert client.get("/api/events").json()["events"] == []  # reading needs no token
    sent = client.post("/api/events", json=EVENT, headers={"X-CSRF-Token": token})
    assert sent.status_code == 202


@pytest.mark.parametrize("authorization", ["Basic YWxpY2U6c2VjcmV0", "Digest x", "Bearer "])
def test_another_authorization_never_falls_back_to_the_cookie(
    keyed: tuple[TestClient, str], authorization: str
) -> None:
    client, admin = keyed
    client.cookies.set("coplane_key", admin)
    token = csrf_form(client)["csrf_token"]
    headers = {"Authorization": authorization, "X-CSRF-Token": token}
    sent = client.post("/api/events", json=EVENT, headers=headers)
    assert sent.status_code == 401
    assert "is not a coplane credential" in sent.json()["detail"]
    assert client.get("/api/events", headers={"Authorization": authorization}).status_code == 401
    page = client.get("/", headers={"Authorization": authorization})
    assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")


def test_another_authorization_is_no_exemption_from_the_guard(client: TestClient) -> None:
    away = {"Sec-Fetch-Site": "same-site", "Authorization": "Basic YWxpY2U6c2VjcmV0"}
    assert client.post("/api/events", json=EVENT, headers=away).status_code == 403
    # an open server reads no key at all, so a Bearer header exempts nothing either
    bearer = {"Sec-Fetch-Site": "cross-site", "Authorization": "Bearer cpl_anything"}
    assert client.post("/api/events", json=EVENT, headers=bearer).status_code == 403
    assert client.get("/api/events").json()["events"] == []


def test_no_page_elsewhere_can_log_a_browser_in(keyed: tuple[TestClient, str]) -> None:
    client, admin = keyed
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    data = {"csrf_token": token.group(1), "key": admin, "next": "/"}
    away = client.post(
        "/login", data=data, headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False
    )
    assert away.status_code == 403 and "coplane_key" not in away.headers.get("set-cookie", "")
    here = client.post(
        "/login", data=data, headers={"Sec-Fetch-Site": "same-origin"}, follow_redirects=False
    )
    assert here.status_code == 303 and "coplane_key" in here.headers["set-cookie"]
