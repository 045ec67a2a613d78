"""Who stands between the migrating backend and the lock it waits for, and how.

``pg_blocking_pids()`` lists two kinds of sessions, and a prepared transaction as pid 0:

- a *holder* holds a granted lock that conflicts with the lock the backend waits for: the
  backend gets its lock only once the holder's transaction ends;
- a *queued* session waits in the same lock's queue ahead of the backend for a conflicting
  mode. It holds nothing the backend needs, but PostgreSQL grants the lock in queue order:
  once the holders are gone, the queued session gets its lock first, and the backend then
  waits until it is done.

This module's query (``LOCK_GRAPH``, which the watcher runs together with the blockers'
sessions, only while the backend waits on a lock) reads both, and the prepared transactions
among the holders, from one snapshot of ``pg_locks`` (visible to every role); ``from_rows``
sorts its rows out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from pgmigrate.text import UNSAFE

#: The lock modes that conflict with each mode (PostgreSQL's table of conflicting lock
#: modes; advisory, tuple, transaction and object locks use the same modes).
CONFLICTS: dict[str, frozenset[str]] = {
    "AccessShareLock": frozenset({"AccessExclusiveLock"}),
    "RowShareLock": frozenset({"ExclusiveLock", "AccessExclusiveLock"}),
    "RowExclusiveLock": frozenset(
        {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}
    ),
    "ShareUpdateExclusiveLock": frozenset(
        {
            "ShareUpdateExclusiveLock",
            "ShareLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        }
    ),
    "ShareLock": frozenset(
        {
            "RowExclusiveLock",
            "ShareUpdateExclusiveLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        }
    ),
    "ShareRowExclusiveLock": frozenset(
        {
            "RowExclusiveLock",
            "ShareUpdateExclusiveLock",
            "ShareLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        }
    ),
    "ExclusiveLock": frozenset(
        {
            "RowShareLock",
            "RowExclusiveLock",
            "ShareUpdateExclusiveLock",
            "ShareLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        }
    ),
    "AccessExclusiveLock": frozenset(
        {
            "AccessShareLock",
            "RowShareLock",
            "RowExclusiveLock",
            "ShareUpdateExclusiveLock",
            "ShareLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        }
    ),
}

#: The lock the backend waits for and every other lock on the same object, from one
#: snapshot of ``pg_locks``. A prepared transaction's locks have no pid; its own
#: ``transactionid`` lock (same ``virtualtransaction``) leads to ``pg_prepared_xacts``.
LOCK_GRAPH = """
WITH locks AS MATERIALIZED (
    SELECT locktype, database, relation, page, tuple, virtualxid, transactionid, classid,
           objid, objsubid, virtualtransaction, pid, mode, granted, waitstart
    FROM pg_locks
), awaited AS (
    SELECT * FROM locks WHERE pid = %s AND NOT granted
)
SELECT l.pid, l.mode, l.granted, l.virtualtransaction, a.mode, a.locktype,
       a.relation::regclass::text, p.gid, p.owner, p.database, p.prepared,
       now() - p.prepared,
       ARRAY[a.locktype, a.database::text, a.relation::text, a.page::text, a.tuple::text,
             a.virtualxid, a.transactionid::text, a.classid::text, a.objid::text,
             a.objsubid::text],
       EXISTS (SELECT FROM locks AS h
               WHERE h.pid = a.pid AND h.granted AND h.locktype = 'relation'
                 AND h.mode = ANY(%s)) AS holds_strong,
       a.waitstart
FROM awaited AS a
JOIN locks AS l
    ON (l.locktype, l.database, l.relation, l.page, l.tuple, l.virtualxid, l.transactionid,
        l.classid, l.objid, l.objsubid)
       IS NOT DISTINCT FROM
       (a.locktype, a.database, a.relation, a.page, a.tuple, a.virtualxid, a.transactionid,
        a.classid, a.objid, a.objsubid)
    AND l.pid IS DISTINCT FROM a.pid
LEFT JOIN locks AS x
    ON l.pid IS NULL AND x.pid IS NULL AND x.locktype = 'transactionid'
    AND x.virtualtransaction = l.virtualtransaction
