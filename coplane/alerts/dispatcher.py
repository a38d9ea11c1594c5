"""The outbox dispatcher: claims due notifications, applies the channel's policy, and sends them.

Every server replica runs one; a notification is claimed by a conditional UPDATE, so exactly
one of them sends it. A send that fails transiently is retried with exponential backoff (or
after the service's Retry-After); a permanent failure disables the channel, with the error
kept for the API and UI, until its configuration (or a stored secret it names) changes.
Nothing is lost while a channel is down: its notifications stay in the outbox.

A channel's `${secret:NAME}` references are replaced with the stored values when its notifier
is built; a secret set again later makes a new notifier. Error texts are masked before they
are logged or stored.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from coplane.alerts.channels import ChannelConfig, Quiet
from coplane.alerts.notifier import Action, Alert, IntegrationError, Notifier
from coplane.alerts.registry import build_notifier, config_hash
from coplane.auth.vault import SecretError, Vault, references, versions
from coplane.logs import decision
from coplane.rules.calendar import day_off
from coplane.rules.model import SLA
from coplane.rules.schedule import zone
from coplane.security.mask import mask
from coplane.store import NotFound, Store
from coplane.store.automations import read_automation_message
from coplane.store.channels import disable_channel, disabled_channels
from coplane.store.dialects import Conn, Row
from coplane.store.errors import Conflict
from coplane.store.incidents import (
    claim_notification,
    claim_pending_notifications,
    defer_notification,
    mark_failed,
    mark_sent,
    queue_repeat,
    read_incident,
    read_trigger,
    release_stale_claims,
    settle_notification,
)
from coplane.store.slas import read_sla
from coplane.store.warnings import read_warn_notification, read_warning, warning_thread

log = logging.getLogger(__name__)

POLL = 1.0  # seconds between looks at the outbox when nothing wakes the dispatcher
BATCH = 50  # notifications claimed at once
WORKERS = 4  # sends in flight: one slow channel does not hold up the others
FIRST_BACKOFF = 2.0  # seconds before the first retry; doubles per attempt
MAX_BACKOFF = 60.0  # a channel that is back is used again within this
GIVE_UP_AFTER = timedelta(hours=24)  # a notification failing this long is dead
STALE_CLAIM = timedelta(minutes=2)  # a claim this old belongs to a dispatcher that died
IN_FLIGHT_WAIT = timedelta(seconds=5)  # a resolve waits this long for its trigger's send


def backoff(attempts: int, cap: float = MAX_BACKOFF) -> float:
    """Seconds before retry number `attempts` (1-based): 2, 4, 8, ... up to `cap`, jittered."""
    base = min(cap, FIRST_BACKOFF * 2 ** max(0, attempts - 1))
    return float(base * random.uniform(0.8, 1.0))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one claimed notification."""

    status: str  # sent, retry, dead, skipped, silenced, inhibited, deferred
    detail: str | None = None


