"""Wake-ups between the migrating thread and the watcher thread, each made of one raw lock.

The migrating thread wakes the watcher at each statement, hundreds of times in a run of
small migrations. ``threading.Event`` does it through a Python-level ``Condition`` (a new lock
per wait, a list of waiters), which costs both threads tens of microseconds, and the GIL,
each time. A raw lock (``_thread.allocate_lock``) that one thread releases and the other
acquires costs a C call on each side; a release while nobody waits wakes no thread.
"""

from __future__ import annotations

import _thread


class Wakeup:
    """Wakes the one thread that waits (``wait``); wake-ups sent while it was busy count as
    one, taken by its next ``wait``."""

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()  # held: nothing to take

    def set(self) -> None:
        """Wake the waiter (now, or at its next ``wait``). Any thread may call it."""
        try:  # noqa: SIM105 (contextlib.suppress costs more, at each statement)
            self._lock.release()
        except RuntimeError:  # already released: a wake-up is pending
            pass

    def wait(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` seconds; None: without end) for a wake-up and take it;
        True if there was one."""
        if timeout is None:
            return self._lock.acquire()
        return self._lock.acquire(timeout=max(timeout, 0.0))


class Latch:
    """Set once, for good (``set``); a thread may wait for it with a timeout."""

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        if not self._set:
            self._set = True
            self._lock.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for it to be set; True if it is."""
        if self._set:
            return True
        if self._lock.acquire(timeout=max(timeout, 0.0)):
            self._lock.release()  # set: it stays so for the next wait
            return True
        return self._set
