"""How a dbt project, its nodes, their runs and their relations are named in coplane.

`coplane dbt ingest` (from dbt's artifacts) and the OpenLineage translator (from `dbt-ol`'s
events) name one dbt invocation the same way, so that what both report about it merges:

- the project is the pipeline `dbt.<project>`, and an invocation is a run of it whose run
  key is dbt's `invocation_id`;
- a model, seed or snapshot is the task `dbt.<project>.<unique_id>`, and its run within an
  invocation is a child run keyed `<invocation_id>:<unique_id>`;
- a relation is the asset `<adapter_type>://<database>.<schema>.<identifier>`, in lower
  case (`duckdb://dev.main.orders`).
"""

from __future__ import annotations

SOURCE = "dbt"  # the `source` related resource of every dbt event


def pipeline_resource(project: str) -> str:
    """The pipeline id of a dbt project."""
    return f"dbt.{project}"


def node_resource(project: str, unique_id: str) -> str:
    """The task id of a model, seed or snapshot of a project."""
    return f"{pipeline_resource(project)}.{unique_id}"


def invocation_run_key(invocation_id: str) -> str:
    """The run key of a dbt invocation."""
    return invocation_id


def node_run_key(invocation_id: str, unique_id: str) -> str:
    """The run key of one node's run within an invocation."""
    return f"{invocation_id}:{unique_id}"


def asset_id(
    adapter: str, database: str | None, schema: str | None, identifier: str | None
) -> str | None:
    """`<adapter>://<database>.<schema>.<identifier>` in lower case, leaving out unset parts."""
    if not identifier:
        return None
    parts = [p for p in (database, schema, identifier) if p]
    return f"{adapter}://{'.'.join(parts)}".lower()


def openlineage_asset_id(namespace: str, name: str) -> str:
    """The asset id of a relation as OpenLineage names it (namespace `<scheme>://<where>`,
    name `<database>.<schema>.<identifier>`): `<scheme>://<name>` in lower case, which is
    `asset_id`'s whenever the scheme is dbt's adapter type (duckdb, postgres, snowflake,
    redshift, ...)."""
    scheme = namespace.split("://", 1)[0] if "://" in namespace else namespace
    return f"{scheme}://{name}".lower()
