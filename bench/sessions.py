"""Sessions that block a migration, and the clocks that time them.

``Blockers`` opens sessions idle in a transaction that read a table (each holds ``ACCESS
SHARE`` on it) and timestamps, from a thread that ``select()``s on their sockets, when the
server closes each one. ``LockWaitMonitor`` polls ``pg_locks`` for the ``ALTER`` waiting on
that table and reads the server's ``waitstart``. Both use the machine's wall clock
(``time.time()``), the clock PostgreSQL's timestamps come from, so they can be subtracted.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
import time

import psycopg

from bench.migrate import MigrateRun
from bench.server import connect

#: application_name of the blocking sessions.
BLOCKER_APPLICATION_NAME = "bench blocker"


class Blockers:
    """``count`` sessions idle in a transaction after reading ``table`` (a context manager)."""

    def __init__(self, url: str, table: str, count: int) -> None:
        self.url = url
        self.table = table
        self.count = count
        self.connections: dict[int, psycopg.Connection] = {}
        #: pid -> time.time() when the server first wrote to the session (its FATAL message).
        self.signalled: dict[int, float] = {}
        #: pid -> time.time() when the server closed the session's socket.
        self.gone: dict[int, float] = {}
        self.ended_by_bench = 0
        #: time.time() when the bench asked the server to end the sessions still alive.
        self.terminated_at: float | None = None
        self._changed = threading.Condition()
        self._selector = selectors.DefaultSelector()
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._thread = threading.Thread(target=self._watch, name="bench-blockers")
        self.opened_at = 0.0

    def __enter__(self) -> Blockers:
        try:
            for _ in range(self.count):
                conn = connect(
                    self.url, application_name=BLOCKER_APPLICATION_NAME, autocommit=False
                )
                conn.execute(f"SELECT count(*) FROM {self.table}")  # stays idle in transaction
                pid = conn.info.backend_pid
                self.connections[pid] = conn
                # A duplicate of the socket, so reading it does not disturb psycopg's.
                sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
                self._selector.register(sock, selectors.EVENT_READ, pid)
            self._selector.register(self._wakeup_r, selectors.EVENT_READ, None)
            self._thread.start()
            self.opened_at = time.monotonic()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_stale(self, seconds: float) -> None:
        """Wait until each session has been in its transaction ``seconds``."""
        time.sleep(max(0.0, self.opened_at + seconds - time.monotonic()))

    @property
    def pids(self) -> list[int]:
        return sorted(self.connections)

    @property
    def all_gone(self) -> bool:
        return len(self.gone) == len(self.connections)

    def last_gone(self) -> float | None:
        """When the last session was closed, or None while any is alive."""
        return max(self.gone.values()) if self.all_gone else None

    def wait_all_gone(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.all_gone, timeout)

    def terminate(self, url: str) -> int:
        """End the sessions still alive with ``pg_terminate_backend``; return how many."""
        with self._changed:
            alive = [pid for pid in self.connections if pid not in self.gone]
        if alive:
            self.terminated_at = time.time()
            with connect(url, application_name="bench admin") as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [alive]
                )
        self.ended_by_bench += len(alive)
        return len(alive)

    def _watch(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:  # close() woke us up
                    return
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                now = time.time()
                with self._changed:
                    self.signalled.setdefault(key.data, now)
                    if not data:
                        self.gone[key.data] = now
                        self._selector.unregister(sock)
                        sock.close()
                    self._changed.notify_all()

    def close(self) -> None:
        if self._thread.is_alive():
            self._wakeup_w.send(b"x")
            self._thread.join()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()
        self._wakeup_r.close()
        self._wakeup_w.close()
        for conn in self.connections.values():
            with contextlib.suppress(psycopg.Error):
                conn.close()


class LockWaitMonitor:
    """Finds the session waiting for ``ACCESS EXCLUSIVE`` on ``table`` (the ``ALTER``).

    It starts polling ``pg_locks`` (every ``poll`` seconds) once the ``migrate`` child prints
    "Running migrations:" and stops at the first sight of the wait, so that it costs the
    machine little while the migration and the app run.
    """

    SQL = (
        "SELECT pid, extract(epoch FROM waitstart)::float8 FROM pg_locks"
        " WHERE locktype = 'relation' AND relation = %s AND NOT granted"
        " AND mode = 'AccessExclusiveLock' AND waitstart IS NOT NULL LIMIT 1"
    )

    def __init__(self, url: str, table: str, *, poll: float = 0.001) -> None:
        self.url = url
        self.table = table
        self.poll = poll
        self.pid: int | None = None
        #: The server's ``waitstart`` of the ALTER's lock request, as a Unix time.
        self.waitstart: float | None = None
        #: time.time() when the monitor first saw the wait.
        self.seen: float | None = None
        self.found = threading.Event()
        #: Set when the monitor stops looking (wait seen, child exited or stopped).
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, run: MigrateRun) -> LockWaitMonitor:
        self._thread = threading.Thread(target=self._run, args=(run,), name="bench-monitor")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, run: MigrateRun) -> None:
        try:
            self._poll(run)
        finally:
            self.finished.set()

    def _poll(self, run: MigrateRun) -> None:
        with connect(self.url, application_name="bench monitor") as conn:
            ((relation,),) = conn.execute("SELECT %s::regclass::oid", [self.table]).fetchall()
            if run.wait_for_line("Running migrations:", timeout=120) is None:
                return
            while not self._stop.is_set() and run.returncode is None:
                row = conn.execute(self.SQL, [relation], prepare=True).fetchone()
                if row is not None:
                    self.seen = time.time()
                    self.pid, self.waitstart = row
                    self.found.set()
                    return
                self._stop.wait(self.poll)


class HeldSession:
    """One session idle in a transaction after reading ``table`` (a context manager) that
    the bench ends by rolling its transaction back, as a job that finishes would
    (``release``). Unlike ``Blockers``, it does not watch the socket: the session stays."""

    def __init__(
        self, url: str, table: str, *, application_name: str = BLOCKER_APPLICATION_NAME
    ) -> None:
        self.url = url
        self.table = table
        self.application_name = application_name
        self.conn: psycopg.Connection | None = None
        self.pid: int | None = None
        #: time.time() just before the bench sent ROLLBACK, and when it returned (the
        #: session's locks are released in between).
        self.released_at: float | None = None
        self.release_returned_at: float | None = None

    def __enter__(self) -> HeldSession:
        self.conn = connect(self.url, application_name=self.application_name, autocommit=False)
        self.conn.execute(f"SELECT count(*) FROM {self.table}")  # stays idle in transaction
        self.pid = self.conn.info.backend_pid
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()

    def release(self) -> None:
        """Roll the transaction back: its lock is gone when this returns."""
        assert self.conn is not None
        self.released_at = time.time()
        self.conn.rollback()
        self.release_returned_at = time.time()


class AppliedPoller:
    """Polls ``django_migrations`` for a migration's row (a context manager): it becomes
    visible when the transaction that applied the migration commits (pgmigrate records it
    with the migration's last operation, Django with the whole migration)."""

    SQL = "SELECT 1 FROM django_migrations WHERE app = %s AND name = %s"

    def __init__(self, url: str, app: str, name: str, *, poll: float = 0.001) -> None:
        self.url = url
        self.params = [app, name]
        self.poll = poll
        self.conn: psycopg.Connection | None = None
        #: time.time() when the first poll that saw the row returned (the commit came
        #: before), and when the poll before it was sent (the commit came after).
        self.seen_at: float | None = None
        self.unseen_at: float | None = None

    def __enter__(self) -> AppliedPoller:
        self.conn = connect(self.url, application_name="bench poller")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()

    def wait(self, run: MigrateRun, timeout: float) -> float | None:
        """Poll every ``poll`` seconds until the row is there; return ``seen_at``, or None if
        ``migrate`` exits without it or ``timeout`` passes."""
        assert self.conn is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = run.returncode is not None
            sent = time.time()
            row = self.conn.execute(self.SQL, self.params, prepare=True).fetchone()
            if row is not None:
                self.seen_at = time.time()
                return self.seen_at
            if exited:
                return None
            self.unseen_at = sent
            time.sleep(self.poll)
        return None
