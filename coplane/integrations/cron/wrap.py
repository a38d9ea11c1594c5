"""`coplane cron wrap`: run a command, pinging its start, then its exit code and output's tail.

The command's stdout and stderr pass through to the wrapper's, unchanged, while the last
100 KB of both (in the order read) are kept for the end ping, which the server keeps as the
run's log. Both pings carry the same `rid`, so they make one run of `cron.<slug>`.

The command runs in a process group of its own, as under timeout(1): SIGINT, SIGTERM and
SIGHUP sent to the wrapper are forwarded to that group (so a terminal's Ctrl-C reaches the
command once, through the wrapper), and `--timeout` kills everything the command started.
A consequence, shared with timeout(1): a command that reads from the terminal is stopped
(SIGTTIN), since it does not run in the terminal's foreground group. Cron gives none.

The exit code is the command's; 128+N when signal N killed it; 124 when it ran past the
timeout; 127 when it was not found and 126 when it could not be executed. The end ping is
`/ping/{slug}/{exit code}`, so 0 is a success and anything else a failure. When the server
cannot be reached, the command still runs and its exit code is still passed through; one
warning line on stderr says the run was not reported.

With a ping key (`--ping-key`), the pings go to `/ping/{ping_key}/{slug}...` instead and carry
no Authorization header: the key in the URL is the monitor's own credential.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Literal

from coplane.client import PING_BODY_MAX, CoplaneClient

TAIL_BYTES = PING_BODY_MAX  # output kept for the end ping: the last 100 KB
KILL_AFTER = 10.0  # seconds from --timeout's SIGTERM to SIGKILL
DRAIN_AFTER_EXIT = 1.0  # seconds output is still read after the command exits
EXIT_TIMEOUT = 124  # as timeout(1)
EXIT_NOT_EXECUTABLE = 126  # as a shell
EXIT_NOT_FOUND = 127  # as a shell
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
POLL_SECONDS = 0.2
READ_SIZE = 64 * 1024


def wrap(
    client: CoplaneClient,
    slug: str,
    argv: Sequence[str],
    timeout: float | None,
    create: bool,
    *,
    rid: str | None = None,
    ping_key: str | None = None,
) -> int:
    """Run `argv` as the monitor `slug`'s job, pinging its start and end; its exit code.

    `timeout` (seconds) kills the command when it runs longer (exit 124); `create` accepts
    the pings of a monitor the server does not know yet; `rid` pairs the pings (a new UUID
    when not given); `ping_key` pings the URLs that carry the monitor's ping key.
    """
    if not argv:
        raise ValueError("no command to run")
    reporter = _Reporter(client, slug, rid or str(uuid.uuid4()), create, ping_key)
    with _SignalForwarder() as forwarder:
        reporter.ping("start")
        if forwarder.received is not None:  # asked to stop before the command started
            code = 128 + forwarder.received
            refusal = (
                f"coplane: received {_signal_name(forwarder.received)}; the command was not run"
            )
            _say(refusal)
            reporter.ping(code, refusal.encode())
            return code
        try:
            proc = subprocess.Popen(
                list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0
            )
        except OSError as exc:
            code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_NOT_EXECUTABLE
            message = f"coplane: cannot run {argv[0]}: {exc.strerror or exc}"
            _say(message)
            reporter.ping(code, message.encode())
            return code
        forwarder.attach(proc)
        outcome = _supervise(proc, timeout)
        code, ending = _exit_code(outcome, timeout)
        log = outcome.tail
        if ending:
            _say(ending)
            log = log + (b"\n" if log and not log.endswith(b"\n") else b"") + ending.encode()
        # still forwarding: a signal now must not cut the end ping short
        reporter.ping(code, log[-TAIL_BYTES:])
    return code


@dataclass(frozen=True, slots=True)
class _Outcome:
    returncode: int  # negative: killed by that signal
    tail: bytes
    timed_out: bool


class _Reporter:
    """Pings one run's start and end; warns once, on stderr, when a ping fails."""

    def __init__(
        self,
        client: CoplaneClient,
        slug: str,
        rid: str,
        create: bool,
        ping_key: str | None = None,
    ) -> None:
        self.client = client
        self.slug = slug
        self.rid = rid
        self.create = create
        self.ping_key = ping_key
        self.warned = False

    def ping(self, kind: Literal["start"] | int, body: bytes = b"") -> None:
        ok = self.client.ping(
            self.slug,
            kind,
            rid=self.rid,
            body=body,
            create=self.create,
            ping_key=self.ping_key,
        )
        if not ok and not self.warned:
            self.warned = True
            reason = " ".join((self.client.last_ping_error or "ping failed").split())
            _say(f"coplane: warning: this run is not reported to coplane: {reason}{self._hint()}")

    def _hint(self) -> str:
        """What to do about the refusal, when the wrapper's own options can fix it."""
        status = self.client.last_ping_status
        if status == 404 and not self.create and self.ping_key is None:
            return (
                f". The server has no monitor {self.slug!r}: add --create to create it with "
                "this ping (or check the slug)"
            )
        if status == 401 and not self.client.sends_api_key and self.ping_key is None:
            return (
                ". The server asks for an API key: set COPLANE_API_KEY to one with the ingest "
                "scope, or pass the monitor's --ping-key"
            )
        return ""


