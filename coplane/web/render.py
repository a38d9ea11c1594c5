"""Rendering pages: the Jinja environment, its filters, and whole pages or one htmx block."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from jinja2_fragments import render_block
from markupsafe import Markup

from coplane.rules.common import span
from coplane.web import csrf

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

# Worst first: the order of the health page and of its status filter.
STATUSES = ("breached", "failed", "failing_checks", "at_risk", "late", "unknown", "ok")
# Every status is shown as a symbol and a word; colour only repeats what they say.
ICONS = {
    "breached": "✖",
    "failed": "✖",
    "failing_checks": "◆",
    "at_risk": "▲",
    "late": "◷",
    "unknown": "?",
    "ok": "✓",
    "open": "●",
    "acked": "◐",
    "resolved": "✓",
    "sent": "✓",
    "pending": "…",
    "dead": "✖",
    "skipped": "⊘",
    "silenced": "⊘",
    "inhibited": "⊘",
    "completed": "✓",
    "running": "▶",
    "scheduled": "…",
    "retrying": "↻",
    # not ⏸ (U+23F8): only emoji fonts draw it, and without one it shows as an empty box
    "paused": "‖",
    "cancelled": "⊘",
    "cached": "✓",
    "crashed": "✗",
    "passed": "✓",
}
# What each shown status looks like (its CSS class): run, incident and delivery states map
# onto the health colours so that one scheme covers every page.
TONES = {
    "open": "breached",
    "acked": "at_risk",
    "resolved": "ok",
    "sent": "ok",
    "pending": "unknown",
    "dead": "breached",
    "skipped": "unknown",
    "silenced": "unknown",
    "inhibited": "unknown",
    "completed": "ok",
    "passed": "ok",
    "running": "running",
    "scheduled": "unknown",
    "retrying": "at_risk",
    "paused": "at_risk",  # waiting for a person: worth a look
    "cancelled": "unknown",
    "cached": "ok",
    "crashed": "breached",
}


def tone(status: str) -> str:
    """The CSS tone of any shown status."""
    return TONES.get(status, status if status in STATUSES else "unknown")


def status_badge(status: str) -> Markup:
    """A status as icon (hidden from screen readers, which read the word) and text."""
    icon = ICONS.get(status, "?")
    label = status.replace("_", " ")
    return Markup(
        '<span class="status status-{}"><span class="icon" aria-hidden="true">{}</span> {}</span>'
    ).format(tone(status), icon, label)


def _utc(value: str | datetime) -> datetime:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return at.astimezone(UTC)


def when(value: str | datetime | None) -> Markup:
    """A timestamp as a `<time>` in UTC, to the minute; a dash when there is none."""
    if not value:
        return Markup('<span class="none">—</span>')
    at = _utc(value)
    return Markup('<time datetime="{}">{}</time>').format(
        at.isoformat(), at.strftime("%Y-%m-%d %H:%M UTC")
    )


def duration(seconds: float | None) -> str:
    """Seconds in words, such as `1h 2m` or `42s`; a dash when unknown."""
    if seconds is None:
        return "—"
    total = round(abs(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def relative(value: str | datetime | None, now: datetime | None = None) -> str:
    """How far a time is from now in words: `in 2h 5m` or `3m 10s ago`."""
    if not value:
        return ""
    seconds = (_utc(value) - (now or datetime.now(UTC))).total_seconds()
    return f"in {duration(seconds)}" if seconds >= 0 else f"{duration(seconds)} ago"


def percent(value: float | None) -> str:
    """A ratio as a percentage with one decimal; a dash when unknown."""
    return "—" if value is None else f"{value * 100:.1f}%"


# A duration rule's reason for a run still going (coplane.rules.duration): its elapsed time
# was true when it was evaluated, and the page shows it later, refreshing itself.
_RUNNING_FOR = re.compile(
    r"running for (?:\d+[dhms] ?)+ since (\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})?) UTC"
)


def live(text: str | None, now: datetime | None = None) -> str:
    """A reason with each "running for 12m since 2026-11-02 08:10 UTC" brought up to now."""
    if not text or "running for" not in text:
        return text or ""
    at = now or datetime.now(UTC)

    def elapsed(found: re.Match[str]) -> str:
        fmt = "%Y-%m-%d %H:%M:%S" if found[1].count(":") == 2 else "%Y-%m-%d %H:%M"
        started = datetime.strptime(found[1], fmt).replace(tzinfo=UTC)
        return f"running for {span(at - started)} since {found[1]} UTC"

    return _RUNNING_FOR.sub(elapsed, text)


def counted(count: int, noun: str) -> str:
    """"1 evaluation", "3 evaluations": a count with its noun in the right number."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html", "svg"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["status_badge"] = status_badge
    env.globals["tone"] = tone
    env.globals["statuses"] = STATUSES
    env.globals["icons"] = ICONS
    env.filters["when"] = when
    env.filters["duration"] = duration
    env.filters["relative"] = relative
    env.filters["percent"] = percent
    env.filters["counted"] = counted
    env.filters["live"] = live
    return env


ENV = _environment()


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    status_code: int = 200,
    blocks: tuple[str, ...] = (),
) -> HTMLResponse:
    """A template as a page, or just one of its `blocks` when htmx asks to refresh the element
    of that id (the `HX-Target` header): one template serves the page and its partials."""
    key = getattr(request.state, "key", None)  # set when COPLANE_AUTH=keys
    values = {"path": request.url.path, "query": request.url.query, "key": key, **context}
    if key is not None and "csrf_token" not in values:
        values["csrf_token"] = csrf.token_for(request)  # the log-out form's
    target = request.headers.get("hx-target", "")
    if request.headers.get("hx-request") == "true" and target in blocks:
        # htmx sets the tab's title from a <title> in a partial: the page's own, so that the
        # tab keeps naming what the (pushed) URL shows
        title = render_block(ENV, template, "title", **values).strip()
        html = render_block(ENV, template, target.replace("-", "_"), **values)
        html += f"\n<title>{title} · coplane</title>\n" if title else ""
    else:
        html = ENV.get_template(template).render(**values)
    response = HTMLResponse(html, status_code=status_code)
    if key is not None:
        csrf.set_token(request, response, values["csrf_token"])
    return response


def error_page(request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", {"title": title, "message": message}, status_code)
