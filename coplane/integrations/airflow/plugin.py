"""The Airflow plugin registering coplane's listener, found by the `airflow.plugins` entry point.

`pip install 'coplane[airflow]'` in Airflow's environment is all it takes: Airflow loads
plugins named by the `airflow.plugins` entry point of installed packages
(https://airflow.apache.org/docs/apache-airflow/stable/administration-and-deployment/plugins.html),
so no file is copied into the plugins folder. The listener sends nothing until
`[coplane] url` (or `AIRFLOW__COPLANE__URL`) is set.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from coplane.integrations.airflow.listener import listener


class CoplanePlugin(AirflowPlugin):  # type: ignore[misc]  # Airflow is untyped where mypy runs
    """Registers the listener that reports DAG runs and task tries to coplane."""

    name = "coplane"
    listeners = [listener]  # noqa: RUF012  # the attribute Airflow reads