class _SignalForwarder:
    """While entered, SIGINT, SIGTERM and SIGHUP go to the command's process group.

    Installed before the command starts, so that no signal can end the wrapper and leave
    the command running unwatched; one received before then is remembered in `received`.
    Outside the main thread signals cannot be handled, and nothing is installed.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalForwarder:
        try:
            for sig in FORWARDED_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread
            self._restore()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._restore()

    def attach(self, proc: subprocess.Popen[bytes]) -> None:
        """Forward from now on to `proc`'s group, starting with any signal already received."""
        self._proc = proc
        if self.received is not None:
            _kill_group(proc, self.received)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        if self._proc is not None:
            _kill_group(self._proc, signum)

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send `sig` to the command's process group, unless the command is gone."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _supervise(proc: subprocess.Popen[bytes], timeout: float | None) -> _Outcome:
    """Pass the command's output through, keeping its tail, until it exits (or is killed)."""
    assert proc.stdout is not None and proc.stderr is not None
    sys.stdout.flush()  # what the wrapper printed comes before the command's output
    sys.stderr.flush()
    target_fds = {proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}
    broken: set[int] = set()
    tail = bytearray()
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    kill_at: float | None = None
    exited_at: float | None = None
    selector = selectors.DefaultSelector()
    try:
        for pipe in (proc.stdout, proc.stderr):
            selector.register(pipe, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if proc.poll() is not None:
                exited_at = exited_at if exited_at is not None else now
                # a process it left behind may hold the pipes open: do not wait for it
                if not selector.get_map() or now - exited_at >= DRAIN_AFTER_EXIT:
                    break
            elif deadline is not None and not timed_out and now >= deadline:
                timed_out = True
                _kill_group(proc, signal.SIGTERM)
                kill_at = now + KILL_AFTER
            elif kill_at is not None and now >= kill_at:
                _kill_group(proc, signal.SIGKILL)
                kill_at = None
            wait = POLL_SECONDS
            if deadline is not None and not timed_out:
                wait = max(0.0, min(wait, deadline - now))
            if not selector.get_map():  # the command closed both: wait for its exit
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(wait)
                continue
            for key, _ in selector.select(wait):
                data = os.read(key.fd, READ_SIZE)
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                tail += data
                if len(tail) > 2 * TAIL_BYTES:
                    del tail[:-TAIL_BYTES]
                target = target_fds[key.fd]
                if target not in broken and not _write_all(target, data):
                    broken.add(target)  # e.g. a closed pipe: keep reading, stop writing
    finally:
        selector.close()
        proc.stdout.close()
        proc.stderr.close()
    returncode = proc.wait()
    return _Outcome(returncode, bytes(tail[-TAIL_BYTES:]), timed_out)


def _write_all(fd: int, data: bytes) -> bool:
    """Write all of `data` to `fd`; False once it cannot be written to."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        except OSError:
            return False
        view = view[written:]
    return True


def _exit_code(outcome: _Outcome, timeout: float | None) -> tuple[int, str | None]:
    """The wrapper's exit code, and a note on how the command ended when it did not exit."""
    if outcome.timed_out:
        return EXIT_TIMEOUT, f"coplane: the command ran longer than {timeout:g} s and was killed"
    if outcome.returncode < 0:
        sig = -outcome.returncode
        return 128 + sig, f"coplane: the command was killed by {_signal_name(sig)}"
    return outcome.returncode, None


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _say(line: str) -> None:
    """One line on the wrapper's stderr."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
