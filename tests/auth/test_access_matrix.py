"""Every route the server has, with COPLANE_AUTH=keys, asked by everyone who might ask: no key,
a wrong key, a revoked key, a key of each scope and a logged-in user of each role.

The scope each route needs is written out below by hand. A route added to the app without a
line here fails `test_every_route_is_listed`, so nothing new goes out unclassified.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coplane.auth.keys import create_key, revoke_key
from coplane.auth.users import create_user
from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import Store
from coplane.web.csrf import CSRF_COOKIE

# open: anyone; ingest / read / act / admin: that scope (admin may do all); ping-key: the
# ping key in the URL decides, and no API key or session matters
EXPECTED: dict[tuple[str, str], str] = {
    ("GET", "/api/health"): "open",
    ("GET", "/login"): "open",
    ("POST", "/login"): "open",
    ("POST", "/logout"): "open",
    ("POST", "/api/events"): "ingest",
    ("POST", "/api/v1/lineage"): "ingest",
    ("POST", "/api/v1/lineage/batch"): "ingest",
    ("POST", "/api/logs"): "ingest",
    ("POST", "/api/concurrency/{name}/acquire"): "ingest",
    ("POST", "/api/runs/{run_id}/pause"): "ingest",  # the paused flow's own key
    ("GET", "/api/runs/{run_id}/pause"): "ingest",
    ("POST", "/api/runs/{run_id}/resume"): "act",
    ("POST", "/runs/{run_id}/resume"): "act",
    ("POST", "/api/concurrency/{name}/renew"): "ingest",
    # operating deployments: editors; declaring them and automations: admins
    ("POST", "/api/deployments/{name}/runs"): "act",
    ("POST", "/api/deployments/{name}/pause"): "act",
    ("POST", "/api/deployments/{name}/resume"): "act",
    ("POST", "/api/runs/{run_id}/cancel"): "act",
    ("POST", "/deployments/{name}/run"): "act",
    ("POST", "/deployments/{name}/{action}"): "act",  # pause and resume
    ("POST", "/flow-runs/{run_id}/cancel"): "act",
    ("POST", "/api/automations/backtest"): "read",
    **{
        (method, path): "admin"
        for method, path in (
            ("POST", "/api/deployments"),
            ("PUT", "/api/deployments/{name}"),
            ("DELETE", "/api/deployments/{name}"),
            ("POST", "/api/automations"),
            ("PUT", "/api/automations/{name}"),
            ("DELETE", "/api/automations/{name}"),
        )
    },
    ("POST", "/api/concurrency/{name}/release"): "ingest",
    **{
        (method, f"/ping/{{slug}}{tail}"): "ingest"
        for method in ("GET", "HEAD", "POST")
        for tail in ("", "/start", "/fail", "/{exit_code}")
    },
    **{
        (method, f"/ping/{{ping_key:pingkey}}/{{slug}}{tail}"): "ping-key"
        for method in ("GET", "HEAD", "POST")
        for tail in ("", "/start", "/fail", "/{exit_code}")
    },
    **{
        ("GET", path): "read"
        for path in (
            "/api/events",
            "/api/runs",
            "/api/runs/{run_id}",
            "/api/runs/{run_id}/logs",
            "/api/deployments",
            "/api/deployments/{name}",
            "/api/flow-runs",
            "/api/flow-runs/{run_id}",
            "/api/work-pools",
            "/api/automations",
            "/api/automations/{name}",
            "/api/incidents/{incident_id}/remediation",
            "/deployments",
            "/deployments/{name}",
            "/flow-runs/{run_id}",
            "/work-pools",
            "/automations",
            "/automations/{name}",
            "/api/concurrency",
            "/api/connections",
            "/api/connections/{name}",  # no secret in it
            "/runs/{run_id}/logs",
            "/api/pipelines",
            "/api/pipelines/{pipeline_id:path}",
            "/api/assets",
            "/api/assets/{asset_id:path}",
            "/api/lineage",
            "/api/slas",
            "/api/slas/{name}",
            "/api/slas/{name}/explain",
            "/api/slas/{name}/warnings",
            "/api/incidents",
            "/api/channels",
            "/openapi.json",
            "/docs",
            "/docs/oauth2-redirect",
            "/redoc",
            "/",
            "/graph",
            "/events",
            "/slas",
            "/slas/{name}",
            "/incidents",
            "/incidents/{incident_id}",
            "/pipelines/{pid:path}",
            "/assets/{aid:path}",
            "/backtest",
        )
    },
    ("HEAD", "/openapi.json"): "read",
    ("HEAD", "/docs"): "read",
    ("HEAD", "/docs/oauth2-redirect"): "read",
    ("HEAD", "/redoc"): "read",
    ("POST", "/api/slas/backtest"): "read",  # simulates only
    ("POST", "/backtest"): "read",
    ("POST", "/api/incidents/{incident_id}/ack"): "act",
    ("POST", "/api/incidents/{incident_id}/resolve"): "act",
    ("POST", "/incidents/{incident_id}/ack"): "act",
    ("POST", "/incidents/{incident_id}/resolve"): "act",
    ("POST", "/api/slas"): "admin",
    ("PUT", "/api/slas/{name}"): "admin",
    ("DELETE", "/api/slas/{name}"): "admin",
    ("POST", "/api/slas/reload"): "admin",
    ("PUT", "/api/concurrency/{name}"): "admin",
    ("PUT", "/api/connections/{name}"): "admin",
    ("DELETE", "/api/connections/{name}"): "admin",
    ("GET", "/api/connections/{name}/resolved"): "admin",  # the secrets in clear
    ("DELETE", "/api/concurrency/{name}"): "admin",
    ("GET", "/api/keys"): "admin",
    ("POST", "/api/keys"): "admin",
    ("DELETE", "/api/keys/{key}"): "admin",
    ("GET", "/api/secrets"): "admin",
    ("PUT", "/api/secrets/{name}"): "admin",
    ("DELETE", "/api/secrets/{name}"): "admin",
    ("GET", "/api/monitors/{slug}/ping-key"): "admin",
    ("POST", "/api/monitors/{slug}/ping-key"): "admin",
    ("DELETE", "/api/monitors/{slug}/ping-key"): "admin",
}

# what each path parameter is filled with: things that need not exist
PARAMS = {
    "ping_key:pingkey": "cpk_" + "A" * 24,  # a well-formed key that no monitor has
    "slug": "backup",
    "exit_code": "3",
    "run_id": "r1",
    "incident_id": "0" * 32,
    "name": "fresh",
    "key": "cpl_nothing",
    "pipeline_id:path": "etl.nightly",
    "asset_id:path": "wh.orders",
    "pid:path": "etl.nightly",
    "aid:path": "wh.orders",
    "action": "pause",
}
SCOPES_OF = {
    "ingest-key": ("ingest",),
    "read-key": ("read",),
    "admin-key": ("admin",),
    "viewer": ("read",),
    "editor": ("read", "act"),
    "admin": ("admin",),
}
PASSWORD = "correct horse battery"


def app_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path template) of every route, through included routers; mounts are left out
    (the only one is /static, checked on its own)."""
    for route in routes:
        if hasattr(route, "original_router"):  # an included router
            inner = prefix + (route.include_context.prefix or "")
            yield from app_routes(route.original_router.routes, inner)
        elif getattr(route, "methods", None):
            for method in route.methods:
                yield method, prefix + route.path


