"""Security headers on every response, pages and API alike, with a looser policy only for the
third-party API docs pages."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize("url", ["/", "/graph", "/events", "/api/health", "/static/style.css"])
def test_every_response_carries_the_security_headers(client: TestClient, url: str) -> None:
    resp = client.get(url)
    assert resp.status_code == 200
    policy = resp.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "style-src 'self';" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["referrer-policy"] == "same-origin"
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_error_responses_carry_them_too(client: TestClient) -> None:
    resp = client.get("/api/runs/not-a-run")
    assert resp.status_code >= 400 and resp.headers["x-frame-options"] == "DENY"


def test_the_api_docs_page_may_load_swagger_ui(client: TestClient) -> None:
    resp = client.get("/docs")
    policy = resp.headers["content-security-policy"]
    assert "https://cdn.jsdelivr.net" in policy and "frame-ancestors 'none'" in policy
