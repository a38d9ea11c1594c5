"""The health page: one tile per pipeline and per asset with an SLA, worst first, refreshed by
htmx. A tile's status is the worst of what its SLAs, its last run and its checks say."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import translate
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from coplane.events import names as n
from coplane.http.deps import store_of
from coplane.rules.model import SLA, ExpectedEventSLA, HeartbeatSLA
from coplane.store.health import (
    failing_assets,
    health_resources,
    labels_of,
    latest_runs,
    open_incidents_by_resource,
    usual_durations,
)
from coplane.store.runs import duration_s
from coplane.store.slas import StoredSla, list_slas
from coplane.web.render import STATUSES, render

router = APIRouter(include_in_schema=False)

TILE_LIMIT = 120  # tiles drawn at once, worst first; filters narrow the rest down
LATE_FACTOR = 2.0  # a run going for longer than this many times the usual duration is late
REFRESH = "every 10s"
_RANK = {status: i for i, status in enumerate(STATUSES)}


@dataclass(slots=True)
class Tile:
    kind: str  # pipeline, asset or sla
    id: str
    source: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    owners: set[str] = field(default_factory=set)
    slas: list[StoredSla] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    run: dict[str, Any] | None = None
    failing_checks: bool = False
    status: str = "unknown"
    reason: str = ""
    usual_s: float | None = None
    next_deadline: datetime | None = None

    @property
    def url(self) -> str:
        if self.kind == "sla":
            return f"/slas/{quote(self.id)}"
        return f"/{self.kind}s/{quote(self.id, safe=':@/')}"


def sla_patterns(sla: SLA) -> list[str]:
    """The resource ids or globs an SLA watches (none for an expected event on any resource)."""
    match sla:
        case HeartbeatSLA():
            return [f"cron.{sla.target}"]
        case ExpectedEventSLA():
            return [r for r in (sla.expect.resource,) if r is not None]
        case _:
            return [sla.target]


class SlaIndex:
    """Which SLAs watch a resource: exact ids by lookup, globs by one regular expression each."""

    def __init__(self, slas: Iterable[StoredSla]) -> None:
        self.exact: dict[str, list[StoredSla]] = {}
        self.globs: list[tuple[re.Pattern[str], StoredSla]] = []
        for s in slas:
            for pattern in sla_patterns(s.sla):
                if set("*?[").isdisjoint(pattern):
                    self.exact.setdefault(pattern, []).append(s)
                else:
                    self.globs.append((re.compile(translate(pattern)), s))

    def watching(self, resource: str) -> list[StoredSla]:
        found = list(self.exact.get(resource, ()))
        found += [s for rx, s in self.globs if rx.match(resource)]
        return found


def _status(tile: Tile, now: datetime) -> tuple[str, str]:
    """The tile's status and, for anything but ok, a few words on why."""
    sla_status = {s.sla.name: (s.state or {}).get("status") or "unknown" for s in tile.slas}
    breached = [name for name, st in sla_status.items() if st == "breached"]
    if tile.incidents or breached:
        names = sorted({i["sla"] for i in tile.incidents} | set(breached))
        return "breached", "SLA breached: " + ", ".join(names)
    run = tile.run
    if run is not None and run["state"] == "failed":
        return "failed", "last run failed"
    if tile.failing_checks:
        return "failing_checks", "a check failed"
    at_risk = sorted(name for name, st in sla_status.items() if st == "at_risk")
    if at_risk:
        return "at_risk", "SLA at risk: " + ", ".join(at_risk)
    if run is not None and run["state"] == "retrying":
        return "at_risk", "last run is retrying"
    if run is not None and run["state"] == "running" and run["started"] and tile.usual_s:
        going = (now - run["started"]).total_seconds()
        if going > LATE_FACTOR * tile.usual_s:
            return "late", "running for longer than twice the usual"
    if tile.kind == "sla":
        return next(iter(sla_status.values()), "unknown"), ""
    if run is None and all(st == "unknown" for st in sla_status.values()) and tile.kind != "asset":
        return "unknown", "no runs yet"
    if tile.kind == "asset" and sla_status and all(st == "unknown" for st in sla_status.values()):
        return "unknown", "not evaluated yet"
    return "ok", ""


