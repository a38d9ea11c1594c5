"""The SLA page: definition, state, the latest evaluations explained, incidents, and the links to
it from the SLAs list and from the incident an evaluation opened."""

from __future__ import annotations

import re
import uuid

from fastapi.testclient import TestClient

from coplane.rules.facts import Evaluation
from coplane.store import Store
from coplane.store.evaluations import EvaluationRecord, insert_sla_evaluations
from tests.slas.test_api_explain import NOW, seed
from tests.web.test_pages import FRESH, page, seed_slas


def test_the_sla_page_explains_each_evaluation(web: TestClient, store: Store) -> None:
    seed_slas(web, store)
    ok, late, incident_id = seed(store)
    html = page(web, "/slas/sales_fresh")
    assert "<h1>SLA: sales_fresh</h1>" in html
    assert "no update today" in html  # the current explanation
    assert FRESH["deadline"] in html and "Europe/Berlin" in html  # the definition
    # the evaluations, newest first, each with an anchor, its decision and its inputs
    anchors = re.findall(r'<tr id="evaluation-([0-9a-f-]+)">', html)
    assert anchors == [str(late.id), str(ok.id)]
    assert "no update since yesterday" in html and "updated in time" in html
    assert "<dt>Last update</dt>" in html
    assert '<time datetime="2026-03-01T07:00:00+00:00">2026-03-01 07:00 UTC</time>' in html
    # its incidents, each linking to the evaluation that opened it
    assert f'href="/incidents/{incident_id}"' in html
    assert f'href="#evaluation-{late.id}"' in html


def test_the_incident_page_links_to_the_evaluation_that_opened_it(
    web: TestClient, store: Store
) -> None:
    seed_slas(web, store)
    _, late, incident_id = seed(store)
    html = page(web, f"/incidents/{incident_id}")
    assert f'href="/slas/sales_fresh#evaluation-{late.id}">Opened by this evaluation</a>' in html


def test_the_slas_list_links_each_sla_to_its_page(web: TestClient, store: Store) -> None:
    seed_slas(web, store)
    html = page(web, "/slas")
    assert '<a href="/slas/sales_fresh">sales_fresh</a>' in html


def test_an_sla_never_evaluated_and_an_unknown_one(web: TestClient, store: Store) -> None:
    seed_slas(web, store)
    html = page(web, "/slas/quiet_hb")
    assert "No evaluation recorded yet" in html and "No incidents." in html
    assert "1h 0m" in html  # the period, in words
    assert "There is no SLA named nope" in page(web, "/slas/nope", 404)


def test_producer_text_that_starts_like_a_time_is_shown_as_text(
    web: TestClient, store: Store
) -> None:
    seed_slas(web, store)
    odd = "2026-12-01T00:00 batch missing"
    inputs = {
        "kind": "quality",
        "failing": [
            {"asset": "wh.t", "check": "rows", "at": "2026-03-01T07:00:00+00:00", "message": odd}
        ],
        "runs": [{"run": "2026-12-01T00:00:99-manual", "state": "failed", "started": None}],
    }
    record = EvaluationRecord(
        uuid.uuid4(), "sales_fresh", NOW, Evaluation("breached", explanation="x"), inputs
    )
    with store.connect() as conn:
        insert_sla_evaluations(conn, [record])
    html = page(web, "/slas/sales_fresh")
    assert odd in html and "2026-12-01T00:00:99-manual" in html
    assert '<time datetime="2026-03-01T07:00:00+00:00">' in html  # real times still are times
