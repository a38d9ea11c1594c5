"""The SLA preview: "would have fired N times in the last 30 days", before an SLA is saved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from coplane.http.deps import store_of
from coplane.rules.model import SLA
from coplane.slas import backtest
from coplane.web import csrf
from coplane.web.render import render

router = APIRouter(include_in_schema=False)

PREVIEW_DAYS = 30
_ADAPTER: TypeAdapter[SLA] = TypeAdapter(SLA)
_BLOCKS = ("backtest-form", "backtest-result")


def parse_sla_text(text: str) -> SLA:
    """One SLA written as YAML or JSON (JSON is YAML); ValueError naming the field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" on line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"not valid YAML or JSON{where}") from None
    if not isinstance(data, dict):
        raise ValueError("write one SLA: a mapping with name, kind and the kind's fields")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        if loc and loc[0] == data.get("kind"):
            loc = loc[1:]  # pydantic's union-tag element
        raise ValueError(f"{'.'.join(loc) or 'kind'}: {first['msg']}") from None


def _preview(request: Request, text: str) -> dict[str, Any]:
    """The preview's context: the breaches of the last PREVIEW_DAYS, or the error."""
    try:
        sla = parse_sla_text(text)
    except ValueError as exc:
        return {"error": str(exc)}
    end = datetime.now(UTC)
    start = end - timedelta(days=PREVIEW_DAYS)
    try:
        with backtest.backtest_slot():
            with store_of(request).connect() as conn:
                events = backtest.read_stored_events(conn, sla, start, end)
            result = backtest.run_backtest(
                sla, start, end, events, budget=backtest.TIME_BUDGET_S
            )
    except backtest.BacktestError as exc:
        return {"error": exc.message}
    return {"sla_name": sla.name, "result": backtest.backtest_json(result)}


def _page(request: Request, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    token = csrf.token_for(request)
    values = {"days": PREVIEW_DAYS, "text": "", "csrf_token": token, **context}
    response = render(request, "backtest.html", values, status_code, blocks=_BLOCKS)
    csrf.set_token(request, response, token)
    return response


@router.get("/backtest")
def backtest_page(request: Request) -> HTMLResponse:
    """The preview form (a page of its own, or the block the SLAs page loads into itself)."""
    return _page(request, {})


@router.post("/backtest")
async def backtest_form(request: Request) -> HTMLResponse:
    """Backtest the SLA of the form over the last PREVIEW_DAYS of stored events."""
    form = await csrf.read_form(request)
    if not csrf.token_matches(request, form):
        context = {"error": "The form's security token did not match: reload the page."}
        return _page(request, context, 403)
    text = form.get("sla", "")
    context = await run_in_threadpool(_preview, request, text)
    return _page(request, {"text": text, **context}, 422 if "error" in context else 200)
