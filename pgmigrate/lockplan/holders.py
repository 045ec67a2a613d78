"""The sessions that would stand in a statement's way right now, and what pgmigrate would do
to each.

A session *holds* a lock that conflicts with a mode the statement takes on the same relation
(the statement would wait for its transaction to end), or *awaits* one (it is in the lock's
queue, ahead of the statement). They are read from one snapshot of ``pg_locks`` with each
session's ``pg_stat_activity`` columns, judged as the watcher judges the sessions that block a
running migration (``pgmigrate.watcher.Watcher._act``): ``pgmigrate.protection.judge`` for
protection, then the blocking action, then stepping aside (``PGMIGRATE_STEP_ASIDE``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connections

from pgmigrate import actions, protection
from pgmigrate.lockplan.model import LockMode
from pgmigrate.protection import Standing

#: Relation locks of other sessions (and prepared transactions) on the relations asked for,
#: in this database, each with its session's ``pg_stat_activity`` columns and those
#: ``protection.standing`` needs (``protection.JUDGING_COLUMNS``). A prepared transaction's
#: locks have no pid;
#: its ``transactionid`` lock of the same virtual transaction leads to ``pg_prepared_xacts``.
HOLDERS = f"""
WITH locks AS MATERIALIZED (
    SELECT locktype, relation, transactionid, virtualtransaction, pid, mode, granted
    FROM pg_catalog.pg_locks
    WHERE database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
       OR locktype = 'transactionid'
)
SELECT l.relation::int8 AS relation_oid, l.mode AS lock_mode, l.granted,
       l.virtualtransaction AS vxid, p.gid, p.owner AS prepared_owner,
       p.database AS prepared_database, now() - p.prepared AS prepared_age,
       a.*,{protection.JUDGING_COLUMNS}
FROM locks AS l
-- pid 0 is nobody (-1, like NULL, would be every session)
LEFT JOIN LATERAL pg_catalog.pg_stat_get_activity(COALESCE(l.pid, 0)) AS a ON true
LEFT JOIN pg_catalog.pg_database AS d ON d.oid = a.datid
LEFT JOIN locks AS x
    ON l.pid IS NULL AND x.pid IS NULL AND x.locktype = 'transactionid'
    AND x.virtualtransaction = l.virtualtransaction
LEFT JOIN pg_catalog.pg_prepared_xacts AS p ON p.transaction = x.transactionid
WHERE l.locktype = 'relation' AND l.relation = ANY(%s::oid[])
  AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()
