"""How Airflow's DAGs, tasks and their runs are named in coplane, by every Airflow collector.

The listener plugin, the REST poller and the OpenLineage translator all name a DAG run and a
task try the same way, so that what they report about one run merges into one run:

- a DAG is the pipeline `airflow.<instance>.<dag_id>`, and a DAG run's run key is its
  `run_id` (never `logical_date`, which can be null in Airflow 3);
- a task is `airflow.<instance>.<dag_id>.<task_id>`, and each try of a task instance is a
  child run keyed `<run_id>/<task_id>[/<map_index>]/<try_number>`.

`<instance>` tells Airflow deployments apart. The plugin and the poller take it from their
settings; OpenLineage events carry it as their job namespace
(`AIRFLOW__OPENLINEAGE__NAMESPACE`), so the plugin's default is that namespace too.
"""

from __future__ import annotations

SOURCE = "airflow"  # the `source` related resource of every Airflow event


def dag_resource(instance: str, dag_id: str) -> str:
    """The pipeline id of a DAG."""
    return f"airflow.{instance}.{dag_id}"


def task_resource(instance: str, dag_id: str, task_id: str) -> str:
    """The task id of one of a DAG's tasks."""
    return f"airflow.{instance}.{dag_id}.{task_id}"


def dag_run_key(run_id: str) -> str:
    """The run key of a DAG run."""
    return run_id


def task_run_key(run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
    """The run key of one try of a task instance (mapped instances apart by map_index)."""
    mapped = f"/{map_index}" if map_index >= 0 else ""
    return f"{run_id}/{task_id}{mapped}/{try_number}"


def asset_id(uri: str) -> str:
    """The asset id of an Airflow asset: its URI as the DAG declares it (Airflow normalises
    it when the DAG is parsed), so an SLA targets the URI its user wrote."""
    return uri


def dataset_asset_id(namespace: str, name: str) -> str:
    """The asset id of an OpenLineage dataset: the URI it names, so that the OpenLineage
    provider's report of an Airflow asset and the plugin's give one id.

    The provider splits an asset URI `scheme://authority/path` into the namespace
    `scheme://authority` (`scheme` alone when there is no authority, as in
    `file:///data/orders.csv`) and the name (`/data/orders.csv`; `path` without its leading
    slash for object stores such as `s3://bucket/key`), after
    https://openlineage.io/docs/spec/naming; joining them back gives the URI. Any other
    dataset keeps `<namespace>/<name>`.
    """
    if name.startswith("/"):
        if "://" not in namespace:
            return f"{namespace}://{name}"  # `file` + `/data/orders.csv`
        return f"{namespace}{name}"  # `file://host` + `/data/orders.csv`
    return f"{namespace}/{name}"
