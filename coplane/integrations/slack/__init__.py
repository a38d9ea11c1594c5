"""Slack: Block Kit alerts, threaded per incident with a bot token, flat with a webhook."""
