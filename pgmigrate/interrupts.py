"""Ctrl-C and SIGTERM during ``migrate``: end promptly and cleanly.

A statement blocked in the database driver does not return to Python when a signal arrives
(psycopg2 waits inside libpq), so Python never gets to run its signal handler. While
``interruptible()`` is active, the C-level signal handler also writes to a pipe
(``signal.set_wakeup_fd``); a small thread reads it and cancels the migrating backend's
statement from a connection of its own, so the driver returns and the interrupt is raised.
SIGTERM, which by default kills the process without any clean-up, raises ``Terminated``.
A ``Guard`` holds signals back while pgmigrate writes what must not be cut in two.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from django.db import Error, connections

from pgmigrate import own

#: Signals that end ``migrate``.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM during ``migrate``."""

    signum = signal.SIGTERM


def _interrupt_for(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


class Guard:
    """Holds back Ctrl-C/SIGTERM while pgmigrate does something that must not be cut in two.

    Inside ``deferred()`` a signal is only noted; it is raised at the next ``checkpoint()``,
    before the next statement where cancelling is allowed, or when the outermost deferred
    section ends; inside ``operation()`` (and not protected) it is raised at once.
    ``cancellable`` says whether the signal relay may meanwhile cancel the running statement:
    yes while an operation runs (a cancelled statement is cleanly rolled back), no while
    progress or the migration record is written (``protect()``).
    """

    def __init__(self) -> None:
        self.pending: int | None = None
        self.cancellable = True
        self._depth = 0
        self._saved: list[bool] = []
        self._operation = 0
        #: Set when a signal arrives, so that a wait (``sleep``) ends at once.
        self.woken = threading.Event()

    def handler(self, signum: int, frame: object) -> None:
        if not self._depth or (self._operation and self.cancellable):
            raise _interrupt_for(signum)
        self.pending = signum
        self.woken.set()

    def checkpoint(self) -> None:
        """Raise the signal that arrived meanwhile, if any: a point where stopping is clean."""
        if self.pending is not None:
            signum, self.pending = self.pending, None
            self.woken.clear()
            raise _interrupt_for(signum)

    @contextlib.contextmanager
    def operation(self) -> Iterator[None]:
        """An operation's own code runs (a ``RunPython`` function, a schema change): a signal
        interrupts it at once, as it would interrupt plain Django, unless ``protect`` is on.
        Its transaction is rolled back."""
        self._operation += 1
        try:
            yield
        finally:
            self._operation -= 1

    def protect(self) -> None:
        """Until the current deferred section ends, do not cancel the running statement
        (pgmigrate is committing what must stay whole)."""
        self.cancellable = False

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if a signal arrives (then raise it)."""
        self.woken.wait(seconds)
        self.checkpoint()

    def execute_wrapper(
        self, execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any
    ) -> Any:
        """Django ``execute_wrapper``: stop before the next statement once a signal arrived,
        where cancelling is allowed (the statement's transaction is rolled back)."""
        if self.pending is not None and self.cancellable and self._depth:
            self.checkpoint()
        return execute(sql, params, many, context)

    def enter(self, *, cancellable: bool) -> None:
        self._depth += 1
        self._saved.append(self.cancellable)
        self.cancellable = cancellable

    def exit(self) -> None:
        """End a deferred section; raise a signal that arrived during it (outermost only)."""
        if not self._depth:
            return
        self._depth -= 1
        self.cancellable = self._saved.pop()
        if not self._depth:
            self.checkpoint()

    def reset(self) -> None:
        """Leave every deferred section without raising (the run is ending anyway)."""
        self._depth = self._operation = 0
        self._saved.clear()
        self.cancellable = True
        self.pending = None
        self.woken.clear()

    @contextlib.contextmanager
    def deferred(self, *, cancellable: bool) -> Iterator[None]:
        self.enter(cancellable=cancellable)
        try:
            yield
        finally:
            self.exit()


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

    def __init__(self, read_fd: int, on_signal: Callable[[int], None]) -> None:
        super().__init__(name="pgmigrate-signal-relay", daemon=True)
        self.read_fd = read_fd
        self.on_signal = on_signal
        self.stopping = threading.Event()

    def run(self) -> None:
        own.pgmigrate_thread()  # the connection that cancels the backend is pgmigrate's
        while not self.stopping.is_set():
            ready, _, _ = select.select([self.read_fd], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self.read_fd, 64)
            except OSError:
                return
            for signum in SIGNALS:
                if int(signum) in data:
                    self.on_signal(signum)
                    break


#: Handlers pgmigrate may replace: the defaults (Python's Ctrl-C handler, SIGTERM's kill).
_REPLACEABLE = (signal.default_int_handler, signal.SIG_DFL)


@contextlib.contextmanager
def interruptible(guard: Guard, cancel: Callable[[], None]) -> Iterator[None]:
    """Make SIGINT/SIGTERM interrupt a blocked statement (main thread only; else no-op).

    Signals go through ``guard``; while it allows, the relay thread calls ``cancel`` so that
    a statement blocked inside the driver returns.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    ours = {signum for signum, handler in previous.items() if handler in _REPLACEABLE}
    for signum in ours:
        signal.signal(signum, guard.handler)

    def on_signal(signum: int) -> None:
        # A signal the project handles itself is its business: leave the statement alone.
        if signum in ours:
            guard.woken.set()
            if guard.cancellable:
                cancel()

    relay = _Relay(read_fd, on_signal)
    relay.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for signum in ours:
            signal.signal(signum, previous[signum])
        relay.stopping.set()
        with contextlib.suppress(OSError):
            os.write(write_fd, b"\0")  # wake the relay so that it sees it must stop
        relay.join(1)
        os.close(write_fd)
        os.close(read_fd)
