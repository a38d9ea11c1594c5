"""The web UI: every page empty and full, health ordering and filters, the incident page's
forms with their CSRF check, error pages, the stylesheet, and the HTML's landmarks and labels."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from coplane.rules.facts import Breach, Evaluation
from coplane.rules.model import SLA
from coplane.store import Store
from coplane.store.incidents import apply_evaluation
from coplane.store.slas import save_sla_state
from coplane.web.routes import CSRF_COOKIE
from tests.factories import event_dict

ADAPTER: TypeAdapter[SLA] = TypeAdapter(SLA)
NOW = datetime.now(UTC).replace(microsecond=0)
LATER = NOW + timedelta(days=1)

FRESH: dict[str, Any] = {
    "name": "sales_fresh",
    "kind": "freshness",
    "target": "asset:sales_daily",
    "deadline": "0 9 * * *",
    "timezone": "Europe/Berlin",
    "notify": ["slack-data", "email-oncall"],
}
LATE: dict[str, Any] = {
    "name": "late_job",
    "kind": "heartbeat",
    "target": "etl.slow",
    "period": "1h",
}
QUIET: dict[str, Any] = {
    "name": "quiet_hb",
    "kind": "heartbeat",
    "target": "etl.good",
    "period": "1h",
}


def post_events(web: TestClient, *events: dict[str, Any]) -> None:
    resp = web.post("/api/events", json=list(events))
    assert resp.status_code == 202, resp.text


def seed_pipelines(web: TestClient) -> None:
    def run(pipeline: str, key: str, end: str | None, minutes: float) -> list[dict[str, Any]]:
        out = [event_dict("run.started", pipeline, run=key, kind="pipeline")]
        if end:
            out.append(event_dict(end, pipeline, run=key, kind="pipeline", minutes=minutes))
        return out

    post_events(
        web,
        *run("etl.good", "g1", "run.completed", 65),
        *run("etl.bad", "b1", "run.failed", 2),
        *run("etl.slow", "s1", "run.retrying", 1),
    )


def seed_slas(web: TestClient, store: Store) -> None:
    for body in (FRESH, LATE, QUIET):
        resp = web.post("/api/slas", json=body)
        assert resp.status_code == 201, resp.text
    with store.connect() as conn:
        save_sla_state(
            conn,
            "sales_fresh",
            Evaluation(status="breached", next_deadline=LATER, explanation="no update today"),
            NOW,
        )
        save_sla_state(conn, "late_job", Evaluation(status="at_risk", next_deadline=LATER), NOW)


def open_incident(
    store: Store, key: str = "k1", sla: dict[str, Any] = FRESH, resource: str | None = None
) -> str:
    breach = Breach(
        key=key, due=NOW - timedelta(minutes=30), reason=f"sales_daily: no update ({key})",
        resource=resource,
    )  # fmt: skip
    with store.connect() as conn:
        opened, _ = apply_evaluation(
            conn,
            ADAPTER.validate_python(sla),
            Evaluation(status="breached", breaches=[breach]),
            lambda _: ["asset:sales_report", "dashboard:revenue"],
            NOW,
        )
    return str(opened[0]["id"])


def page(web: TestClient, url: str, status: int = 200) -> str:
    resp = web.get(url)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    return resp.text


def h1(html: str) -> str:
    match = re.search(r"<h1>(.*?)</h1>", html, re.S)
    assert match, "no <h1>"
    return match.group(1).strip()


def csrf(web: TestClient, html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field"
    assert web.cookies.get(CSRF_COOKIE) == match.group(1)
    return match.group(1)


def tile_names(html: str) -> list[str]:
    return re.findall(
        r'<li class="tile[^"]*">\s*<h2><span class="kind">[^<]+</span> <a[^>]*>([\w.:]+)</a>', html
    )


# --- pages, empty and full --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "title", "empty"),
    [
        ("/", "Health", "No pipelines or SLAs yet"),
        ("/slas", "SLAs", "No SLAs yet"),
        ("/incidents", "Incidents", "No incidents"),
        ("/incidents?state=open", "Open incidents", "No incidents open"),
        ("/incidents?state=resolved", "Resolved incidents", "No incidents resolved"),
    ],
)
def test_empty_pages(web: TestClient, url: str, title: str, empty: str) -> None:
    html = page(web, url)
    assert f"<title>{title} · coplane</title>" in html
    assert h1(html) == title
    assert empty in html


def test_health_shows_every_pipeline_and_sla_worst_first(web: TestClient, store: Store) -> None:
    seed_pipelines(web)
    seed_slas(web, store)
    html = page(web, "/")
    assert tile_names(html) == [
        "sales_fresh",  # breached (an SLA over nothing on show gets a tile of its own)
        "etl.bad",  # failed
        "etl.slow",  # at risk: its last run is retrying (pipelines before SLAs)
        "late_job",  # at risk
        "quiet_hb",  # unknown: never evaluated
        "etl.good",  # ok
    ]
    assert "6 of 6 shown" in html
    assert '<span class="icon" aria-hidden="true">✖</span> breached' in html
    assert '<span class="icon" aria-hidden="true">✖</span> failed' in html
    assert "1h 5m" in html  # etl.good's duration
    assert "failed · started" in html
    assert LATER.strftime("%Y-%m-%d %H:%M UTC") in html  # next deadline


def test_health_filters(web: TestClient, store: Store) -> None:
    seed_pipelines(web)
    seed_slas(web, store)
    assert tile_names(page(web, "/?status=at_risk")) == ["etl.slow", "late_job"]
    assert tile_names(page(web, "/?q=ETL.")) == ["etl.bad", "etl.slow", "etl.good"]
    assert tile_names(page(web, "/?status=ok&q=good")) == ["etl.good"]
    html = page(web, "/?status=breached&q=nothing")
    assert tile_names(html) == [] and "Nothing matches this filter" in html
    # the form keeps what was asked
    html = page(web, "/?status=failed&q=bad")
    assert '<option value="failed" selected>' in html and 'value="bad"' in html
    # an unknown status filters nothing
    assert len(tile_names(page(web, "/?status=bogus"))) == 6


def test_slas_page(web: TestClient, store: Store) -> None:
    seed_slas(web, store)
    open_incident(store, "a")
    open_incident(store, "b")  # resolves "a": an evaluation lists every open breach
    open_incident(store, "x", sla=LATE)
    html = page(web, "/slas")
    assert h1(html) == "SLAs"
    for name in ("sales_fresh", "late_job", "quiet_hb"):
        assert f'id="sla-{name}"' in html
    assert "freshness" in html and "heartbeat" in html and "asset:sales_daily" in html
    assert "no update today" in html
    assert '/incidents?state=open&amp;sla=sales_fresh">1 open</a>' in html
    assert '/incidents?state=open&amp;sla=late_job">1 open</a>' in html
    assert '/incidents?state=open&amp;sla=quiet_hb">0 open</a>' in html


def test_incidents_page_lists_and_filters(web: TestClient, store: Store) -> None:
    seed_slas(web, store)
    first = open_incident(store, "a")
    other = open_incident(store, "x", sla=LATE)
    html = page(web, "/incidents")
    assert f'href="/incidents/{first}"' in html and f'href="/incidents/{other}"' in html
    assert "sales_daily: no update (a)" in html
    assert "slack-data (trigger)" in html and "email-oncall (trigger)" in html
    assert '<span class="icon" aria-hidden="true">●</span> open' in html

    html = page(web, "/incidents?state=open&sla=sales_fresh")
    assert h1(html) == "Open incidents of sales_fresh"
    assert first in html and other not in html
    assert "No incidents resolved" in page(web, "/incidents?state=resolved")
    assert "state must be open or resolved" in page(web, "/incidents?state=closed", 400)


def test_incident_page_shows_affected_and_notifications(web: TestClient, store: Store) -> None:
    seed_slas(web, store)
    cause = open_incident(store, "a", resource="asset:sales_daily")
    iid = open_incident(store, "b")
    html = page(web, f"/incidents/{iid}")
    assert h1(html) == "Incident: sales_fresh"
    assert "sales_daily: no update (b)" in html
    assert "<li>asset:sales_report</li>" in html and "<li>dashboard:revenue</li>" in html
    assert "<td>slack-data</td>" in html and "<td>email-oncall</td>" in html
    assert "<td>trigger</td>" in html
    assert 'action="/incidents/' + iid + '/ack"' in html
    assert 'action="/incidents/' + iid + '/resolve"' in html
    assert "asset:sales_daily" in page(web, f"/incidents/{cause}")


def test_inhibited_by_links_to_its_cause(web: TestClient, store: Store) -> None:
    seed_slas(web, store)
    post_events(
        web,
        event_dict(
            "run.completed", "etl.sales", run="r1", kind="pipeline",
            related=[{"role": "output", "id": "asset:sales_report"}],
        ),
    )  # fmt: skip
    cause = open_incident(store, "a", resource="etl.sales")
    with store.connect() as conn:
        opened, _ = apply_evaluation(
            conn,
            ADAPTER.validate_python(LATE),
            Evaluation(
                status="breached",
                breaches=[Breach(key="z", due=NOW, reason="late", resource="asset:sales_report")],
            ),
            lambda _: [],
            NOW,
        )
    child = opened[0]
    assert str(child["inhibited_by"]) == cause
    html = page(web, f"/incidents/{child['id']}")
    # named by its SLA and reason, not by its UUID
    assert f'<a href="/incidents/{cause}">sales_fresh</a>: sales_daily: no update (a)' in html
    assert f"incident {cause}" not in html


# --- ack and resolve through the forms --------------------------------------------------------


def api_incident(web: TestClient, iid: str) -> dict[str, Any]:
    listed: list[dict[str, Any]] = web.get("/api/incidents").json()["incidents"]
    found = [i for i in listed if i["id"] == iid]
    assert len(found) == 1
    return found[0]


def test_ack_then_resolve_through_the_forms(web: TestClient, store: Store) -> None:
    seed_slas(web, store)
    iid = open_incident(store)
    token = csrf(web, page(web, f"/incidents/{iid}"))
    cookie = web.cookies.get(CSRF_COOKIE)
    assert cookie == token

    resp = web.post(f"/incidents/{iid}/ack", data={"csrf_token": token}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == f"/incidents/{iid}"
    assert api_incident(web, iid)["acked"] is not None
    html = page(web, f"/incidents/{iid}")
    assert '<span class="icon" aria-hidden="true">◐</span> acked' in html
    assert "/ack" not in html  # acked once is enough; resolving is still offered

    resp = web.post(f"/incidents/{iid}/resolve", data={"csrf_token": csrf(web, html)})
    assert resp.status_code == 200 and str(resp.url).endswith(f"/incidents/{iid}")
    incident = api_incident(web, iid)
    assert incident["resolved"] is not None
    # the same 'resolve' alerts the API queues
    assert sorted((n["channel"], n["action"]) for n in incident["notifications"]) == [
        ("email-oncall", "resolve"),
        ("email-oncall", "trigger"),
        ("slack-data", "resolve"),
        ("slack-data", "trigger"),
    ]
    assert "<form" not in resp.text.split("</header>")[1].split("Affected downstream")[0]

    again = web.post(f"/incidents/{iid}/resolve", data={"csrf_token": token})
    assert again.status_code == 409 and "already resolved" in again.text
    assert web.post(f"/incidents/{iid}/ack", data={"csrf_token": token}).status_code == 409
    assert len(api_incident(web, iid)["notifications"]) == 4


def test_the_cookie_is_http_only_and_strict(web: TestClient, store: Store) -> None:
    iid = open_incident(store)
    cookie = web.get(f"/incidents/{iid}").headers["set-cookie"]
    assert cookie.startswith(f"{CSRF_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    # the token stays across pages, so that several open tabs keep working
    first = web.cookies.get(CSRF_COOKIE)
    web.get(f"/incidents/{iid}")
    assert web.cookies.get(CSRF_COOKIE) == first


@pytest.mark.parametrize("action", ["ack", "resolve"])
@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_a_post_without_the_right_token_is_403_and_changes_nothing(
    web: TestClient, store: Store, action: str, token: str | None
) -> None:
    iid = open_incident(store)
    page(web, f"/incidents/{iid}")  # sets the cookie
    before = api_incident(web, iid)
    data = {} if token is None else {"csrf_token": token}
    resp = web.post(f"/incidents/{iid}/{action}", data=data)
    assert resp.status_code == 403
    assert "security token did not match" in resp.text and "Nothing was changed" in resp.text
    assert api_incident(web, iid) == before


def test_a_post_without_the_cookie_is_403(web: TestClient, store: Store) -> None:
    iid = open_incident(store)
    token = csrf(web, page(web, f"/incidents/{iid}"))
    web.cookies.clear()
    resp = web.post(f"/incidents/{iid}/resolve", data={"csrf_token": token})
    assert resp.status_code == 403
    assert api_incident(web, iid)["resolved"] is None


# --- errors, static files, markup -------------------------------------------------------------


@pytest.mark.parametrize("iid", ["5809d6e1-604b-4449-b088-e6bfa65bfbbf", "not-a-uuid"])
def test_unknown_incident_is_a_404_page(web: TestClient, iid: str) -> None:
    html = page(web, f"/incidents/{iid}", 404)
    assert h1(html) == "Incident not found"
    page(web, "/")  # a page that sets no cookie: the POST below has a cookie from nowhere
    web.cookies.set(CSRF_COOKIE, "t" * 43)
    resp = web.post(f"/incidents/{iid}/ack", data={"csrf_token": "t" * 43})
    assert resp.status_code == 404 and "Incident not found" in resp.text


def test_static_css_is_served(web: TestClient) -> None:
    resp = web.get("/static/style.css")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/css")
    assert "prefers-color-scheme: dark" in resp.text
    assert '<link rel="stylesheet" href="/static/style.css">' in page(web, "/")


def test_web_routes_stay_out_of_the_openapi_schema(web: TestClient) -> None:
    paths = web.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if not p.startswith(("/api", "/ping"))]


class Markup(HTMLParser):
    """Collects landmarks, form controls, labels and the skip link of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.controls: list[dict[str, str | None]] = []
        self.labels: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append(a)
        if tag == "label" and a.get("for"):
            self.labels.add(str(a["for"]))
        if tag == "a" and a.get("href"):
            self.links.append(str(a["href"]))


