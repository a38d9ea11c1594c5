"""The facts of an alert in words, shared by every channel's message format."""

from __future__ import annotations

from datetime import datetime

from coplane.alerts.notifier import Alert

MAX_AFFECTED = 10  # a message lists this many affected resources, then "and N more"


def headline(alert: Alert) -> str:
    """The first line: what happened, such as 'sales_fresh breached: no update since ...'."""
    if alert.action == "test":
        return f"Test alert from coplane to channel {alert.channel}: delivery works."
    if alert.action == "notify":
        return alert.reason  # the automation's own words
    if alert.action == "warn":
        return f"Early warning: {alert.reason}"
    if alert.action == "resolve" and alert.warning:
        return f"Met in time: {alert.sla} made its deadline (was at risk: {alert.reason})"
    if alert.action == "resolve":
        return f"Resolved: {alert.sla} is met again (was: {alert.reason})"
    if alert.action == "repeat":
        return f"Still open: {alert.reason}"
    return alert.reason


def affected_text(alert: Alert) -> str:
    """The affected downstream resources, shortened; 'none known' when there are none."""
    if not alert.affected:
        return "none known"
    shown = ", ".join(alert.affected[:MAX_AFFECTED])
    rest = len(alert.affected) - MAX_AFFECTED
    return shown + (f" and {rest} more" if rest > 0 else "")


def when(value: datetime | None) -> str:
    """A time as ISO 8601 UTC to the second, or '-'."""
    return "-" if value is None else value.isoformat(timespec="seconds")


def fields(alert: Alert) -> list[tuple[str, str]]:
    """(label, value) pairs describing the incident (or the automation), in display order."""
    if alert.action == "notify":
        return [
            ("Automation", alert.automation or "-"),
            ("Event", alert.event or "-"),
            ("Resource", alert.resource or "-"),
            ("Fired", when(alert.opened)),
        ]
    out = [
        ("SLA", alert.sla),
        ("Severity", alert.severity),
        ("Resource", alert.resource or "-"),
        ("Due", when(alert.due)),
        ("Opened", when(alert.opened)),
    ]
    if alert.resolved is not None:
        out.append(("Resolved", when(alert.resolved)))
    if alert.owners:
        out.append(("Owners", ", ".join(alert.owners)))
    out.append(("Affected downstream", affected_text(alert)))
    return out


def plain(alert: Alert) -> str:
    """The whole alert as plain text (or Markdown without markup): headline, fields, link."""
    lines = [headline(alert), ""]
    lines += [f"{label}: {value}" for label, value in fields(alert)]
    lines += ["", f"{link_label(alert)}: {alert.url}"]
    return "\n".join(lines)


def link_label(alert: Alert) -> str:
    """What the alert's link opens: 'Incident', or 'Automation' for a `notify` message."""
    return "Automation" if alert.action == "notify" else "Incident"
