"""Remediation: an SLA's `remediate: {deployment, parameters}` starts one run per incident.

The `remediate-incidents` job (every second, in each server) looks for open incidents of SLAs
whose `remediate` names a deployment and that have no remediation row yet. For each it starts
one run, under the idempotency key `incident:<id>` and with a remediation row keyed by the
incident, so several servers or a restart never start two. The run carries its causal chain
in its related resources (`{"role": "cause", "id": "incident:<id>"}` and `sla:<name>`), and
the incident's remediation row names the run: the incident page shows the run, the run page
the incident. Guards against loops: an incident about the remediation's own flow is not
remediated by it, a failed remediation is not started again for the same incident, and each
SLA starts at most `max_runs_per_hour` runs (default 10) in any hour. When the run completed
and the incident resolved (the SLA met again), the remediation is `remediated by run <id>`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from coplane.jobs.scheduler import job
from coplane.orchestrate.deployments import DeploymentError
from coplane.orchestrate.runs import create_flow_run
from coplane.rules.model import SLA
from coplane.settings import Settings
from coplane.store import Store
from coplane.store.deployments import read_deployment
from coplane.store.dialects import Row
from coplane.store.errors import NotFound
from coplane.store.remediations import (
    count_recent_remediations,
    insert_remediation,
    list_open_remediations,
    list_unremediated_incidents,
    settle_remediation,
)
from coplane.store.slas import list_slas

log = logging.getLogger(__name__)

# Templates see only the values they are given; the sandbox refuses attribute tricks.
_TEMPLATES = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def render_parameters(parameters: Any, context: dict[str, Any]) -> Any:
    """`parameters` with every string rendered as a sandboxed Jinja2 template of `context`."""
    if isinstance(parameters, str):
        if "{" not in parameters:
            return parameters
        return _TEMPLATES.from_string(parameters).render(context)
    if isinstance(parameters, dict):
        return {k: render_parameters(v, context) for k, v in parameters.items()}
    if isinstance(parameters, list):
        return [render_parameters(v, context) for v in parameters]
    return parameters


def _incident_context(sla: SLA, incident: Row) -> dict[str, Any]:
    return {
        "incident": {
            "id": str(incident["id"]),
            "sla": incident["sla"],
            "key": incident["key"],
            "reason": incident["reason"],
            "resource": incident["resource"],
            "due": incident["due"].isoformat(),
            "opened": incident["opened"].isoformat(),
        },
        "sla": {"name": sla.name, "severity": sla.severity, "labels": dict(sla.labels)},
    }


def start_remediations(store: Store, now: datetime | None = None) -> list[Row]:
    """Start the runs open incidents call for; the remediation rows this pass wrote."""
    now = now or datetime.now(UTC)
    with store.connect() as conn:
        slas = {
            s.sla.name: s.sla
            for s in list_slas(conn)
            if s.sla.remediate is not None and s.sla.remediate.deployment is not None
        }
        incidents = list_unremediated_incidents(conn, sorted(slas))
    written = []
    for incident in incidents:
        sla = slas[incident["sla"]]
        assert sla.remediate is not None and sla.remediate.deployment is not None
        with store.connect() as conn, conn.transaction():
            outcome, detail, run_id = _start_one(store, conn, sla, incident, now)
            if insert_remediation(conn, incident["id"], sla.name, sla.remediate.deployment,
                                  run_id, outcome, detail, now):  # fmt: skip
                written.append({"incident_id": incident["id"], "outcome": outcome,
                                "detail": detail, "run_id": run_id})  # fmt: skip
        log.info("incident %s of %s: %s", incident["id"], sla.name, detail)
    return written


def _start_one(
    store: Store, conn: Any, sla: SLA, incident: Row, now: datetime
) -> tuple[str, str, uuid.UUID | None]:
    """(outcome, detail, run id) for one incident, the run made in the caller's transaction."""
    remediate = sla.remediate
    assert remediate is not None and remediate.deployment is not None
    try:
        deployment = read_deployment(conn, remediate.deployment)
    except NotFound:
        return "refused", f"no deployment named {remediate.deployment!r}", None
    if incident["resource"] == deployment["flow"]:
        return "refused", (
            f"the incident is about {deployment['flow']}, the remediation's own flow: running "
            "it again could loop"
        ), None  # fmt: skip
    recent = count_recent_remediations(conn, sla.name, now - timedelta(hours=1))
    if recent >= remediate.max_runs_per_hour:
        return "rate_limited", (
            f"{recent} remediation runs of {sla.name} in the last hour "
            f"(max_runs_per_hour: {remediate.max_runs_per_hour}); none started"
        ), None  # fmt: skip
    try:
        parameters = render_parameters(remediate.parameters, _incident_context(sla, incident))
    except TemplateError as exc:
        return "refused", f"remediate.parameters: {exc}", None
    causes = [
        {"role": "cause", "id": f"incident:{incident['id']}"},
        {"role": "cause", "id": f"sla:{sla.name}"},
    ]
    try:
        run, _ = create_flow_run(
            store, conn, deployment, parameters, idempotency_key=f"incident:{incident['id']}",
            related=causes, now=now,
        )  # fmt: skip
    except DeploymentError as exc:
        return "refused", f"remediate.parameters: {exc}", None
    return "started", f"run {run['id']} of {deployment['name']} started", uuid.UUID(str(run["id"]))


def settle_remediations(store: Store, now: datetime | None = None) -> int:
    """Record the outcome of remediations whose run ended; how many were settled."""
    now = now or datetime.now(UTC)
    settled = 0
    with store.connect() as conn:
        rows = list_open_remediations(conn)
    for r in rows:
        state, run_id = r["run_state"], r["run_id"]
        if state == "completed" and r["resolved"] is not None:
            outcome, detail = "remediated", f"remediated by run {run_id}"
        elif state in ("failed", "cancelled", "crashed"):
            outcome, detail = state, f"run {run_id} {state}; not started again for this incident"
        elif state is None:
            outcome, detail = "refused", f"run {run_id} is gone (its deployment was deleted)"
        else:
            continue
        with store.connect() as conn:
            settle_remediation(conn, r["incident_id"], outcome, detail, now)
        settled += 1
    return settled


@job("remediate-incidents", every_s=1)
def remediate_incidents_job(store: Store, settings: Settings) -> int:
    """Start the remediation runs new incidents call for, and settle those that ended."""
    return len(start_remediations(store)) + settle_remediations(store)
