"""dbt projects: `coplane dbt ingest` and `coplane dbt run` report a dbt invocation's artifacts."""