LEFT JOIN pg_prepared_xacts AS p ON p.transaction = x.transactionid
"""


def _escaped(char: str) -> str:
    """``char`` inside an escape string literal (``E'...'``): quotes and backslashes
    doubled, unsafe characters as ``\\xNN`` (ASCII), ``\\uXXXX`` or ``\\UXXXXXXXX``."""
    if char in "'\\":
        return char * 2
    if not UNSAFE.match(char):
        return char
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def conflicts(held: str, wanted: str) -> bool:
    """Whether a lock in mode ``held`` stands in the way of one in mode ``wanted``
    (an unknown mode is taken to conflict)."""
    known = CONFLICTS.get(wanted)
    return True if known is None else held in known


@dataclass(frozen=True)
class PreparedTransaction:
    """A prepared transaction (``PREPARE TRANSACTION``) holding a lock the backend needs.

    No session runs it: it cannot be terminated or cancelled, only finished with
    ``COMMIT PREPARED`` or ``ROLLBACK PREPARED`` in its database.
    """

    gid: str
    owner: str | None
    database: str | None
    prepared: dt.datetime | None
    age: dt.timedelta | None
    #: Its ``virtualtransaction`` in ``pg_locks`` (its locks have no pid).
    virtualtransaction: str = ""

    @property
    def key(self) -> tuple[str, dt.datetime | None]:
        return (self.gid, self.prepared)

    @property
    def literal(self) -> str:
        """``gid`` as an SQL string literal, safe to print and to paste back: a gid with a
        character ``text.printable`` would escape (a control character, a line break...) is
        written as an escape string (``E'...'``, PostgreSQL docs: "String Constants with
        C-Style Escapes"), so that the literal still names it."""
        if not UNSAFE.search(self.gid):
            return "'" + self.gid.replace("'", "''") + "'"
        return "E'" + "".join(_escaped(char) for char in self.gid) + "'"


@dataclass
class LockGraph:
    """What stands between the backend and the lock it waits for."""

    #: The awaited lock: its mode (``AccessExclusiveLock``), type (``relation``) and, for a
    #: relation, the relation's name.
    mode: str
    locktype: str
    relation: str | None
    #: Sessions holding a conflicting lock: pid -> virtual transaction (``3/1234``).
    holders: dict[int, str] = field(default_factory=dict)
    #: Sessions waiting for a conflicting lock on the same object (PostgreSQL's
    #: ``pg_blocking_pids`` tells which of them are ahead of the backend).
    waiters: dict[int, str] = field(default_factory=dict)
    prepared: list[PreparedTransaction] = field(default_factory=list)
    #: The awaited lock's tag: ``pg_locks``' columns ``locktype`` to ``objsubid``, as text.
    locktag: tuple[str | None, ...] = ()
    #: Whether the backend holds a relation lock that the app's writes wait for (SHARE or
    #: stronger), taken by an earlier statement of its transaction.
    holds_strong: bool = False
    #: When the backend began to wait for the lock (``pg_locks.waitstart``; None: not yet
    #: set). The signal statement checks that it still waits in the same request.
    waitstart: dt.datetime | None = None
    #: The sessions that the statement which read the graph ended right after reading it
    #: (the watcher's first look at a statement, ``watcher.FIRST_END``).
    ended: frozenset[int] = frozenset()

    @property
    def modes(self) -> list[str]:
        """The lock modes that conflict with the awaited one."""
        return sorted(CONFLICTS.get(self.mode, frozenset(CONFLICTS)))

    @property
    def blocks_app(self) -> bool:
        """Whether the app's queries queue behind the backend while it waits: the awaited
        lock is a table lock that conflicts with the app's reads or writes
        (``ROW EXCLUSIVE``), or the backend already holds such a lock."""
        return self.holds_strong or (
            self.locktype == "relation" and conflicts(APP_MODE, self.mode)
        )

    @property
    def target(self) -> str:
        """The awaited lock, for people: ``AccessExclusiveLock on tests_beta``."""
        if self.relation is not None:
            return f"{self.mode} on {self.relation}"
        return f"{self.mode} on a {self.locktype} lock"


#: The lock mode of the app's writes (``INSERT``/``UPDATE``/``DELETE``): modes that conflict
#: with it make the app queue.
APP_MODE = "RowExclusiveLock"
#: Relation lock modes that conflict with ``APP_MODE``.
STRONG_MODES = sorted(CONFLICTS[APP_MODE])


#: The columns of ``LOCK_GRAPH``'s rows.
COLUMNS = 15


def from_rows(rows: list[Any]) -> LockGraph | None:
    """The lock graph from the rows of ``LOCK_GRAPH`` (their first ``COLUMNS`` columns)."""
    if not rows:
        return None
    _, _, _, _, wanted, locktype, relation, *_, locktag, holds_strong, waitstart = rows[0]
    graph = LockGraph(
        mode=wanted,
        locktype=locktype,
        relation=relation,
        locktag=tuple(locktag),
        holds_strong=holds_strong,
        waitstart=waitstart,
    )
    seen_prepared: set[str] = set()
    for pid, mode, granted, vxid, _, _, _, gid, owner, database, prepared, age, *_ in rows:
        if not conflicts(mode, wanted):
            continue
        if pid is not None:
            (graph.holders if granted else graph.waiters).setdefault(pid, vxid)
        elif granted and gid is not None and gid not in seen_prepared:
            seen_prepared.add(gid)
            graph.prepared.append(
                PreparedTransaction(gid, owner, database, prepared, age, virtualtransaction=vxid)
            )
    return graph
