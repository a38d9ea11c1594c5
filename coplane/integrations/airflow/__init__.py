"""Airflow: a listener plugin, a REST poller, and the names both share with OpenLineage."""
