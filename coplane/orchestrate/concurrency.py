"""`with concurrency("warehouse"):` — hold slots of a limit shared by every process and machine.

The slots are leases in the server's store. A caller joins the limit's queue, asks again
until its turn comes (the server grants strictly in arrival order), then a background thread
renews the lease while the block runs and the lease is released at the end. A process that
dies stops renewing: its lease expires after `lease_s` seconds and its slots go to the next
waiter.

`aconcurrency` is the same for async code: the waiting and the calls to the server run in a
thread, so the event loop goes on running other coroutines while a slot is awaited.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from coplane.client import CoplaneClient
from coplane.orchestrate.remote import ServerError, call, client_from_env

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 30.0
POLL_FIRST_S = 0.25  # the next in line asks this often; each waiter ahead adds as much
POLL_MAX_S = 2.0
RETRY_MAX_S = 5.0  # longest wait between attempts while the server cannot be reached


class ConcurrencyTimeout(TimeoutError):
    """The slots were not granted within `timeout` seconds."""


class UnknownConcurrencyLimit(LookupError):
    """No limit of that name exists on the server (create it with `coplane concurrency create`)."""


@dataclass(slots=True)
class Lease:
    """Slots held: the limit's name, how many, and the lease id the server knows them by."""

    name: str
    occupy: int
    lease_id: str
    lost: bool = False  # set when a renewal found the lease expired: the slots may be taken


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


def _transient(exc: ServerError) -> bool:
    return exc.status is None or exc.status in (408, 429) or exc.status >= 500


def _acquire(
    client: CoplaneClient, name: str, occupy: int, timeout: float | None, lease_s: float
) -> Lease:
    deadline = None if timeout is None else time.monotonic() + timeout
    path = f"/api/concurrency/{name}/acquire"
    body: dict[str, Any] = {"holder": _holder(), "occupy": occupy, "lease_s": lease_s}
    failures = 0
    while True:
        wait = POLL_FIRST_S
        try:
            answer = call(client, "POST", path, body)
            failures = 0
            if answer["state"] == "held":
                return Lease(name, occupy, answer["lease_id"])
            body["lease_id"] = answer["lease_id"]
            wait = min(POLL_MAX_S, POLL_FIRST_S * (answer["ahead"] + 1))
        except ServerError as exc:
            if exc.status == 404 and "lease_id" in body:
                del body["lease_id"]  # our place expired (a long outage): join again
                continue
            if exc.status == 404:
                raise UnknownConcurrencyLimit(f"no concurrency limit named {name!r}") from None
            if exc.status == 422:
                raise ValueError(str(exc)) from None
            if not _transient(exc):
                raise
            failures += 1
            wait = min(RETRY_MAX_S, POLL_FIRST_S * 2**failures)
            log.warning("concurrency %r: %s; trying again in %.1f s", name, exc, wait)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                if "lease_id" in body:
                    _release(client, Lease(name, occupy, body["lease_id"]))
                raise ConcurrencyTimeout(
                    f"{occupy} slot(s) of {name!r} were not granted within {timeout:g} s"
                )
            wait = min(wait, left)
        time.sleep(wait)


def _release(client: CoplaneClient, lease: Lease) -> None:
    path = f"/api/concurrency/{lease.name}/release"
    for attempt in range(3):
        try:
            call(client, "POST", path, {"lease_id": lease.lease_id})
            return
        except ServerError as exc:
            if not _transient(exc):
                return  # the limit is gone: nothing left to give back
            time.sleep(0.2 * 2**attempt)
    log.warning("concurrency %r: could not release; the lease expires by itself", lease.name)


def _renew_until(
    client: CoplaneClient, lease: Lease, lease_s: float, stop: threading.Event
) -> None:
    path = f"/api/concurrency/{lease.name}/renew"
    body = {"lease_id": lease.lease_id, "lease_s": lease_s}
    # three chances to renew within one lease, so one slow or failed call does not lose it
    while not stop.wait(lease_s / 3):
        try:
            call(client, "POST", path, body)
        except ServerError as exc:
            if exc.status == 404:
                lease.lost = True
                log.warning(
                    "concurrency %r: the lease expired before it was renewed; "
                    "its slots may be held by another run now",
                    lease.name,
                )
                return
            log.warning("concurrency %r: renewing failed: %s", lease.name, exc)


@contextmanager
def concurrency(
    name: str,
    *,
    occupy: int = 1,
    timeout: float | None = None,
    client: CoplaneClient | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> Iterator[Lease | None]:
    """Hold `occupy` slots of the limit `name` for the block, waiting for them in turn.

    ConcurrencyTimeout when they are not granted within `timeout` seconds (None: wait as
    long as it takes); UnknownConcurrencyLimit when the server has no such limit. With no
    server configured (no `client` and `COPLANE_URL` unset) there is nothing to share slots
    with: the block runs at once and gets None.
    """
    own = client is None
    client = client or client_from_env()
    if client is None:
        log.info("concurrency %r: no coplane server configured; not limited", name)
        yield None
        return
    try:
        lease = _acquire(client, name, occupy, timeout, lease_s)
        stop = threading.Event()
        renewer = threading.Thread(
            target=_renew_until,
            args=(client, lease, lease_s, stop),
            name=f"coplane-lease-{name}",
            daemon=True,  # a process that exits without releasing lets its lease expire
        )
        renewer.start()
        try:
            yield lease
        finally:
            stop.set()
            renewer.join()
            _release(client, lease)
    finally:
        if own:
            client.close()


@asynccontextmanager
async def aconcurrency(
    name: str,
    *,
    occupy: int = 1,
    timeout: float | None = None,
    client: CoplaneClient | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> AsyncIterator[Lease | None]:
    """`async with aconcurrency(name):` — `concurrency` without blocking the event loop."""
    held = ExitStack()
    limit = concurrency(name, occupy=occupy, timeout=timeout, client=client, lease_s=lease_s)
    entering = asyncio.ensure_future(asyncio.to_thread(held.enter_context, limit))
    try:
        # shielded: cancelling the wait must not lose track of a slot granted meanwhile
        lease = await asyncio.shield(entering)
    except asyncio.CancelledError:
        entering.add_done_callback(lambda _: _give_back(held, entering))
        raise
    try:
        yield lease
    finally:
        await asyncio.to_thread(held.close)


def _give_back(held: ExitStack, entering: asyncio.Future[Lease | None]) -> None:
    """Release slots granted to a waiter that was cancelled (in a thread: it calls the server)."""
    if not entering.cancelled() and entering.exception() is None:
        threading.Thread(target=held.close, name="coplane-lease-release", daemon=True).start()
