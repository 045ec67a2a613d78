"""Ctrl-C and SIGTERM during ``migrate``: end promptly and cleanly.

A statement blocked in the database driver does not return to Python when a signal arrives
(psycopg2 waits inside libpq), so Python never gets to run its signal handler. While
``interruptible()`` is active, the C-level signal handler also writes to a pipe
(``signal.set_wakeup_fd``); a small thread reads it and cancels the migrating backend's
statement from a connection of its own, so the driver returns and the interrupt is raised.
SIGTERM, which by default kills the process without any clean-up, raises ``Terminated``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Callable, Iterator

from django.db import Error, connections

#: Signals that end ``migrate``.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM during ``migrate``."""

    signum = signal.SIGTERM


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def cancel_backend(using: str, backend_pid: int) -> None:
    """Cancel ``backend_pid``'s statement from a new connection (used from any thread)."""
    import pgactivity

    try:
        pgactivity.cancel(backend_pid, using=using)
    except Error:
        pass  # the process is ending anyway; the statement will end with the connection
    finally:
        connections[using].close()


class _Relay(threading.Thread):
    """Reads signal numbers from the wakeup pipe and calls ``on_signal`` for ours."""

    def __init__(self, read_fd: int, on_signal: Callable[[], None]) -> None:
        super().__init__(name="pgmigrate-signal-relay", daemon=True)
        self.read_fd = read_fd
        self.on_signal = on_signal
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            ready, _, _ = select.select([self.read_fd], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self.read_fd, 64)
            except OSError:
                return
            if any(byte in (int(s) for s in SIGNALS) for byte in data):
                self.on_signal()


@contextlib.contextmanager
def interruptible(on_signal: Callable[[], None]) -> Iterator[None]:
    """Make SIGINT/SIGTERM interrupt a blocked statement (main thread only; else no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    previous_term = signal.getsignal(signal.SIGTERM)
    if previous_term == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_terminated)
    relay = _Relay(read_fd, on_signal)
    relay.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        if previous_term == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        relay.stopping.set()
        with contextlib.suppress(OSError):
            os.write(write_fd, b"\0")  # wake the relay so that it sees it must stop
        relay.join(1)
        os.close(write_fd)
        os.close(read_fd)
