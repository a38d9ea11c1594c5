"""PagerDuty: an incident that pages whoever is on call, resolved when the SLA is met again."""
