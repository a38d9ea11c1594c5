"""Cron jobs: `coplane cron wrap` runs a command and reports it through the ping endpoints."""
