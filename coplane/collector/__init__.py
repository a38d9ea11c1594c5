"""HTTP ingest: native events, OpenLineage, cron pings."""
