"""Tests for the collector: native events, OpenLineage, cron pings."""