def concrete(template: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: PARAMS[m.group(1)], template)


@dataclass
class Asker:
    """One kind of caller: a bearer key, a session cookie, or nothing."""

    name: str
    bearer: str | None = None
    session: str | None = None


@pytest.fixture
def setup(store: Store, db_url: str) -> Iterator[tuple[TestClient, list[Asker]]]:
    settings = Settings(database_url=db_url, events_retention_days=0, auth="keys")
    askers = [Asker("no key"), Asker("wrong key", bearer="cpl_" + "x" * 43)]
    with store.connect() as conn:
        revoked = create_key(conn, "old", ["admin"])[1]
        revoke_key(conn, revoked[:12])
        askers.append(Asker("revoked key", bearer=revoked))
        for scope in ("ingest", "read", "admin"):
            askers.append(Asker(f"{scope}-key", bearer=create_key(conn, scope, [scope])[1]))
        for role in ("viewer", "editor", "admin"):
            create_user(conn, role, PASSWORD, role)
    with TestClient(create_app(settings, store=store)) as client:
        for role in ("viewer", "editor", "admin"):
            client.cookies.clear()
            client.get("/login")
            csrf = client.cookies[CSRF_COOKIE]
            done = client.post(
                "/login",
                data={"csrf_token": csrf, "name": role, "password": PASSWORD, "next": "/"},
                follow_redirects=False,
            )
            assert done.status_code == 303, done.text
            askers.append(Asker(role, session=done.cookies["coplane_session"]))
        yield client, askers


