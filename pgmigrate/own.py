"""The migrate process's own sessions, which pgmigrate never ends.

Besides the migrating connection and the watcher's, the process may hold other sessions on
the same database: another alias of ``DATABASES`` for the same database, or a thread of a
``RunPython`` with a connection of its own. When one of them holds a lock the migration
waits for, ending it would cut the process's own work short: it is left alone, like a
protected session (the migration steps out of the lock queue and waits for its
transaction, or the lock timeout decides).

A session that the migrating thread itself opened (another alias used by the migration's
code) cannot end its transaction before the migration's statement returns: when it blocks
that statement, the two wait for each other, a deadlock that PostgreSQL cannot see (it is
in the client). The watcher then stops the statement with ``SelfDeadlock`` instead of
waiting (``Aside.deadlock``).

A session is told by its pid and ``backend_start`` (``pg_stat_activity``), read on the
session itself: a pid alone could name another server's session when an alias points
elsewhere. The sessions open in the migrating thread when the run starts are read then;
those opened during the run, in any thread, when they connect (Django's
``connection_created`` signal). Sessions that another thread opened before the run are not
known.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

from django.db import Error, connections
from django.db.backends.signals import connection_created

#: The session's own pid, start and database, as the server that holds it sees them.
IDENTITY = (
    "SELECT pid, backend_start, current_database() FROM pg_stat_get_activity(pg_backend_pid())"
)

#: Marks pgmigrate's own threads (the watcher, the signal relay): the connections they
#: open are pgmigrate's, not the process's others (``own_pids``), and are not read.
_threads = threading.local()


def pgmigrate_thread() -> None:
    """Mark the calling thread as one of pgmigrate's own (call it first thing)."""
    _threads.own = True


class OwnSessions:
    """The sessions of this process other than the migrating connection and the watcher's,
    by pid and ``backend_start`` (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: pid -> {backend_start: whether the migrating thread opened it}
        self._sessions: dict[int, dict[dt.datetime | None, bool]] = {}
        #: The databases they are connected to (by name, on whatever server).
        self._databases: set[str] = set()
        #: The migrating thread (``threading.get_ident()``), set by ``tracking``.
        self.migrating_thread: int | None = None

    def on(self, database: str | None) -> bool:
        """Whether any of them is connected to a database of that name (None: unknown, any
        database)."""
        with self._lock:
            return database in self._databases if database is not None else bool(self._sessions)

    def add(
        self, pid: int, backend_start: dt.datetime | None, database: str, *, migrating: bool
    ) -> None:
        """Add a session; ``migrating``: the migrating thread opened it."""
        with self._lock:
            self._sessions.setdefault(pid, {})[backend_start] = migrating
            self._databases.add(database)

    def holds(self, pid: int, backend_start: dt.datetime | None) -> bool:
        """Whether the session ``pid`` that started at ``backend_start`` is one of them. A
        session whose start the migrating role cannot see (another role's) counts by its pid
        alone: it is left alone rather than ended."""
        return self._find(pid, backend_start) is not None

    def of_migrating_thread(self, pid: int, backend_start: dt.datetime | None) -> bool:
        """Whether that session is one the migrating thread opened (``holds`` first)."""
        return bool(self._find(pid, backend_start))

    def _find(self, pid: int, backend_start: dt.datetime | None) -> bool | None:
        with self._lock:
            starts = dict(self._sessions.get(pid) or {})
        if not starts:
            return None
        if backend_start is None:
            return any(starts.values())
        return starts.get(backend_start)

    def read(self, connection: Any) -> None:
        """Add the session of Django ``connection`` (a PostgreSQL one, open); nothing if
        it cannot be read (it belongs to no migration of this server then)."""
        if connection.vendor != "postgresql" or connection.connection is None:
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute(IDENTITY)
                row = cursor.fetchone()
        except Error:
            return
        if row is not None:
            migrating = threading.get_ident() == self.migrating_thread
            self.add(row[0], row[1], row[2], migrating=migrating)


@contextlib.contextmanager
def tracking(sessions: OwnSessions, using: str) -> Iterator[None]:
    """Keep ``sessions`` up to date while the block runs: the sessions open in this thread
    now (other than ``using``'s, the migrating one), then each one the process opens. Called
    from the migrating thread."""
    sessions.migrating_thread = threading.get_ident()
    for connection in connections.all(initialized_only=True):
        if connection.alias != using:
            sessions.read(connection)

    def opened(sender: Any, connection: Any, **kwargs: Any) -> None:
        if not getattr(_threads, "own", False):
            sessions.read(connection)

    connection_created.connect(opened, weak=False)
    try:
        yield
    finally:
        connection_created.disconnect(opened)