class Dispatcher:
    """Sends the outbox's due notifications through the configured channels."""

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, ChannelConfig],
        public_url: str,
        *,
        build: Callable[[ChannelConfig], Notifier] = build_notifier,
        max_backoff: float = MAX_BACKOFF,
        vault: Vault | None = None,
    ) -> None:
        self._store = store
        self._vault = vault or Vault(None)
        self._max_backoff = max_backoff
        self._public_url = public_url.rstrip("/")
        self._build = build
        self._lock = threading.Lock()
        self._channels: dict[str, ChannelConfig] = {}
        self._refs: dict[str, set[str]] = {}  # the stored secrets each channel names
        self._hashes: dict[str, str] = {}
        self._stored: dict[str, str] = {}  # the versions of those secrets the hashes include
        self._notifiers: dict[str, Notifier] = {}
        self.set_channels(channels)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="coplane-alerts")
        self._last_sweep = datetime.min.replace(tzinfo=UTC)

    def set_channels(self, channels: Mapping[str, ChannelConfig]) -> None:
        """Use these channels from now on (after a config reload)."""
        refs = {name: references(c.model_dump(mode="python")) for name, c in channels.items()}
        stored = self._versions(set().union(*refs.values())) if any(refs.values()) else {}
        with self._lock:
            self._channels = dict(channels)
            self._refs = refs
            self._use_hashes(stored)

    def _versions(self, names: set[str]) -> dict[str, str]:
        try:
            with self._store.connect() as conn:
                return versions(conn, names)
        except Exception:  # the database is away: the next round looks again
            log.exception("reading the stored secrets' versions failed")
            return {}

    def _use_hashes(self, stored: Mapping[str, str]) -> None:
        """Fingerprint each channel anew (under the lock); drop notifiers that changed."""
        hashes = {
            name: config_hash(c, {r: stored.get(r, "") for r in self._refs.get(name, ())})
            for name, c in self._channels.items()
        }
        # keep notifiers whose config is unchanged (and their HTTP connections)
        kept = {n: v for n, v in self._notifiers.items() if self._hashes.get(n) == hashes.get(n)}
        for name, old in self._notifiers.items():
            if name not in kept:
                close_notifier(old)
        self._notifiers = kept
        self._hashes = hashes
        self._stored = dict(stored)

    def notifier(self, channel: str) -> tuple[ChannelConfig, Notifier] | None:
        """The config and notifier of a channel; None when no channel has that name.
        SecretError when a stored secret it names is missing or cannot be decrypted."""
        with self._lock:
            config = self._channels.get(channel)
            if config is None:
                return None
            if channel not in self._notifiers:
                resolved = config
                if self._refs.get(channel):
                    with self._store.connect() as conn:
                        resolved = self._vault.resolve_channel(conn, config)
                self._notifiers[channel] = self._build(resolved)
            return config, self._notifiers[channel]

    def incident_url(self, incident_id: str) -> str:
        """The incident's page, linked from every message."""
        return f"{self._public_url}/incidents/{incident_id}"

    # -- the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        """Send in a background thread until `stop()`."""
        self._thread = threading.Thread(target=self._loop, name="coplane-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)
        with self._lock:
            for notifier in self._notifiers.values():
                close_notifier(notifier)
            self._notifiers = {}

    def wake(self) -> None:
        """Look at the outbox now (new incidents were queued)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(POLL)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                while self.run_once() == BATCH and not self._stop.is_set():
                    pass  # a full batch: there may be more due
            except Exception:  # the database is away: try again at the next poll
                log.exception("alert dispatch failed")

    def run_once(self, now: datetime | None = None) -> int:
        """Claim the due notifications and deliver them; return how many were claimed."""
        now = now or datetime.now(UTC)
        with self._store.connect() as conn:
            if now - self._last_sweep > STALE_CLAIM / 2:
                self._last_sweep = now
                release_stale_claims(conn, now - STALE_CLAIM)
            with self._lock:
                named = set().union(*self._refs.values())
            stored = versions(conn, named) if named else {}
            with self._lock:
                if stored != self._stored:  # a secret was set again: its channels anew
                    self._use_hashes(stored)
                hashes = dict(self._hashes)
            disabled = disabled_channels(conn, hashes)
            claimed = claim_pending_notifications(conn, now, BATCH, sorted(disabled))
        if claimed:
            list(self._pool.map(self.deliver, claimed))
        return len(claimed)

    # -- one notification -------------------------------------------------------------------

    def deliver(self, row: Row) -> Outcome:
        """Decide about one claimed notification and send it if it should go."""
        try:
            return self._deliver(row)
        except Exception as exc:  # a bug or the database: release it for another try
            log.exception(
                "delivering notification %s failed", row["id"], extra={"decision": "alert.failed"}
            )
            try:
                with self._store.connect() as conn:
                    retry = datetime.now(UTC) + timedelta(
                        seconds=backoff(row["attempts"] + 1, self._max_backoff)
                    )
                    mark_failed(conn, row["id"], datetime.now(UTC), mask(str(exc)), False, retry)
            except Exception:
                log.exception("could not release notification %s", row["id"])
            return Outcome("retry", mask(str(exc)))

    def _deliver(self, row: Row) -> Outcome:
        now = datetime.now(UTC)
        channel = row["channel"]
        try:
            found = self.notifier(channel)
        except SecretError as exc:
            config = self._channels[channel]
            return self._failed(row, IntegrationError(str(exc), permanent=True), config)
        with self._store.connect() as conn:
            if found is None:
                error = f"no channel named {channel!r} in the configuration"
                mark_failed(conn, row["id"], now, error, True, None)
                return Outcome("dead", error)
            config, notifier = found
            if row["message_id"] is not None:
                held, alert = self._message(conn, row, config, now)
            elif row["warning_id"] is not None:
                held, alert = self._warning(conn, row, config, now)
            else:
                held, alert = self._incident(conn, row, config, now)
            if held is not None:
                return held
            assert alert is not None
            if not notifier.wants(alert):
                note = f"the {config.type} channel does not announce this"
                settle_notification(conn, row["id"], "skipped", note)
                return Outcome("skipped", note)
        try:
            response = notifier.send(alert)
        except IntegrationError as exc:
            return self._failed(row, exc, config)
        with self._store.connect() as conn, conn.transaction():
            mark_sent(conn, row["id"], datetime.now(UTC), response)
            repeat = config.repeat_every
            if repeat is not None and row["action"] in ("trigger", "repeat"):
                fresh = read_incident(conn, row["incident_id"])
                if fresh["resolved"] is None and fresh["acked"] is None:
                    queue_repeat(conn, row["incident_id"], channel, now + repeat, now)
        decision(
            log,
            "alert.sent",
            f"{row['action']} alert for {_subject(row)} sent to {channel}",
            **_fields(row),
        )
        return Outcome("sent")

    def _incident(
        self, conn: Conn, row: Row, config: ChannelConfig, now: datetime
    ) -> tuple[Outcome | None, Alert | None]:
        """The alert about an incident, or why it is not sent now."""
        try:
            incident = read_incident(conn, row["incident_id"])
        except NotFound:
            return Outcome("dead", "the incident is gone"), None
        sla = _read_sla_or_none(conn, incident["sla"])  # None once the SLA was deleted
        labels = dict(sla.labels) if sla is not None else {}
        held, thread = self._hold(conn, row, incident, config, labels, now)
        if held is not None:
            return held, None
        return None, self._alert(row, incident, sla, thread)

    def _warning(
        self, conn: Conn, row: Row, config: ChannelConfig, now: datetime
    ) -> tuple[Outcome | None, Alert | None]:
        """The alert about an early warning ('warn', or 'resolve' when met in time), or why
        it is not sent now. A resolve follows only a warning announced on its channel."""
        try:
            warning = read_warning(conn, row["warning_id"])
        except NotFound:
            return Outcome("dead", "the warning is gone"), None
        sla = _read_sla_or_none(conn, warning["sla"])
        labels = dict(sla.labels) if sla is not None else {}
        thread = None
        if row["action"] == "warn":
            if warning["resolved"] is not None:
                note = f"the window was {warning['outcome']} before the warning was announced"
                settle_notification(conn, row["id"], "skipped", note)
                return Outcome("skipped", note), None
            silenced = _silence(conn, row, config, labels, now)
            if silenced is not None:
                return silenced, None
        else:
            warn = read_warn_notification(conn, warning["id"], row["channel"])
            if warn is None or warn["status"] not in ("pending", "sent"):
                why = "never announced" if warn is None else f"not announced ({warn['status']})"
                settle_notification(conn, row["id"], "skipped", f"the warning was {why} here")
                return Outcome("skipped", why), None
            if warn["status"] == "pending":
                defer_notification(conn, row["id"], max(warn["due"], now) + IN_FLIGHT_WAIT)
                return Outcome("deferred", "waiting for the warning's first alert"), None
            thread = warn["response"] if isinstance(warn["response"], dict) else None
        alert = Alert(
            action=row["action"],
            channel=row["channel"],
            incident_id=str(warning["id"]),
            sla=warning["sla"],
            kind=sla.kind if sla is not None else "unknown",
            severity=sla.severity if sla is not None else "warning",
            reason=warning["reason"],
            resource=warning["resource"],
            affected=[],
            due=warning["due"],
            opened=warning["opened"],
            url=f"{self._public_url}/slas/{warning['sla']}",
            resolved=warning["resolved"],
            owners=list(sla.owners) if sla is not None else [],
            labels=labels,
            attempt=row["attempts"],
            thread=thread,
            warning=True,
        )
        return None, alert

    def _message(
        self, conn: Conn, row: Row, config: ChannelConfig, now: datetime
    ) -> tuple[Outcome | None, Alert | None]:
        """The alert for an automation's `notify` message, or why it is not sent now. Only a
        quiet period of the whole channel (no labels) silences it: it has no SLA labels."""
        try:
            message = read_automation_message(conn, row["message_id"])
        except NotFound:
            return Outcome("dead", "the message is gone"), None
        silenced = _silence(conn, row, config, {}, now)
        if silenced is not None:
            return silenced, None
        alert = Alert(
            action="notify",
            channel=row["channel"],
            incident_id=str(message["id"]),
            sla="",
            kind="automation",
            severity="info",
            reason=message["message"],
            resource=message["resource"],
            affected=[],
            due=message["created"],
            opened=message["created"],
            url=f"{self._public_url}/automations/{message['automation']}",
            attempt=row["attempts"],
            automation=message["automation"],
            event=message["event"],
        )
        return None, alert

    def _hold(
        self,
        conn: Conn,
        row: Row,
        incident: Row,
        config: ChannelConfig,
        labels: dict[str, str],
        now: datetime,
    ) -> tuple[Outcome | None, dict[str, Any] | None]:
        """Why this notification must not be sent now (an Outcome), else its thread."""
        action = row["action"]
        if action == "repeat" and (incident["resolved"] is not None or incident["acked"]):
            note = "resolved" if incident["resolved"] is not None else "acknowledged"
            settle_notification(conn, row["id"], "skipped", f"the incident was {note}")
            return Outcome("skipped", note), None
        if action == "trigger" and incident["resolved"] is not None:
            note = "resolved before it was announced"
            settle_notification(conn, row["id"], "skipped", note)
            return Outcome("skipped", note), None
        if action == "trigger" and incident["inhibited_by"] is not None:
            note = f"attached to upstream incident {incident['inhibited_by']}"
            settle_notification(conn, row["id"], "inhibited", note)
            return Outcome("inhibited", note), None
        if action != "resolve":
            silenced = _silence(conn, row, config, labels, now)
            if silenced is not None:
                return silenced, None
        if action == "trigger":
            # A breach its early warning foretold continues the warning's thread there.
            return None, warning_thread(conn, incident["id"], row["channel"])
        trigger = read_trigger(conn, incident["id"], row["channel"])
        if trigger is None or trigger["status"] not in ("pending", "sent"):
            # Only what was announced on a channel is followed up there.
            why = "never announced" if trigger is None else f"its alert was {trigger['status']}"
            settle_notification(conn, row["id"], "skipped", f"the incident was {why} here")
            return Outcome("skipped", why), None
        if trigger["status"] == "pending":
            if action == "resolve" and claim_notification(conn, trigger["id"], now):
                # Resolved before its announcement went out: announce neither.
                note = "resolved before it was announced"
                settle_notification(conn, trigger["id"], "skipped", note)
                settle_notification(conn, row["id"], "skipped", note)
                return Outcome("skipped", note), None
            wait = max(trigger["due"], now) + IN_FLIGHT_WAIT
            defer_notification(conn, row["id"], wait)
            return Outcome("deferred", "waiting for the incident's first alert"), None
        thread = trigger["response"]
        return None, thread if isinstance(thread, dict) else None

    def _alert(
        self, row: Row, incident: Row, sla: SLA | None, thread: dict[str, Any] | None
    ) -> Alert:
        """The alert for a notification; an incident whose SLA was deleted is still announced."""
        action: Action = row["action"]
        return Alert(
            action=action,
            channel=row["channel"],
            incident_id=str(incident["id"]),
            sla=incident["sla"],
            kind=sla.kind if sla is not None else "unknown",
            severity=incident["severity"],
            reason=incident["reason"],
            resource=incident["resource"],
            affected=list(incident["affected"]),
            due=incident["due"],
            opened=incident["opened"],
            url=self.incident_url(str(incident["id"])),
            acked=incident["acked"],
            resolved=incident["resolved"],
            owners=list(sla.owners) if sla is not None else [],
            labels=dict(sla.labels) if sla is not None else {},
            attempt=row["attempts"],
            thread=thread,
        )

    def _failed(self, row: Row, exc: IntegrationError, config: ChannelConfig) -> Outcome:
        now = datetime.now(UTC)
        channel = row["channel"]
        message = mask(exc.message)  # a service may echo a token or a URL holding one
        with self._lock:
            fingerprint = self._hashes.get(channel) or config_hash(config)
        with self._store.connect() as conn, conn.transaction():
            fields = _fields(row)
            if exc.permanent:
                mark_failed(conn, row["id"], now, message, True, None)
                disable_channel(conn, channel, fingerprint, message, now)
                _dead(row, message)
                decision(
                    log,
                    "channel.disabled",
                    f"channel {channel} refused an alert and is disabled until its "
                    f"configuration changes: {message}",
                    level=logging.ERROR,
                    channel=channel,
                    error=message,
                )
                return Outcome("dead", message)
            if now - row["created"] > GIVE_UP_AFTER:
                error = f"gave up after {GIVE_UP_AFTER}: {message}"
                mark_failed(conn, row["id"], now, error, True, None)
                _dead(row, error)
                return Outcome("dead", error)
            wait = (
                exc.retry_after
                if exc.retry_after is not None
                else backoff(row["attempts"] + 1, self._max_backoff)
            )
            with contextlib.suppress(Conflict):  # released as stale meanwhile: sent again later
                mark_failed(conn, row["id"], now, message, False, now + timedelta(seconds=wait))
            decision(
                log,
                "alert.retried",
                f"{row['action']} alert to {channel} failed, retrying in {wait:.0f} s: {message}",
                level=logging.WARNING,
                **fields,
                attempt=row["attempts"],
                retry_in_s=round(wait, 1),
                error=message,
            )
            return Outcome("retry", message)


def _fields(row: Row) -> dict[str, Any]:
    """A notification's log fields: which alert, of which incident, to which channel."""
    fields = {
        "action": row["action"],
        "incident": str(row["incident_id"]),
        "channel": row["channel"],
        "notification": str(row["id"]),
    }
    if row["message_id"] is not None:
        fields["automation_message"] = str(row["message_id"])
    return fields


def _subject(row: Row) -> str:
    """What a notification is about, in words: 'incident <id>', 'warning <id>', ..."""
    if row["message_id"] is not None:
        return f"automation message {row['message_id']}"
    if row["warning_id"] is not None:
        return f"warning {row['warning_id']}"
    return f"incident {row['incident_id']}"


def _dead(row: Row, error: str) -> None:
    decision(
        log,
        "alert.dead",
        f"{row['action']} alert for {_subject(row)} to {row['channel']} "
        f"will not be sent: {error}",
        level=logging.ERROR,
        **_fields(row),
        error=error,
    )


def _read_sla_or_none(conn: Conn, name: str) -> SLA | None:
    try:
        return read_sla(conn, name).sla
    except NotFound:
        return None


def _silence(
    conn: Conn, row: Row, config: ChannelConfig, labels: Mapping[str, str], now: datetime
) -> Outcome | None:
    """Settle a notification as silenced when a quiet period of its channel covers it now."""
    quiet = _quiet_for(config.quiet, labels, now)
    if quiet is None:
        return None
    if quiet.until is not None:
        note = f"quiet until {quiet.until.isoformat()}"
    else:
        note = f"quiet on a day off ({_day_off(quiet, now)})"
    note += f": {quiet.reason}" if quiet.reason else ""
    settle_notification(conn, row["id"], "silenced", note)
    return Outcome("silenced", note)


def _quiet_for(quiets: list[Quiet], labels: Mapping[str, str], now: datetime) -> Quiet | None:
    """The quiet period covering an SLA with these labels now, if any."""
    for quiet in quiets:
        if not all(labels.get(k) == v for k, v in quiet.labels.items()):
            continue
        if quiet.until is not None and quiet.until > now:
            return quiet
        if quiet.calendar is not None and _day_off(quiet, now) is not None:
            return quiet
    return None


def send_test(config: ChannelConfig, name: str, public_url: str) -> dict[str, Any] | None:
    """Send a test message through one channel now, bypassing the outbox (`alerts test`);
    `config` has its secret references resolved already."""
    now = datetime.now(UTC)
    alert = Alert(
        action="test",
        channel=name,
        incident_id="00000000-0000-0000-0000-000000000000",
        sla="coplane-test",
        kind="test",
        severity="info",
        reason=f"Test alert from coplane to channel {name}",
        resource=None,
        affected=[],
        due=now,
        opened=now,
        url=public_url.rstrip("/") + "/incidents",
    )
    notifier = build_notifier(config)
    try:
        return notifier.send(alert)
    finally:
        close_notifier(notifier)


def close_notifier(notifier: Notifier) -> None:
    """Release a notifier's connections, for those that hold any (an optional `close()`)."""
    close = getattr(notifier, "close", None)
    if callable(close):
        close()


def _day_off(quiet: Quiet, now: datetime) -> str | None:
    """Why today (in the quiet period's time zone) is a day off of its calendar, if it is."""
    assert quiet.calendar is not None
    return day_off(quiet.calendar, now.astimezone(zone(quiet.timezone)).date())