def ask(client: TestClient, asker: Asker, method: str, path: str) -> Any:
    client.cookies.clear()
    client.cookies.set(CSRF_COOKIE, "t" * 43)
    headers = {"Authorization": f"Bearer {asker.bearer}"} if asker.bearer else {}
    if asker.session:
        client.cookies.set("coplane_session", asker.session)
        headers["X-CSRF-Token"] = "t" * 43  # as a page of the UI would send it to /api
    # forms carry the CSRF token, so that a refusal here can only be the access check's
    data = {"csrf_token": "t" * 43} if method == "POST" and not path.startswith("/api/") else None
    return client.request(method, path, headers=headers, data=data, follow_redirects=False)


def test_every_route_is_listed(setup: tuple[TestClient, list[Asker]]) -> None:
    client, _ = setup
    found = set(app_routes(client.app.routes))  # type: ignore[attr-defined]
    assert found - EXPECTED.keys() == set(), "routes with no expected scope"
    assert EXPECTED.keys() - found == set(), "listed routes the app no longer has"


def test_each_route_as_each_asker(setup: tuple[TestClient, list[Asker]]) -> None:
    client, askers = setup
    # log-out ends the session it is sent with, so it goes last
    routes = sorted(EXPECTED.items(), key=lambda item: item[0] == ("POST", "/logout"))
    wrong: list[str] = []
    for asker in askers:
        for (method, template), needed in routes:
            resp = ask(client, asker, method, concrete(template))
            said = f"{asker.name}: {method} {template} -> {resp.status_code} {resp.text[:120]}"
            api = template.startswith(("/api/", "/ping/", "/openapi.json", "/docs", "/redoc"))
            if needed == "open":
                ok = resp.status_code not in (401, 403)
            elif needed == "ping-key":
                ok = resp.status_code == 404  # the key in the URL is nobody's, whoever asks
            elif asker.name not in SCOPES_OF:  # no key, a wrong one or a revoked one
                if api or method != "GET":
                    ok = resp.status_code == 401 and "Bearer" in resp.headers["www-authenticate"]
                else:
                    ok = resp.status_code == 303 and resp.headers["location"].startswith("/login")
            else:
                scopes = SCOPES_OF[asker.name]
                if "admin" in scopes or needed in scopes:
                    ok = resp.status_code not in (401, 403)
                else:
                    why = f"do not include {needed}"
                    ok = resp.status_code == 403 and (method == "HEAD" or why in resp.text)
            if not ok:
                wrong.append(said)
    assert wrong == [], "\n".join(wrong)


def test_static_files_are_open(setup: tuple[TestClient, list[Asker]]) -> None:
    client, _ = setup
    client.cookies.clear()
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/nothing.css").status_code == 404