def _owners(labels: dict[str, Any], slas: list[StoredSla]) -> set[str]:
    owners = {o for s in slas for o in s.sla.owners}
    if isinstance(labels.get("owner"), str):
        owners.add(labels["owner"])
    return owners


def build_tiles(request: Request, now: datetime) -> list[Tile]:
    """Every tile with its status, worst first (before filtering)."""
    with store_of(request).connect() as conn:
        resources = health_resources(conn)
        runs = latest_runs(conn)
        failing = failing_assets(conn)
        incidents = open_incidents_by_resource(conn)
        slas = list_slas(conn)
        index = SlaIndex(slas)
        tiles: list[Tile] = []
        watched: set[str] = set()
        shown = [(r, index.watching(r["id"])) for r in resources]
        # an asset gets a tile when an SLA watches it
        shown = [(r, w) for r, w in shown if w or r["kind"] != n.KIND_ASSET]
        asset_labels = labels_of(conn, [r["id"] for r, _ in shown if r["kind"] == n.KIND_ASSET])
        for r, watching in shown:
            watched |= {s.sla.name for s in watching}
            labels = r.get("labels", asset_labels.get(r["id"]))
            labels = labels if isinstance(labels, dict) else {}
            run = runs.get(r["id"])
            tiles.append(
                Tile(
                    kind=r["kind"],
                    id=r["id"],
                    source=r["source"],
                    labels={k: str(v) for k, v in labels.items()},
                    owners=_owners(labels, watching),
                    slas=watching,
                    incidents=incidents.get(r["id"], []),
                    run=None if run is None else {**run, "duration_s": duration_s(run)},
                    failing_checks=r["id"] in failing,
                )
            )
        for s in slas:
            if s.sla.name not in watched:  # an SLA over nothing on show gets its own tile
                tiles.append(Tile(kind="sla", id=s.sla.name, owners=set(s.sla.owners), slas=[s]))
        running = [t.id for t in tiles if t.run is not None and t.run["state"] == "running"]
        usual = usual_durations(conn, running)
    for t in tiles:
        t.usual_s = usual.get(t.id)
        t.status, t.reason = _status(t, now)
        deadlines = [d for s in t.slas if (d := (s.state or {}).get("next_deadline"))]
        t.next_deadline = min(deadlines) if deadlines else None
    tiles.sort(key=lambda t: (_RANK.get(t.status, len(_RANK)), t.kind, t.id))
    return tiles


@dataclass(frozen=True, slots=True)
class Filters:
    status: str = ""
    source: str = ""
    owner: str = ""
    label: str = ""  # key or key=value
    q: str = ""

    def keep(self, t: Tile) -> bool:
        if self.status and t.status != self.status:
            return False
        if self.source and t.source != self.source:
            return False
        if self.owner and self.owner not in t.owners:
            return False
        if self.label:
            key, _, value = self.label.partition("=")
            labels = {**t.labels, **{k: v for s in t.slas for k, v in s.sla.labels.items()}}
            if key not in labels or (value and labels[key] != value):
                return False
        return not self.q or self.q.lower() in t.id.lower()

    @property
    def active(self) -> bool:
        return any((self.status, self.source, self.owner, self.label, self.q))


@router.get("/")
def health_page(
    request: Request,
    status: str = "",
    source: str = "",
    owner: str = "",
    label: str = "",
    q: str = "",
) -> HTMLResponse:
    """The health tiles, worst first, filtered; htmx refreshes the `tiles` block alone."""
    now = datetime.now(UTC)
    tiles = build_tiles(request, now)
    if status not in STATUSES:
        status = ""  # an unknown status filters nothing, and the form shows "any"
    f = Filters(status, source.strip(), owner.strip(), label.strip(), q.strip())
    shown = [t for t in tiles if f.keep(t)]
    counts = {s: 0 for s in STATUSES}
    for t in tiles:
        counts[t.status] = counts.get(t.status, 0) + 1
    context = {
        "tiles": shown[:TILE_LIMIT],
        "matched": len(shown),
        "total": len(tiles),
        "counts": counts,
        "sources": sorted({t.source for t in tiles if t.source}),
        "filters": f,
        "now": now,
        "refresh": REFRESH,
        "limit": TILE_LIMIT,
    }
    return render(request, "health.html", context, blocks=("tiles",))
