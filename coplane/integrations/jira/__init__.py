"""Jira Cloud: a ticket for each incident that needs one."""