@pytest.mark.parametrize("url", ["/", "/slas", "/incidents", "/incidents/{iid}"])
def test_pages_have_landmarks_and_labelled_controls(
    web: TestClient, store: Store, url: str
) -> None:
    seed_slas(web, store)
    html = page(web, url.format(iid=open_incident(store)))
    parsed = Markup()
    parsed.feed(html)
    for landmark in ("header", "nav", "main", "footer", "title", "h1"):
        assert landmark in parsed.tags, landmark
    assert parsed.links[0] == "#main" and 'id="main"' in html  # the skip link comes first
    assert {"/", "/slas", "/incidents"} <= set(parsed.links)
    assert 'aria-current="page"' in html
    for control in parsed.controls:
        assert control.get("id") in parsed.labels, control
    if url == "/":
        assert len(parsed.controls) == 5  # status, source, owner, label and the search box


def test_ack_redirect_is_a_get_of_the_page(web: TestClient, store: Store) -> None:
    iid = open_incident(store)
    token = csrf(web, page(web, f"/incidents/{iid}"))
    resp = web.post(f"/incidents/{iid}/ack", data={"csrf_token": token})
    assert resp.status_code == 200 and resp.history[0].status_code == 303
    assert resp.history[0].headers["location"] == f"/incidents/{iid}"
