"""Stop up front when the migrating connection goes through a transaction pooler.

pgmigrate needs one PostgreSQL session for the whole run: its one-migrate-at-a-time lock is a
session-level advisory lock, its timeouts are session settings, and the watcher watches one
backend pid. Behind a transaction (or statement) pooler such as PgBouncer with
``pool_mode = transaction``, each transaction of the client may run on another server
connection: the lock is taken on one and released on another (where it stays, held by a
server connection the pooler lends to the app), the settings linger for other clients, and the
pid watched is not the migration's. So before it takes or sets anything, pgmigrate checks that
its transactions stay in one session, and stops with a clear error when they do not.

The check cannot ask the pooler (its mode is not visible through it), so it looks for what
transaction pooling does: between two transactions of a client, the server connection goes
back to the pool, where another client may get it, and the client's next transaction may get
another one. The check runs a few rounds of short transactions, alternately on the migrating
connection and on a second connection with the same settings, each reading the identity of
its backend (pid and start time). Without transaction pooling (a direct connection, or a
session pooler) the migrating connection always sees the same backend and the second
connection always another one. Seeing the migrating connection change backends, or the
second connection land on the migrating connection's backend, proves transaction pooling: the
check never stops a run that has a session of its own. On an idle pool the second connection
gets the backend the migrating connection has just given back (PgBouncer reuses the most
recently released server connection first); on a busy one, the migrating connection's next
transaction usually gets another backend.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.core.management.base import CommandError
from django.db import Error, connections

#: Rounds of the check (each: one transaction on the second connection, one on the
#: migrating connection); it stops at the first evidence of transaction pooling.
ROUNDS = 5
#: The backend running the transaction: its pid and start time (a pid alone may be reused).
IDENTITY = "SELECT pg_backend_pid(), backend_start FROM pg_stat_get_activity(pg_backend_pid())"
#: ``application_name`` of the second connection.
APPLICATION_NAME = "pgmigrate pooling check"

Identity = tuple[int, Any]


def ensure_one_session(using: str, backend_pid: int) -> None:
    """Raise ``CommandError`` when the transactions of database ``using``'s connection do not
    all run in one PostgreSQL session (a transaction pooler): before pgmigrate takes its
    lock or sets a timeout. ``backend_pid`` is ``pg_backend_pid()`` read on it."""
    connection = connections[using]
    if connection.in_atomic_block:
        # migrate runs inside the caller's transaction: a pooler keeps it on one server
        # connection until it ends, and pgmigrate undoes everything before it does.
        return
    if talks_directly(using, backend_pid):
        return
    evidence = _evidence_of_pooling(using)
    if evidence is None:
        return
    settings_dict = connection.settings_dict
    where = ", ".join(
        f"{key} {settings_dict[key]!r}" for key in ("HOST", "PORT") if settings_dict.get(key)
    )
    raise CommandError(
        f"pgmigrate: database {using!r}"
        + (f" ({where})" if where else "")
        + " goes through a transaction pooler (such as PgBouncer with pool_mode = "
        f"transaction): {evidence}. pgmigrate needs one PostgreSQL session for the whole run "
        "(its migrate lock, its timeouts, the backend it watches), so it stopped before "
        "taking or setting anything. Migrate over a direct or session-pooled connection, e.g. "
        "a DATABASES alias with the server's own HOST and PORT and `manage.py migrate "
        "--database <that alias>`."
    )


def talks_directly(using: str, backend_pid: int) -> bool:
    """Whether database ``using``'s connection talks to backend ``backend_pid`` directly:
    the server's start-up message (BackendKeyData) names this very backend. A pooler sends a
    key of its own (a transaction pooler cannot name one backend), so only then is the
    check of ``ensure_one_session`` needed, or the watcher's own evidence of a pooler."""
    return _driver_backend_pid(connections[using]) == backend_pid


def _evidence_of_pooling(using: str) -> str | None:
    """What shows that ``using``'s transactions move between server connections, or None."""
    connection = connections[using]
    other = _second_connection(using)
    ours: dict[Identity, None] = {}
    theirs: dict[Identity, None] = {}
    try:
        ours[_identity(connection, 0)] = None
        for round_ in range(1, ROUNDS + 1):
            if other is not None:
                theirs[_identity(other, round_)] = None
            ours[_identity(connection, round_)] = None
            shared = next((identity for identity in theirs if identity in ours), None)
            if shared is not None:
                return (
                    f"its server connection (backend pid {shared[0]}) ran another client's "
                    "transaction between two of the migration's"
                )
            moved = ours if len(ours) > 1 else theirs if len(theirs) > 1 else None
            if moved is not None:
                who = "the migration" if moved is ours else "a second connection (same settings)"
                first, second = list(moved)[:2]
                return (
                    f"two transactions of {who} ran on different server connections "
                    f"(backend pids {first[0]} and {second[0]})"
                )
    finally:
        if other is not None:
            with contextlib.suppress(Error):
                other.close()
    return None


def _driver_backend_pid(connection: Any) -> int | None:
    """The backend pid the driver got when it connected (psycopg 3 and psycopg2 alike)."""
    info = getattr(connection.connection, "info", None)
    return getattr(info, "backend_pid", None)


def _second_connection(using: str) -> Any:
    """A new connection with ``using``'s settings (without Django's connection pool), or
    None if it cannot connect (the check then watches the migrating connection alone)."""
    settings_dict = connections[using].settings_dict
    options = {key: value for key, value in settings_dict.get("OPTIONS", {}).items()}
    options.pop("pool", None)
    options["application_name"] = APPLICATION_NAME
    other = type(connections[using])(
        {**settings_dict, "OPTIONS": options, "CONN_MAX_AGE": 0}, using
    )
    try:
        other.ensure_connection()
    except Error:
        with contextlib.suppress(Error):
            other.close()
        return None
    return other


def _identity(connection: Any, round_: int) -> Identity:
    """The backend that runs a transaction of ``connection`` (autocommit: one statement).
    Each round's statement differs in a comment, so that no driver prepares it (a prepared
    statement lives on one server connection)."""
    with connection.cursor() as cursor:
        cursor.execute(f"{IDENTITY} /* pgmigrate pooling check {round_} */")
        pid, backend_start = cursor.fetchone()
    return pid, backend_start
