"""Registering deployments from the API, the CLI and the config file: checked, stored, scheduled."""

from __future__ import annotations

from datetime import UTC, datetime

from coplane.orchestrate.deployments import DeploymentError, build_deployment
from coplane.orchestrate.schedules import create_scheduled_runs, sync_schedules
from coplane.rules.deployment import DeploymentSpec
from coplane.store import Store
from coplane.store.deployments import delete_deployment, list_deployments, upsert_deployment
from coplane.store.dialects import Row


def register_deployment(store: Store, spec: DeploymentSpec, origin: str, *, replace: bool) -> Row:
    """Check and store one deployment with its schedules, and make its upcoming runs."""
    row = build_deployment(spec, origin)  # loads the code: before any transaction
    now = datetime.now(UTC)
    with store.connect() as conn, conn.transaction():
        stored = upsert_deployment(conn, row, now, replace=replace)
        sync_schedules(store, conn, spec.name, spec.schedules, now)
    create_scheduled_runs(store, deployment=spec.name)
    return stored


def sync_file_deployments(store: Store, specs: list[DeploymentSpec]) -> list[str]:
    """Make the deployments of origin `file` those of the config file; the names kept.

    Each is checked before any is stored, so a file with a bad one changes nothing.
    """
    rows = []
    for index, spec in enumerate(specs):
        try:
            rows.append((spec, build_deployment(spec, "file")))
        except DeploymentError as exc:
            exc.index = index  # which entry of `deployments:`, for the problem's line
            raise
    now = datetime.now(UTC)
    with store.connect() as conn, conn.transaction():
        for spec, row in rows:
            upsert_deployment(conn, row, now, replace=True)
            sync_schedules(store, conn, spec.name, spec.schedules, now)
        names = {spec.name for spec, _ in rows}
        for old in list_deployments(conn, origin="file"):
            if old["name"] not in names:
                delete_deployment(conn, old["name"])
    create_scheduled_runs(store)
    return sorted(names)