ORDER BY l.relation, l.granted DESC, l.pid
"""


@dataclass(frozen=True)
class Holder:
    """A session (or prepared transaction) holding or awaiting a lock on a relation.

    ``would``: what pgmigrate would do to it: ``"end"``, ``"cancel"``, ``"show"``,
    ``"protected"``, ``"undecidable"``, ``"leave"`` (another database, a prepared
    transaction, no blocking action, a Cancel of an idle session), or ``"custom"`` (a custom
    action decides). ``then``: what the migration does while it stays: ``"step aside"`` (out
    of the lock queue, ``PGMIGRATE_STEP_ASIDE``), ``"wait"`` (in the queue), or None when it is
    ended. ``reason``: why, in a few words.
    """

    relation: str
    pid: int | None
    mode: LockMode
    granted: bool
    application_name: str | None
    usename: str | None
    state: str | None
    transaction_age: dt.timedelta | None
    would: str
    then: str | None
    reason: str
    #: The gid of a prepared transaction (pid None).
    gid: str | None = None

    def describe(self) -> str:
        """The holder and what pgmigrate would do, in one line."""
        if self.gid is not None:
            who = f"prepared transaction {self.gid!r}"
        else:
            who = (
                f"pid {self.pid} (application {self.application_name!r}, user "
                f"{self.usename!r}, {(self.state or 'state hidden').lower()})"
            )
        how = "holds" if self.granted else "awaits"
        then = f", then {self.then}" if self.then else ""
        return f"{who} {how} {self.mode.label}: {self.would}{then} ({self.reason})"


def read(using: str, oids: Iterable[int]) -> list[dict[str, Any]]:
    """The rows of ``HOLDERS`` for the relations ``oids`` (as dicts), on ``using``."""
    wanted = sorted(set(oids))
    if not wanted:
        return []
    with connections[using].cursor() as cursor:
        cursor.execute(HOLDERS, [wanted])
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@dataclass(frozen=True)
class Policy:
    """What the watcher would do with blockers: the blocking action (None: none), the
    protection rules (``PGMIGRATE_PROTECTED``) and whether it steps aside."""

    action: actions.BlockingAction | None
    protected: protection.Rules
    step_aside: bool


def conflicting(
    rows: Iterable[Mapping[str, Any]], oid: int, relation: str, mode: LockMode, policy: Policy
) -> list[Holder]:
    """The holders among ``rows`` of a lock on relation ``oid`` (named ``relation``) that
    conflicts with ``mode``, each with what pgmigrate would do to it."""
    found: list[Holder] = []
    for row in rows:
        if row["relation_oid"] != oid:
            continue
        try:
            held = LockMode.from_pg_locks(row["lock_mode"])
        except ValueError:
            continue
        if not held.conflicts_with(mode):
            continue
        if row["pid"] is None and row["gid"] is None:
            # Its session ended between the read of pg_locks and that of its activity
            # (pg_stat_get_activity of its pid is then no row), or its prepared transaction
            # before pg_prepared_xacts was read: every activity column is NULL, which
            # protection.standing would take for an autovacuum worker (no user, no backend
            # type). Its locks went with it: it is not in the way.
            continue
        would, then, reason = judge(row, policy)
        found.append(
            Holder(
                relation=relation,
                pid=row["pid"],
                mode=held,
                granted=row["granted"],
                application_name=row["application_name"],
                usename=row["usename"] if row["pid"] is not None else row["prepared_owner"],
                state=row["state"],
                transaction_age=row["transaction_age"] or row["prepared_age"],
                would=would,
                then=then,
                reason=reason,
                gid=row["gid"],
            )
        )
    return found


def judge(row: Mapping[str, Any], policy: Policy) -> tuple[str, str | None, str]:
    """``(would, then, reason)`` for the session of ``row``, as the watcher's ``_act``
    decides: protected (``protection.judge``), another database, undecidable protection,
    then the blocking action. What stays is stepped aside for when ``policy.step_aside``
    is on (the watcher keeps its place in the queue behind an autovacuum worker PostgreSQL
    cancels), waited for in the queue otherwise."""
    stays = "step aside" if policy.step_aside else "wait"
    if row["pid"] is None:
        return (
            "leave",
            stays,
            "a prepared transaction: only COMMIT PREPARED or ROLLBACK PREPARED ends it",
        )
    kind, verdict = protection.standing(row, policy.protected)
    if kind is Standing.AUTOVACUUM:
        cancels = "PostgreSQL cancels it after deadlock_timeout"
        return "protected", "wait", f"{verdict.reason}; {cancels}"
    if kind is Standing.PROTECTED:
        return "protected", stays, str(verdict.reason)
    # Unreachable while HOLDERS reads only this database's relation locks, which only its
    # own sessions hold; kept so that such a session is never left to the blocking action.
    if kind is Standing.ELSEWHERE:  # pragma: no cover
        return "leave", stays, f"a session of database {row['datname']!r}"
    if kind is Standing.UNDECIDABLE:
        return (
            "undecidable",
            stays,
            "protection undecidable: PostgreSQL hides " + ", ".join(verdict.hidden),
        )
    action = policy.action
    if action is None:
        return "leave", stays, "no blocking action"
    filtered = " if it matches the action's filters" if action.filters else ""
    if isinstance(action, actions.Cancel):
        if (row["state"] or "").startswith("idle"):
            return "leave", stays, "Cancel: it runs no query, cancelling frees no lock"
        return "cancel", None, f"Cancel{filtered}"
    if isinstance(action, actions.Terminate):
        return "end", None, f"Terminate{filtered}"
    if isinstance(action, actions.Show):
        return "show", stays, f"Show{filtered}"
    return "custom", None, f"{type(action).__name__} decides"
