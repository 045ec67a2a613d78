"""One ``migrate`` at a time per database, with a PostgreSQL advisory lock (django-pglock)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pglock
from django.core.management.base import CommandError
from django.db import Error, connections

#: The advisory lock's name; pglock hashes it to a 64-bit key.
LOCK_NAME = "pgmigrate.migrate"


def holder_pid(using: str) -> int | None:
    """The backend pid holding the migrate lock on this database, if any."""
    key = pglock.advisory(LOCK_NAME, using=using).int_lock_id
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = ((%s >> 32) & 4294967295)::bigint::oid"
            " AND objid = (%s & 4294967295)::bigint::oid AND objsubid = 1",
            [key, key],
        )
        row = cursor.fetchone()
    return row[0] if row else None


@contextlib.contextmanager
def migrate_lock(using: str, *, wait: bool, notice: Callable[[str], None]) -> Iterator[None]:
    """Hold the database's migrate lock for the duration of the block.

    With ``wait`` the call waits for another ``migrate`` to finish (saying so); without it,
    it raises ``CommandError`` at once.
    """
    if not pglock.advisory(LOCK_NAME, using=using, timeout=0).acquire():
        holder = holder_pid(using)
        who = f"backend pid {holder}" if holder else "another session"
        if not wait:
            raise CommandError(
                f"pgmigrate: another migrate is running on this database ({who} holds the "
                "migrate lock). PGMIGRATE_CONCURRENT_MIGRATE = 'fail', so this one stops; "
                "run it again when the other has finished."
            )
        notice(f"pgmigrate: another migrate is running on this database ({who}); waiting")
        pglock.advisory(LOCK_NAME, using=using, timeout=None).acquire()
        notice("pgmigrate: the other migrate finished; going on")
    try:
        yield
    finally:
        # A lost connection has released it already: do not open a new one to release it.
        if connections[using].connection is not None:
            with contextlib.suppress(Error):
                pglock.advisory(LOCK_NAME, using=using).release()
