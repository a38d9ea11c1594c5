"""Fuzz tests: the OpenAPI schema (schemathesis), the event model and OpenLineage (hypothesis)."""
