"""The watcher: a thread that finds and handles the sessions blocking the migrating backend.

The migrating connection tells the watcher when each statement starts and ends (through a
Django ``execute_wrapper``), so the watcher costs nothing between statements and nothing
for statements that finish quickly. While a statement runs, the watcher takes a light look
at the backend in ``pg_stat_activity`` (via django-pgactivity): first a fifth of an interval
after the statement starts, then at gaps that double up to twelve intervals. Only when the
backend waits on a lock does it ask who blocks it (``pg_blocking_pids``); only when those
change does it read the lock graph (``pg_locks``, ``pg_prepared_xacts``, the blockers'
``pg_stat_activity`` rows: see ``pgmigrate.lockgraph``), sort the blockers out (holders and
sessions queued ahead; protected, undecidable, prepared transactions) and run the blocking
action on those it may end. The first look at a statement, when its waits usually begin,
reads the lock graph in the same statement as the look, only if the backend waits
(``LOOK_AND_GRAPH``): the app, queued behind the migration, saves a round trip.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import functools
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings
from django.db import Error, connections

from pgmigrate import actions, config, live, lockgraph, own, protection
from pgmigrate.actions import Blocker, with_blockers
from pgmigrate.aside import Aside, StepAside
from pgmigrate.db import RUNNING_STATES
from pgmigrate.errors import sqlstate
from pgmigrate.prepared import Prepared, prepare_all
from pgmigrate.protection import Standing
from pgmigrate.text import printable
from pgmigrate.wakeup import Latch, Wakeup

if TYPE_CHECKING:
    from pgmigrate.actions import BlockingAction
    from pgmigrate.command import MigrateCommand
    from pgmigrate.liveline import LiveLine

T = TypeVar("T")

#: ``application_name`` prefix of pgmigrate's own connections.
APPLICATION_NAME = "pgmigrate"
#: Why a session that blocks through parallel workers whose leader is hidden stays.
UNPLACED = "parallel query whose workers' leader PostgreSQL hides (leader_pid)"
#: Why the migration waits for a session it stepped aside for while the action ends it.
ENDING = "being ended"
#: Why a session of the migrate process itself is left alone (``pgmigrate.own``); one that
#: the migrating thread opened waits for the migration in turn (``Aside.deadlock``).
OWN = "a connection of this migrate process"
OWN_THREAD = "a connection of the migration's own code (a deadlock)"
#: Sessions the action ended that still block this long after (s) are stepped aside for.
ENDING_GRACE = 0.25
#: When ``Terminate`` ends at least this many sessions at once, the statement that ends them
#: first cancels the migration's waiting statement (``actions.SIGNAL_CANCELLING_FIRST``):
#: the app's queries stop queueing behind it while the sessions exit, which takes a
#: backend each and, on a server with few cores, longer than noticing the wait did. (One
#: session exits within about a millisecond: the migration keeps its place then.)
CROWD = 4
#: ... only when the retry unit had run at most this long (s) when its statement began to
#: wait (stepping aside runs that work again), only through SQL (``StepAside.sql_only``:
#: nothing else is repeated), and once per migration and awaited lock (new sessions of a
#: busy app that block the migration when it comes back are ended in the queue, not made
#: a new crowd to step aside for, and so on).
CROWD_REDO_AT_MOST = 0.1
#: The gap between looks at a running, unblocked statement grows up to this many intervals.
RUNNING_GAP_INTERVALS = 12
#: While a wait persists after acting, the gap grows up to this many intervals.
WAITING_GAP_INTERVALS = 100
#: The lock graph a look read along is acted on only this soon after it (s). Later (a slow
#: receiver of the ``blocked`` event, a log handler), the backend may have got its lock
#: meanwhile, a blocker may have let go of it in the same transaction (a savepoint's
#: rollback): the graph is read again, right before acting, as for the later looks. (The
#: built-in actions' signal statement checks ``pg_blocking_pids`` again anyway; a custom
#: action may not. The sessions that the first look's statement ended itself, ``FIRST_END``,
#: it ended while they blocked: they are told from that read, however old.)
READ_ALONG_FRESH = 0.005
#: A migration whose last statements ended while the watcher looked at them waits this long
#: (s) at most, when it finishes, for the look to tell whether they waited on a lock (its
#: lock wait in the ``migration_finished`` event; ``Watcher.settle``).
LOOK_TOLD_WITHIN = 0.01
#: SQLSTATE ``insufficient_privilege``.
INSUFFICIENT_PRIVILEGE = "42501"
#: How long ``stop()`` waits for the thread to finish, in seconds.
STOP_TIMEOUT = 5.0
#: Read once the watcher connects: its own backend (one of ``own_pids``), the migration's
#: database (whether the process's other sessions may block it, ``_ends_at_first_look``),
#: whether it sees the migrating backend's state (``_say_blind``) and its roles.
CONNECTED = (
    "SELECT pg_backend_pid(), current_database(),"
    " (SELECT state IS NOT NULL FROM pg_stat_get_activity(%s)), session_user, current_user"
)
#: How long ``wait_ready()`` waits for the watcher to connect and prepare, at most (s).
READY_TIMEOUT = 2.0

#: The light look at the migrating backend: its entry of ``pg_stat_activity`` alone and,
#: only while it waits on a lock, who blocks it (``pg_blocking_pids``, a lock-graph query).
LOOK = """
SELECT wait_event_type, state, query_start,
       CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) END
FROM pg_stat_get_activity(%s)
"""
#: Cancel the migrating backend's statement to step out of the lock queue, only while it
#: still waits on a lock in the statement the watcher saw (``pgmigrate.aside``).
CANCEL_OWN = """
SELECT pg_cancel_backend(pid) FROM pg_stat_get_activity(%s)
WHERE wait_event_type = 'Lock' AND state = 'active' AND query_start = %s
"""
#: Which of the transactions (sessions' and prepared, by virtual transaction) the migration
#: stepped aside for still hold or await a conflicting lock on the same object. A session's
#: next transaction is a new blocker: the migration meets it when it runs again.
STILL_BLOCKING = """
SELECT DISTINCT l.virtualtransaction FROM pg_locks AS l
WHERE ARRAY[l.locktype, l.database::text, l.relation::text, l.page::text, l.tuple::text,
            l.virtualxid, l.transactionid::text, l.classid::text, l.objid::text,
            l.objsubid::text] = %s::text[]
  AND l.mode = ANY(%s) AND l.virtualtransaction = ANY(%s)
"""
#: While out of the lock queue, the gap between looks at the blockers grows up to this (s);
#: after ``ASIDE_SLOW_AFTER`` seconds out of it, up to ``ASIDE_GAP_SLOW``.
ASIDE_GAP_MAX = 0.02
ASIDE_SLOW_AFTER = 5.0
ASIDE_GAP_SLOW = 0.1
#: A session whose transaction stepped aside for lasted at most this long (s) is let end its
#: next one with the migration in the queue (``Watcher._keeps_its_place``).
BUSY_TRANSACTION = 1.0
#: A crowd (``CROWD``) is stepped aside for only when each of its transactions has been open
#: longer than this (s): stale sessions. A crowd of a busy app's short transactions says
#: that more of them would begin while the migration is out of the queue, each to be ended
#: when it comes back.
CROWD_STALE_AFTER = BUSY_TRANSACTION
#: Whether those sessions are still in the transaction seen (cheap: no ``pg_locks``).
SAME_TRANSACTIONS = """
SELECT count(*) FROM unnest(%s::int[], %s::timestamptz[]) AS seen(pid, xact_start)
CROSS JOIN LATERAL pg_stat_get_activity(seen.pid) AS a
WHERE a.xact_start = seen.xact_start
"""
#: Out of the lock queue, ``pg_locks`` is read again at least this often (s).
FULL_LOOK_EVERY = 0.5

#: Whom the migration waits for out of the queue is said again after this many seconds,
#: then at gaps that double up to ``REMINDER_MAX``.
REMINDER_FIRST = 1.0
REMINDER_MAX = 60.0
#: Looks in a row that must find the backend not running our statement before pgmigrate
#: concludes that the connection goes through a transaction-pooling proxy.
POOLING_EVIDENCE = 5
#: The lock graph (``pgmigrate.lockgraph``), each row with its session's
#: ``pg_stat_activity`` columns and what pgmigrate needs to judge it
#: (``protection.JUDGING_COLUMNS``). One statement: the app waits while it runs.
GRAPH_AND_SESSIONS = f"""
WITH graph AS MATERIALIZED ({lockgraph.LOCK_GRAPH})
SELECT graph.*, a.*,{protection.JUDGING_COLUMNS},
       quote_ident(current_user) AS migrating_role
FROM graph
-- a prepared transaction's rows have no pid: pg_stat_get_activity of NULL, or of a negative
-- pid, is every session; of 0, none
LEFT JOIN LATERAL pg_stat_get_activity(COALESCE(graph.pid, 0)) AS a ON true
LEFT JOIN pg_database AS d ON d.oid = a.datid
"""

#: The sessions of parallel query leaders whose workers hold or await a lock the migration
#: needs (``pg_blocking_pids`` names the leader; ``pg_locks`` the workers), with the same
#: columns as ``GRAPH_AND_SESSIONS``' sessions and each leader's own virtual transaction
#: (the workers' locks are under theirs). Only read when such workers are in the way.
LEADERS = f"""
SELECT a.*,{protection.JUDGING_COLUMNS},
       quote_ident(current_user) AS migrating_role,
       (SELECT l.virtualtransaction FROM pg_locks AS l
        WHERE l.pid = a.pid AND l.locktype = 'virtualxid' AND l.granted
          AND l.virtualxid = l.virtualtransaction) AS leader_vxid
FROM unnest(%s::int[]) AS leader(pid)
CROSS JOIN LATERAL pg_stat_get_activity(leader.pid) AS a
LEFT JOIN pg_database AS d ON d.oid = a.datid
"""

#: The names ``LOOK_AND_GRAPH`` gives the lock graph's columns (``lockgraph.LOCK_GRAPH``),
#: for ``FIRST_END`` to read them.
_GRAPH_NAMES = (
    "lock_pid, lock_mode, lock_granted, lock_vxid, awaited_mode, awaited_locktype, "
    "awaited_relation, gid, gid_owner, gid_database, gid_prepared, gid_age, awaited_tag, "
    "holds_strong, waitstart"
)
#: Ends, in the statement of the first look, the sessions that block the migrating backend
#: when ``Terminate`` (without filters, no ``PGMIGRATE_PROTECTED`` rules) would end each of
#: them for sure: fewer than ``CROWD`` (parallel workers repeat their leader's pid in
#: ``pg_blocking_pids``: counted once), each a client backend of this database that the
#: migrating role sees whole and may signal, not replicating, holding a lock on the table
#: whose ACCESS EXCLUSIVE lock the backend awaits (every lock conflicts with it), while the
#: backend runs a statement (``RUNNING_STATES``: with ``track_activities`` off its state is
#: ``disabled``, and the watcher acts on nothing). Otherwise (one of them is anything else:
#: protected, queued, a prepared transaction, out of reach) it ends none, and the watcher
#: decides in Python, as for the later looks. It saves the app the round trip to the watcher
#: and back and the Python between: the blockers exit about a millisecond sooner. It runs
#: after the graph and the sessions are read whole (``found``), from the statement's one
#: snapshot of ``pg_stat_activity``, so that the watcher reports them as seen, and after
#: each of their rows converts to the client's encoding (which fails the statement, before
#: any signal, where the sessions' texts do not: a ``SQL_ASCII`` database). Parameter:
#: ``CROWD``.
FIRST_END = """
first_end AS MATERIALIZED (
    SELECT b.pid, pg_terminate_backend(b.pid) AS ended
    FROM (
        SELECT array_agg(b.pid) AS pids,
               count(*) < %s::int AND bool_and(COALESCE(
                   a.backend_type = 'client backend'
                   AND a.datid = (SELECT oid FROM pg_database
                                  WHERE datname = current_database())
                   AND (pg_has_role(a.usesysid, 'USAGE')
                        OR pg_has_role('pg_read_all_stats', 'USAGE'))
                   AND NOT EXISTS (SELECT FROM pg_stat_get_wal_senders() AS w
                                   WHERE w.pid = b.pid)
                   AND NOT EXISTS (SELECT FROM pg_stat_get_subscription(NULL) AS s
                                   WHERE s.pid = b.pid)
                   AND b.pid <> pg_backend_pid()
                   AND {allowed}
                   AND EXISTS (SELECT FROM found AS f
                               WHERE f.lock_pid = b.pid AND f.lock_granted
                                 AND f.awaited_mode = 'AccessExclusiveLock'
                                 AND f.awaited_locktype = 'relation'),
                   false)) AS go
        FROM look
        CROSS JOIN LATERAL (SELECT DISTINCT u.pid FROM unnest(look.blocking) AS u(pid)) AS b
        LEFT JOIN LATERAL pg_stat_get_activity(b.pid) AS a ON true
        LEFT JOIN pg_roles AS r ON r.oid = a.usesysid
        WHERE look.look_wait_event_type = 'Lock' AND look.look_state IN ({running})
          -- the graph read whole first, each row as the client will get it
          AND (SELECT count(*) FROM found AS f
               WHERE convert_to(f::text, pg_client_encoding()) IS NOT NULL) > 0
    ) AS d
    CROSS JOIN unnest(d.pids) AS b(pid)
    WHERE d.go
)"""
#: A ``first_end`` that ends nobody: ``LOOK_AND_GRAPH`` runs no ``pg_terminate_backend`` (which
#: a role may lack the privilege to run: PostgreSQL checks it whether or not it is called).
NO_END = "first_end AS (SELECT NULL::int AS pid, false AS ended WHERE false)"


def _look_and_graph(first_end: str) -> str:
    """``LOOK`` and, in the same statement, ``GRAPH_AND_SESSIONS`` when the backend waits on
    a lock, then ``first_end``: which sessions it ended, in the column after the look's."""
    return f"""
WITH look AS MATERIALIZED (
    SELECT * FROM ({LOOK}) AS look(look_wait_event_type, look_state, look_query_start, blocking)
), found AS MATERIALIZED (
    SELECT graph.*
    FROM look
    CROSS JOIN LATERAL ({GRAPH_AND_SESSIONS}
        WHERE look.look_wait_event_type = 'Lock') AS graph({_GRAPH_NAMES})
), {first_end}
SELECT look.*, (SELECT array_agg(e.pid) FROM first_end AS e WHERE e.ended) AS ended, found.*
FROM look
LEFT JOIN found ON true
"""


#: The first look at a statement, where its waits begin: ``LOOK`` with the lock graph and
#: the blockers' sessions read along when the backend waits (saving the app a round trip);
#: otherwise the graph part is not run (a one-time filter of the plan) and the row has NULLs
#: after the look's columns. Its plan is much bigger than ``LOOK``'s (more to start and end
#: at each run), so the later looks at a long statement use ``LOOK``.
LOOK_AND_GRAPH = _look_and_graph(NO_END)
#: ``LOOK_AND_GRAPH`` that also ends the blockers where that is sure (``FIRST_END``).
LOOK_AND_END = _look_and_graph(
    FIRST_END.format(
        allowed=actions.ALLOWED, running=", ".join(f"'{state}'" for state in RUNNING_STATES)
    )
)
#: The look's columns, and the sessions ``FIRST_END`` ended, before the graph's in
#: ``LOOK_AND_GRAPH``.
LOOK_COLUMNS = 5

#: The watcher's queries, prepared in the watcher's session (``pgmigrate.prepared``).
LOOK_P = Prepared("look", LOOK, ("int",))
LOOK_AND_GRAPH_P = Prepared("look_and_graph", LOOK_AND_GRAPH, ("int", "int", "text[]"))
LOOK_AND_END_P = Prepared("look_and_end", LOOK_AND_END, ("int", "int", "text[]", "int"))
GRAPH_AND_SESSIONS_P = Prepared("graph_and_sessions", GRAPH_AND_SESSIONS, ("int", "text[]"))
CANCEL_OWN_P = Prepared("cancel_own", CANCEL_OWN, ("int", "timestamptz"))
STILL_BLOCKING_P = Prepared("still_blocking", STILL_BLOCKING, ("text[]", "text[]", "text[]"))
SAME_TRANSACTIONS_P = Prepared("same_transactions", SAME_TRANSACTIONS, ("int[]", "timestamptz[]"))
LEADERS_P = Prepared("leaders", LEADERS, ("int[]",))
#: The statements of a statement's first look: ``LOOK_AND_END`` where it may end the blockers.
FIRST_LOOKS = (LOOK_AND_GRAPH_P, LOOK_AND_END_P)
PREPARED = (
    LOOK_P,
    LOOK_AND_GRAPH_P,
    LOOK_AND_END_P,
    GRAPH_AND_SESSIONS_P,
    LEADERS_P,
    CANCEL_OWN_P,
    STILL_BLOCKING_P,
    SAME_TRANSACTIONS_P,
    live.PROGRESS_P,
)


def _look_params(prepared: Prepared, pid: int) -> list[Any]:
    """The parameters of a look at backend ``pid`` with ``prepared`` (``LOOK_P`` or one of
    ``FIRST_LOOKS``)."""
    if prepared is LOOK_P:
        return [pid]
    graph = [pid, pid, lockgraph.STRONG_MODES]
    return [*graph, CROWD] if prepared is LOOK_AND_END_P else graph


def _blocker(
    row: dict[str, Any], *, virtualtransaction: str | None, queued: bool, via: int | None = None
) -> Blocker:
    return Blocker(
        pid=row["pid"],
        backend_start=row["backend_start"],
        application_name=row["application_name"],
        state=row["state"],
        query=row["query"],
        usename=row["usename"],
        transaction_age=row["transaction_age"],
        virtualtransaction=virtualtransaction,
        queued=queued,
        hidden=not row["visible"],
        xact_start=row["xact_start"],
        query_start=row["query_start"],
        via=via,
    )


def _native_timestamps(cursor: Any, *, graph: bool = True) -> None:
    """Read ``timestamptz`` values on ``cursor`` as aware datetimes: the watcher sends them
    back to the server (the signal statement, the steps out of the lock queue), and a naive
    one (Django's without ``USE_TZ``), in the hour of ``TIME_ZONE`` that the end of summer
    time repeats, would be taken for the other of its two instants.

    With psycopg 3, its own loader (C, with psycopg's binary or C package) instead of
    Django's, a Python subclass that takes about 10 microseconds a value: with 20 blockers,
    the lock graph's four timestamps a session cost about 0.6 ms of the urgent path. So on
    the lock graph's cursor (``graph``) always (with ``USE_TZ`` both give aware datetimes,
    equal and hashing alike for the same instant), on the others only without ``USE_TZ``.
    With psycopg 2 (which parses in C), its ``datetime.timezone`` where Django sets none."""
    raw = cursor.cursor
    adapters = getattr(raw, "adapters", None)
    if adapters is not None:
        if graph or not settings.USE_TZ:
            adapters.register_loader("timestamptz", _psycopg_timestamptz_loader())
    elif getattr(raw, "tzinfo_factory", dt.timezone) is None:
        raw.tzinfo_factory = dt.timezone


#: The lock graph of the migrating backend (None: it awaits no lock) and the sessions in
#: it: their ``pg_stat_activity`` columns with the judging ones, by pid.
_GraphRead = tuple[lockgraph.LockGraph | None, dict[int, dict[str, Any]]]


@dataclasses.dataclass
class _InTheWay:
    """Who is in the migration's way (``Watcher._in_the_way``)."""

    #: Holders and queued sessions: pid -> the virtual transaction to check it by.
    holders: dict[int, str]
    waiters: dict[int, str]
    #: Holders that block the migration through a session queued for a row: pid -> its pid.
    via: dict[int, int] = dataclasses.field(default_factory=dict)
    #: Virtual transactions whose locks count as a session's (a parallel query's workers,
    #: for their leader): vxid -> the session's pid.
    lock_vxids: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Sessions that block the migration (``pg_blocking_pids``) through parallel workers
    #: whose leader PostgreSQL hides from the migrating role: pid -> virtual transaction.
    #: They stay (pgmigrate cannot tell which workers are theirs).
    unplaced: dict[int, str] = dataclasses.field(default_factory=dict)


def _graph_read(rows: list[Any], names: list[str]) -> _GraphRead:
    """``_GraphRead`` from the rows of ``GRAPH_AND_SESSIONS`` and their column names."""
    session_names = names[lockgraph.COLUMNS :]
    sessions: dict[int, dict[str, Any]] = {}
    for row in rows:
        session = dict(zip(session_names, row[lockgraph.COLUMNS :], strict=True))
        if session["pid"] is not None:
            sessions.setdefault(session["pid"], session)
    return lockgraph.from_rows([row[: lockgraph.COLUMNS] for row in rows]), sessions


@functools.cache
def _psycopg_timestamptz_loader() -> Any:
    import psycopg

    oid = psycopg.adapters.types["timestamptz"].oid
    return psycopg.adapters.get_loader(oid, psycopg.pq.Format.TEXT)


def _stale(blocker: Blocker) -> bool:
    """Whether ``blocker``'s transaction has been open longer than ``CROWD_STALE_AFTER``
    (False if its age is hidden)."""
    age = blocker.transaction_age
    return age is not None and age.total_seconds() > CROWD_STALE_AFTER


def _session_key(blocker: Blocker) -> tuple[int, Any]:
    return (blocker.pid, blocker.backend_start)


def _aside_fields(aside: Aside) -> dict[str, Any]:
    """The fields of the ``stepped_aside``/``waiting_aside`` events."""
    return {
        "lock": aside.target,
        "blockers": [
            {
                "pid": blocker.pid,
                "application_name": blocker.application_name,
                "state": blocker.readable_state,
                "usename": blocker.usename,
                "transaction_age": blocker.transaction_age.total_seconds()
                if blocker.transaction_age is not None
                else None,
                "reason": aside.reasons.get(blocker.pid),
            }
            for blocker in aside.sessions
        ],
        "prepared": [
            {"gid": p.gid, "owner": p.owner, "database": p.database} for p in aside.prepared
        ],
    }


def _quoted(role: str) -> str:
    """A role name from ``quote_ident`` in double quotes, as GRANT wants it in messages."""
    return printable(role if role.startswith('"') else f'"{role}"')


class _Statement:
    """A statement running on the migrating connection."""

    __slots__ = (
        "ended",
        "look_done",
        "migration",
        "query_start",
        "started",
        "statement_timeout",
        "wait_began",
        "waited",
    )

    def __init__(self, migration: str | None, statement_timeout: float | None) -> None:
        self.started = time.monotonic()
        #: Its statement timeout (s; None: none), when it started.
        self.statement_timeout = statement_timeout
        #: The migration the statement belongs to (events are attributed to it).
        self.migration = migration
        self.ended: float | None = None
        #: When the watcher saw the statement start waiting on a lock (None: not waiting).
        self.wait_began: float | None = None
        #: Seconds of lock waits that ended while the statement went on.
        self.waited = 0.0
        #: Its ``query_start`` in ``pg_stat_activity`` (the server's clock), once seen.
        self.query_start: Any = None
        #: Set once the watcher's latest look at it has told whether it waits
        #: (``wait_began``); None: no look yet.
        self.look_done: Latch | None = None


class Watcher:
    """Watches one migrating backend from a thread with a connection of its own."""

    def __init__(
        self,
        command: MigrateCommand,
        *,
        using: str,
        backend_pid: int | None = None,
        action: BlockingAction | None,
        interval: float,
        protected: protection.Rules | None = None,
        lock_timeout: float | None = None,
        step_aside: StepAside | None = None,
        live_line: LiveLine | None = None,
    ) -> None:
        self.command = command
        self.using = using
        #: The migrating backend (``attach``; 0 until then).
        self.backend_pid = 0
        self.action = copy.deepcopy(action)
        self.interval = interval
        self.protected = protected or {}
        self.lock_timeout = lock_timeout
        #: pids never to act on: the migrating backend and the watcher's own connection.
        self.own_pids: set[int] = set()
        #: The process's other sessions (``pgmigrate.own``): left alone when they block.
        self.process_sessions = own.OwnSessions()
        #: The migration's database (``current_database()``), once the watcher connected.
        self._database: str | None = None
        #: Set when pgmigrate concluded that it cannot watch this connection (a proxy).
        self.disabled = False
        #: The migrating connection talks to ``backend_pid`` directly (no pooler in
        #: between: ``pooling.talks_directly``): seeing the backend idle while a statement
        #: runs is then no evidence of a pooler (the driver may still be sending it).
        self.direct = False
        self._statement: _Statement | None = None
        #: Guards the statements' lock-wait figures, which both threads update
        #: (``wait_began``, ``waited``, ``ended``).
        self._tally = threading.Lock()
        #: The last statement that ended while a look at it was in flight (``settle``).
        self._untold: _Statement | None = None
        self._wake = Wakeup()
        self._stop = Latch()
        self._ready = threading.Event()
        self._reported_errors: set[str] = set()
        #: The looks' bound ``EXECUTE`` statements (``_bound``), by name and backend pid.
        self._bound_looks: dict[tuple[str, int], str] = {}
        #: ``_migration_locks``: (the backend's pid, its queryset).
        self._locks_made: tuple[int, Any] | None = None
        #: Whether the first look may end the blockers itself (``FIRST_END``): with
        #: ``Terminate`` as it is (not a subclass, no filters) and no ``PGMIGRATE_PROTECTED``
        #: rules (judged in Python only), where the role may run ``pg_terminate_backend``.
        self._may_end_at_look = (
            type(self.action) is actions.Terminate and not self.action.filters and not protected
        )
        #: What the watcher said it leaves alone (sessions, prepared transactions): once each.
        self._shown: set[Any] = set()
        self._connected_before = False
        #: Whether it said that it cannot see the migrating backend (``_say_blind``).
        self._blind_said = False
        #: Stepping out of the lock queue (``pgmigrate.aside``): the wait the migrating
        #: thread handed over, and what was last said about it.
        self.step_aside = step_aside or StepAside(enabled=False)
        self.step_aside.waiter = self.wait_aside
        self._aside: Aside | None = None
        #: (migration, awaited lock) once stepped aside for a crowd (``CROWD_REDO_AT_MOST``).
        self._crowds: set[tuple[str | None, str]] = set()
        self._aside_said: frozenset[Any] | None = None
        self._stepping = False
        #: How long the last transaction lasted of each session stepped aside for (s).
        self._durations: dict[tuple[int, Any], float] = {}
        #: Where a long statement's progress is shown (``pgmigrate.live``), and why each
        #: session in the migration's way was left alone, by pid (what the line tells).
        self.live_line = live_line
        self._progress: tuple[_Statement, live.StatementProgress] | None = None
        self.left_alone: dict[int, str] = {}
        self._settings_dict = self._watcher_settings(connections[using].settings_dict)
        self._thread = threading.Thread(
            target=self._run, name=f"pgmigrate-watcher-{using}", daemon=True
        )
        if backend_pid is not None:
            self.attach(backend_pid)

    @staticmethod
    def _watcher_settings(settings_dict: dict[str, Any]) -> dict[str, Any]:
        options = {
            key: value for key, value in settings_dict.get("OPTIONS", {}).items() if key != "pool"
        }
        options["application_name"] = f"{APPLICATION_NAME} watcher"
        if "server_side_binding" in options:  # EXECUTE takes its parameters as SQL values
            options["server_side_binding"] = False
        return {**settings_dict, "OPTIONS": options, "CONN_MAX_AGE": 0}

    # Called from the migrating thread -------------------------------------------------

    def start(self) -> None:
        """Start the thread: it connects and prepares its queries (``wait_ready``)."""
        self._thread.start()

    def attach(self, backend_pid: int) -> None:
        """Watch ``backend_pid`` (before the first statement that ``execute_wrapper`` marks)."""
        self.backend_pid = backend_pid
        self.own_pids.add(backend_pid)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the watcher has connected and prepared its queries (or given up on
        it), so that it can look at the migration's first statement at once."""
        self._ready.wait(timeout)

    def stop(self) -> None:
        """Stop the thread and close its connection; safe to call more than once."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT)

    def execute_wrapper(
        self, execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any
    ) -> Any:
        """Django ``execute_wrapper`` for the migrating connection: marks statement bounds."""
        self.step_aside.check()  # a cancel the migration's code swallowed stops it here
        statement = _Statement(self._migration(), self.step_aside.statement_timeout)
        self._statement = statement
        self._wake.set()
        try:
            return execute(sql, params, many, context)
        except Exception as exc:
            self.step_aside.note_failure(exc)
            raise
        finally:
            ended = time.monotonic()
            if self._statement is statement:
                self._statement = None
            with self._tally:
                statement.ended = ended
                wait_began = statement.wait_began
                if wait_began is not None:
                    statement.waited += ended - wait_began
                done = statement.look_done
                if done is not None and not done.is_set():
                    # A look in flight: the migration goes on, and the look counts the wait
                    # it saw (the first look may end the blockers itself, and the statement
                    # go on before the look returns); ``settle`` waits for it.
                    self._untold = statement
            if statement.waited:
                self._add_lock_wait(statement.waited, statement.migration)

    def settle(self, timeout: float = LOOK_TOLD_WITHIN) -> None:
        """Wait (``timeout`` seconds at most) until a look in flight when a statement ended
        has told whether that statement waited on a lock, so that its wait is in the
        figures. Called from the migrating thread when a migration finishes: statements
        themselves never wait for the watcher."""
        statement, self._untold = self._untold, None
        if statement is not None and statement.look_done is not None:
            statement.look_done.wait(timeout)

    # The watcher thread ---------------------------------------------------------------

    def _ensure_connected(self) -> None:
        """(Re)connect the watcher's own connection, remembering its pid as one of ours."""
        if connections[self.using].connection is not None:
            return
        connections[self.using].ensure_connection()
        with connections[self.using].cursor() as cursor:
            cursor.execute(CONNECTED, [self.backend_pid])
            own_pid, self._database, sees, session_user, current_user = cursor.fetchone()
        self.own_pids.add(own_pid)
        if sees is False:
            self._say_blind(session_user, current_user)
        self._warm_up(own_pid)
        if self._connected_before:
            self.command.notice("pgmigrate: the watcher reconnected to the database")
        self._connected_before = True

    def _say_blind(self, session_user: str, current_user: str) -> None:
        """Say (once) that the watcher's role cannot see the migrating backend's state in
        ``pg_stat_activity``: PostgreSQL shows it only to roles with the privileges of the
        role that logged in (its session user) or of ``pg_read_all_stats`` ("Viewing
        Statistics", PostgreSQL docs 27.2.2). A ``SET ROLE`` at connection time (Django's
        ``assume_role``, ``-c role=...``) to a role the login role is a member of hides it."""
        if self._blind_said:
            return
        self._blind_said = True
        login = (
            f" (the role that logged in is {session_user!r})"
            if session_user != current_user
            else ""
        )
        self.command.notice(
            f"pgmigrate: the watcher cannot see the migrating backend (pid {self.backend_pid}) "
            f"in pg_stat_activity: its role {current_user!r} has the privileges neither of "
            f"the backend's session user{login} nor of pg_read_all_stats. pgmigrate cannot "
            "tell when the migration waits on a lock, so it ends, shows and steps aside from "
            "no blocker (a lock timeout still applies). Remedy: GRANT pg_read_all_stats TO "
            f"{_quoted(current_user)}; (as a superuser), or log in as {current_user!r}.",
            warning=True,
        )

    def _warm_up(self, own_pid: int) -> None:
        """Run each query of the urgent path once, on nothing: the first run of a query in a
        session loads the catalog entries it needs (milliseconds for the lock graph), and
        psycopg parses a query string the first time it is sent; neither must happen while
        the app waits behind the migration. The watcher's own backend waits on nothing."""
        protection.compile_patterns(self.protected)
        with connections[self.using].cursor() as cursor:
            # One round trip: every PREPARE, and the looks out of the lock queue (the app
            # does not queue behind the migration then). Of the two first-look statements
            # (``FIRST_LOOKS``), only the one the looks send: planning the other would take
            # milliseconds while the migration waits to start.
            first_look = self._first_look
            prepare_all(
                cursor,
                [p for p in PREPARED if p is first_look or p not in FIRST_LOOKS],
                [
                    (STILL_BLOCKING_P, [[], [], []]),
                    (SAME_TRANSACTIONS_P, [[], []]),
                    (LEADERS_P, [[]]),
                ],
            )
            if self._stop.is_set():  # the run ended meanwhile
                return
            # The urgent path's statements as it sends them, one by one.
            LOOK_P.execute(cursor, _look_params(LOOK_P, own_pid))
            if first_look is LOOK_AND_END_P:
                try:
                    LOOK_AND_END_P.execute(cursor, _look_params(LOOK_AND_END_P, own_pid))
                except Error as exc:
                    if sqlstate(exc) != INSUFFICIENT_PRIVILEGE:
                        raise
                    # No EXECUTE on pg_terminate_backend: the look ends nobody (the action
                    # says what it cannot do when it runs).
                    self._may_end_at_look = False
            if self._first_look is LOOK_AND_GRAPH_P:  # prepared by its first run if need be
                LOOK_AND_GRAPH_P.execute(cursor, _look_params(LOOK_AND_GRAPH_P, own_pid))
            GRAPH_AND_SESSIONS_P.execute(cursor, [own_pid, lockgraph.STRONG_MODES])
            CANCEL_OWN_P.execute(cursor, [own_pid, None])
            for look in (LOOK_P, self._first_look):  # the looks' statements, bound once
                self._bound(cursor, look)
        if self.action is not None and not self._stop.is_set():
            # Actions get the queryset with the blockers attached (``with_blockers``).
            self.action.warm_up(with_blockers(self.blocked_locks([]), []), self.using)

    def _run(self) -> None:
        own.pgmigrate_thread()  # its connection is in own_pids
        connection = type(connections[self.using])(self._settings_dict, self.using)
        connections[self.using] = connection
        try:
            self._safely(self._ensure_connected, "connecting")
            self._ready.set()
            while not self._stop.is_set():
                self._wake.wait()
                aside, self._aside = self._aside, None
                if aside is not None:
                    self._wait_aside(aside)
                statement = self._statement
                if statement is not None and not self._stop.is_set() and not self.disabled:
                    self._watch(statement)
                    if self.live_line is not None:
                        self.live_line.clear()
        except Exception as exc:  # never let the thread die silently
            self._report_error("the watcher stopped", exc)
        finally:
            self._ready.set()
            self.step_aside.waiter = None  # nobody to wait out of the queue any more
            if self._aside is not None:
                self._aside.done.set()
            if not self.direct and connection.connection is not None:
                # Through a pooler, its server connection serves other clients next: none of
                # the watcher's session state stays on it (plan_cache_mode, jit, its PREPAREs).
                with contextlib.suppress(Error), connection.cursor() as cursor:
                    cursor.execute("DISCARD ALL")
            with contextlib.suppress(Error):
                connection.close()
            del connections[self.using]

    def _watch(self, statement: _Statement) -> None:
        """Look at the backend while ``statement`` runs, acting whenever it waits on a lock."""
        due = statement.started + self.interval * config.FIRST_LOOK
        gap = self.interval
        first_look = True
        acted_on: frozenset[int] | None = None
        acted_at = 0.0
        distrusted = False
        suspicions = 0
        # Nothing more for statements shorter than this (``pgmigrate.live``).
        show_at = statement.started + live.PROGRESS_AFTER if self.live_line else math.inf
        while True:
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            if self._statement is not statement:
                return
            look = functools.partial(self._look, statement, with_graph=first_look)
            told = statement.look_done = Latch()
            newly_waiting = False
            try:
                looked = self._safely(look, "looking")
                looked_at = time.monotonic()
                waiting, pids, read = (
                    looked if looked is not None else (False, frozenset[int](), None)
                )
                late = 0.0
                with self._tally:
                    if waiting and pids is not None and statement.wait_began is None:
                        # Lock waits start with the statement, unless seen later on.
                        began = statement.started if first_look else looked_at
                        statement.wait_began = began
                        newly_waiting = True
                        if statement.ended is not None:  # it ended while the look ran:
                            late = statement.ended - began  # its end counted no wait
                if late > 0:
                    self._add_lock_wait(late, statement.migration)
            finally:
                told.set()  # a finishing migration may wait for it (``settle``)
            if pids is None and not self.direct:  # our statement runs, not the backend:
                suspicions += 1  # a proxy?
                if suspicions >= POOLING_EVIDENCE:
                    self._disable_for_pooling()
                    return
            else:
                suspicions = 0
            if waiting and pids is not None:
                if newly_waiting:
                    gap = self.interval
                    self._event(
                        "blocked",
                        f"pgmigrate: backend pid {self.backend_pid} waits on a lock",
                        migration=statement.migration,
                    )
                if pids != acted_on:  # new blockers (or none handled yet): act
                    ended = read is not None and read[0] is not None and read[0].ended
                    if time.monotonic() - looked_at > READ_ALONG_FRESH and not ended:
                        read = None  # stale: the ``blocked`` event took long (what the
                        # look ended is told from the graph it was ended on)
                    act = functools.partial(self._act, pids, statement, read=read)
                    done = self._safely(act, "running the action")
                    acted_on, acted_at, distrusted = (
                        (pids if done else None),
                        time.monotonic(),
                        False,
                    )
                    gap = self.interval  # the lock's queue moves on: look again soon
                elif not distrusted and time.monotonic() - acted_at >= ENDING_GRACE:
                    # Those the action ended still block (a Cancel of a session whose idle
                    # state is hidden, a backend slow to exit): no longer count on it.
                    distrusted = True
                    act = functools.partial(self._act, pids, statement, distrust=True)
                    self._safely(act, "running the action")
                gap_limit = self.interval * WAITING_GAP_INTERVALS
            else:
                acted_on = None
                with self._tally:
                    wait_began = statement.wait_began
                    if wait_began is not None and statement.ended is None:
                        statement.wait_began = None
                        statement.waited += time.monotonic() - wait_began
                gap_limit = self.interval * RUNNING_GAP_INTERVALS
            first_look = False
            now = time.monotonic()
            due = now + gap
            gap = min(gap * 2, gap_limit)
            if now >= show_at:
                show_at = self._show_progress(statement)

    def _show_progress(self, statement: _Statement) -> float:
        """Read and show what the long ``statement`` does (``pgmigrate.live``); returns
        when to do it again (``time.monotonic()``)."""
        if self._progress is None or self._progress[0] is not statement:
            assert self.live_line is not None
            self._progress = (statement, live.StatementProgress(self.live_line, statement.started))
        progress = self._progress[1]
        step = functools.partial(
            progress.step,
            self._read_progress,
            self._fate,
            functools.partial(self._event, migration=statement.migration),
            lambda: self._statement is statement,
        )
        self._safely(step, "reading the statement's progress")
        return progress.due

    def _read_progress(self) -> live.Snapshot:
        self._ensure_connected()
        with connections[self.using].cursor() as cursor:
            return live.read(cursor, self.backend_pid)

    def _fate(self, session: live.InTheWay) -> str:
        return live.fate(session, self.left_alone, self.action)

    def _disable_for_pooling(self) -> None:
        """Stop acting for the rest of the run: the pid is not the migration's backend."""
        self.action = None
        self._may_end_at_look = False
        self.disabled = True
        self.step_aside.waiter = None
        self.command.notice(
            f"pgmigrate: backend pid {self.backend_pid} is not running this migration's "
            "statements: the connection seems to go through a transaction-pooling proxy "
            "(e.g. PgBouncer in transaction mode), where a session's backend changes between "
            "transactions. pgmigrate stops acting on blocking sessions for this run. Run "
            "migrations over a direct or session-pooled connection.",
            warning=True,
        )

    def _later(self, graph: lockgraph.LockGraph) -> lockgraph.LockGraph | None:
        """The lock graph handed to the action, with which ``Terminate`` may end a session
        in a later transaction than the one judged, for a lock it holds across them
        (``actions.SESSION_LOCK``): only while that judgement holds in any transaction of
        the session, i.e. the protection rules and the action's filters read only what
        stays the same for the whole session (a rule on ``query`` protects one statement
        and not the next); None otherwise (such a session is judged again, in its current
        transaction, at the next look)."""
        filters = getattr(self.action, "filters", None)
        if filters or not protection.judged_per_session(self.protected):
            return None
        return graph

    def _migration(self) -> str | None:
        events = getattr(self.command, "events", None)
        return events.current if events is not None else None

    def _event(self, event: str, message: str, **fields: Any) -> None:
        events = getattr(self.command, "events", None)
        if events is not None:
            if self.live_line is not None:
                self.live_line.clear()  # a log handler may print on the same terminal
            self._safely(lambda: events.emit(event, message, **fields), f"sending {event}")

    def _add_lock_wait(self, seconds: float, migration: str | None) -> None:
        events = getattr(self.command, "events", None)
        if events is not None:
            events.add_lock_wait(seconds, migration)

    @property
    def _ends_at_first_look(self) -> bool:
        """Whether the first look at a statement ends the blockers itself (``FIRST_END``):
        see ``_may_end_at_look``, on a connection that talks to the migrating backend
        directly, while the process has no other session on the migration's database
        (``pgmigrate.own``: the statement would not know them)."""
        return (
            self._may_end_at_look and self.direct and not self.process_sessions.on(self._database)
        )

    def _look(
        self, statement: _Statement, *, with_graph: bool = False
    ) -> tuple[bool, frozenset[int] | None, _GraphRead | None]:
        """The light, frequent check: is the backend waiting on a lock, and on whom?

        Reads the backend's ``pg_stat_activity`` entry through ``pg_stat_get_activity(pid)``
        (the function behind the view, without building the view's other rows); only when
        it waits on a lock does the same statement ask ``pg_blocking_pids`` and, ``with_graph``,
        read the lock graph (``LOOK_AND_GRAPH``; returned third, else None). The pids are
        None when the backend is not running a statement at all (see
        ``_disable_for_pooling``).
        """
        self._ensure_connected()
        names: list[str] = []
        with connections[self.using].cursor() as cursor:
            _native_timestamps(cursor, graph=with_graph)
            prepared = self._first_look if with_graph else LOOK_P
            prepared.execute_bound(cursor, self._bound(cursor, prepared))
            rows = cursor.fetchall()
            if with_graph and rows and rows[0][0] == "Lock":
                # The graph's column names (only then: building the 60 columns' description
                # takes a tenth of a millisecond, at each look at a statement that waits
                # for nothing).
                names = [column.name for column in cursor.description]
        row = rows[0] if rows else None
        if row is None or row[1] not in RUNNING_STATES:
            return False, None, None
        if statement.query_start is None:
            statement.query_start = row[2]
        if row[0] != "Lock":
            return False, frozenset(), None
        pids = frozenset(row[3] or ()) - self.own_pids
        if not with_graph:
            return True, pids, None
        # The graph's rows (its ``mode`` column is never NULL); none if it found no lock.
        graph_rows = [r[LOOK_COLUMNS:] for r in rows if r[LOOK_COLUMNS + 1] is not None]
        graph, sessions = _graph_read(graph_rows, names[LOOK_COLUMNS:])
        if graph is not None and row[LOOK_COLUMNS - 1]:
            graph.ended = frozenset(row[LOOK_COLUMNS - 1])
        return True, pids, (graph, sessions)

    @property
    def _first_look(self) -> Prepared:
        """The statement of the first look at a statement (``FIRST_LOOKS``)."""
        return LOOK_AND_END_P if self._ends_at_first_look else LOOK_AND_GRAPH_P

    def _bound(self, cursor: Any, prepared: Prepared) -> str:
        """``prepared``'s ``EXECUTE`` for the backend watched, its parameters merged in once
        (``Prepared.bind``): the looks run it at every statement of the migration, and the
        Python of a look competes with the migrating thread's for the GIL."""
        key = (prepared.name, self.backend_pid)
        bound = self._bound_looks.get(key)
        if bound is None:
            params = _look_params(prepared, self.backend_pid)
            bound = self._bound_looks[key] = prepared.bind(cursor, params)
        return bound

    def blocked_locks(self, pids: Iterable[int]) -> Any:
        """django-pglock's view of the migrating backend's locks and the sessions ``pids``
        that block it (what blocking actions receive).

        The filter is built when the queryset is first read or refined, not here: building
        it takes about half a millisecond, and the built-in actions never need it (they
        signal the blockers the watcher already read). Django defers a filter so for its
        related managers (``QuerySet._defer_next_filter``, Django 3.2 and later; where a
        Django lacks it, the filter is simply built at once)."""
        locks = self._migration_locks()._chain()
        locks._defer_next_filter = True
        return locks.filter(blocking_activity_id__in=sorted(pids))

    def _migration_locks(self) -> Any:
        """The part of ``blocked_locks`` that is the same every time for the backend watched
        (made once per backend: building a queryset takes a fraction of a millisecond,
        while the app waits; made anew if the watcher is attached to another)."""
        from pglock.models import BlockedPGLock

        pid = self.backend_pid
        made = self._locks_made
        if made is None or made[0] != pid:
            locks = BlockedPGLock.objects.using(self.using).pid(pid).filter(activity_id=pid)
            made = self._locks_made = (pid, locks)
        return made[1]

    def _graph_and_sessions(self, pid: int | None = None) -> _GraphRead:
        """The lock graph of the migrating backend (or of session ``pid``), and the
        ``pg_stat_activity`` columns (with the judging ones of ``GRAPH_AND_SESSIONS``) of
        each session in it, by pid."""
        with connections[self.using].cursor() as cursor:
            _native_timestamps(cursor)
            GRAPH_AND_SESSIONS_P.execute(
                cursor, [self.backend_pid if pid is None else pid, lockgraph.STRONG_MODES]
            )
            names = [column.name for column in cursor.description]
            rows = cursor.fetchall()
        return _graph_read(rows, names)

    def _in_the_way(
        self,
        graph: lockgraph.LockGraph,
        sessions: dict[int, dict[str, Any]],
        pids: frozenset[int],
    ) -> _InTheWay:
        """Who is in the migration's way, from the lock graph and ``pids`` (its
        ``pg_blocking_pids``): holders and queued sessions by pid, with their virtual
        transactions. ``sessions`` gets the rows of the sessions found beyond the graph.

        - A parallel query's workers hold or await locks under their own pids (and virtual
          transactions), while ``pg_blocking_pids`` names their leader: the leader, whose
          query they run, is in the way (``LEADERS``; the workers' virtual transactions are
          kept for stepping aside, ``lock_vxids``).
        - A session that holds a row's tuple lock while it waits for the row's holders (an
          ``UPDATE`` of a row another transaction locked) is only queued for the row, ahead
          of the migration: the row's holders, which it waits for (its own lock graph, read
          only then), are in the way through it (``via``).
        """
        holders = {pid: vxid for pid, vxid in graph.holders.items() if pid in pids}
        waiters = {
            pid: vxid for pid, vxid in graph.waiters.items() if pid in pids and pid not in holders
        }
        found = _InTheWay(holders, waiters)
        workers = {
            pid: (leader, vxid, pid in graph.holders)
            for pid, vxid in (*graph.waiters.items(), *graph.holders.items())
            if pid not in pids
            and (leader := (sessions.get(pid) or {}).get("leader_pid")) in pids
            and leader != pid
        }
        # Parallel workers whose leader PostgreSQL hides (``leader_pid``, from a role without
        # pg_read_all_stats): their locks, and the blockers left unexplained by the graph.
        orphans = [
            vxid
            for pid, vxid in graph.holders.items()
            if pid not in pids
            and pid not in workers
            and pid not in self.own_pids
            and not (sessions.get(pid) or {}).get("visible", True)
        ]
        unplaced = (
            sorted(
                pid
                for pid in pids - {0} - self.own_pids
                if pid not in holders
                and pid not in waiters
                and pid not in graph.holders
                and pid not in graph.waiters
                and pid not in {leader for leader, _, _ in workers.values()}
            )
            if orphans
            else []
        )
        if workers or unplaced:
            leaders = self._leaders(
                sorted({leader for leader, _, _ in workers.values()} | set(unplaced))
            )
            for pid in unplaced:
                if pid in leaders:
                    row, vxid = leaders[pid]
                    sessions.setdefault(pid, row)
                    found.unplaced[pid] = vxid
                    found.lock_vxids.update(dict.fromkeys(orphans, pid))
            for leader, vxid, held in workers.values():
                if leader not in leaders:
                    continue  # gone meanwhile
                row, leader_vxid = leaders[leader]
                sessions.setdefault(leader, row)
                found.lock_vxids[vxid] = leader
                if held:
                    waiters.pop(leader, None)
                    holders.setdefault(leader, leader_vxid)
                elif leader not in holders:
                    waiters.setdefault(leader, leader_vxid)
        if graph.locktype == "tuple":
            for pid in [pid for pid in holders if pid not in self.own_pids]:
                row_graph, row_sessions = self._graph_and_sessions(pid)
                if row_graph is None or not (row_graph.holders or row_graph.prepared):
                    continue  # it waits for nothing: it holds the tuple lock
                waiters[pid] = holders.pop(pid)
                for holder, vxid in row_graph.holders.items():
                    if holder in self.own_pids or holder in holders or holder in waiters:
                        continue
                    if holder in row_sessions:
                        sessions.setdefault(holder, row_sessions[holder])
                    holders[holder] = vxid
                    found.via[holder] = pid
                    # Out of the lock queue, the migration waits for the tuple lock the
                    # queued session holds until the row's holder is gone.
                    found.lock_vxids.setdefault(waiters[pid], holder)
                graph.prepared.extend(
                    p for p in row_graph.prepared if p.gid not in {q.gid for q in graph.prepared}
                )
        return found

    def _leaders(self, pids: list[int]) -> dict[int, tuple[dict[str, Any], str]]:
        """The session rows of the parallel query leaders ``pids`` (``LEADERS``), each with
        its virtual transaction, by pid (those no longer in a transaction are left out)."""
        with connections[self.using].cursor() as cursor:
            _native_timestamps(cursor)
            LEADERS_P.execute(cursor, [pids])
            names = [column.name for column in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        leaders = {}
        for row in rows:
            vxid = row.pop("leader_vxid")
            if vxid is not None:
                leaders[row["pid"]] = (row, vxid)
        return leaders

    def _act(
        self,
        pids: frozenset[int],
        statement: _Statement,
        *,
        distrust: bool = False,
        read: _GraphRead | None = None,
    ) -> bool:
        """Sort out the blockers and run the action on those that may be ended and whose end
        can shorten the wait; say once why each of the others is left alone; step out of
        the lock queue for those that stay (``pgmigrate.aside``). With ``distrust`` (the
        action ran on them ``ENDING_GRACE`` ago), none is counted on to end and the action
        is not run again. ``read``: the lock graph and sessions, if the look that found
        ``pids`` read them along. True once done (errors raise)."""
        acting = self.action is not None
        if not pids or not (acting or self.step_aside.enabled):
            return True
        events = getattr(self.command, "events", None)
        about = events.about(statement.migration) if events is not None else None
        with about or contextlib.nullcontext():
            graph, sessions = read if read is not None else self._graph_and_sessions()
            if graph is None:
                return True  # the backend no longer waits
            # Whether the messages about blockers left alone can say it steps aside.
            self._stepping = self.step_aside.ready and graph.blocks_app
            found = self._in_the_way(graph, sessions, pids)
            holders, waiters = found.holders, found.waiters
            endable: list[Blocker] = []
            queued: list[Blocker] = []
            staying: list[str] = []  # what stays in the migration's way, for messages
            #: The sessions that stay, with why (``pgmigrate.aside``).
            left: dict[Blocker, str] = {}
            rows = [
                sessions[pid]
                for pid in sorted({*holders, *waiters, *found.unplaced})
                if pid in sessions
            ]
            for row in rows:
                pid = row["pid"]
                if pid in found.unplaced:
                    blocker = _blocker(row, virtualtransaction=found.unplaced[pid], queued=False)
                    staying.append(f"pid {pid} (parallel query, leader hidden)")
                    left[blocker] = UNPLACED
                    if acting:
                        self._leave(row, blocker, UNPLACED, self._unplaced_message)
                    continue
                blocker = _blocker(
                    row,
                    virtualtransaction=holders.get(pid) or waiters.get(pid),
                    queued=pid not in holders,
                    via=found.via.get(pid),
                )
                if self.process_sessions.holds(pid, row["backend_start"]):
                    staying.append(f"pid {pid} (this migrate process's own)")
                    mine = self.process_sessions.of_migrating_thread(pid, row["backend_start"])
                    left[blocker] = OWN_THREAD if mine else OWN
                    if acting:
                        self._leave(row, blocker, left[blocker], self._own_message)
                    continue
                kind, verdict = protection.standing(row, self.protected)
                if kind is Standing.AUTOVACUUM:
                    staying.append(f"pid {pid} (autovacuum)")
                    if acting:
                        self._leave(row, blocker, str(verdict.reason), self._autovacuum_message)
                elif kind is Standing.PROTECTED:
                    staying.append(f"pid {pid} (protected)")
                    left[blocker] = f"protected: {verdict.reason}"
                    if acting:
                        self._leave(row, blocker, str(verdict.reason), self._protected_message)
                elif kind is Standing.ELSEWHERE:
                    staying.append(f"pid {pid} (database {row['datname']!r})")
                    left[blocker] = f"database {row['datname']!r}"
                    if acting:
                        self._leave(row, blocker, "another database", self._elsewhere_message)
                elif kind is Standing.UNDECIDABLE:
                    staying.append(f"pid {pid} (protection undecidable)")
                    reason = "protection undecidable: hidden " + ", ".join(verdict.hidden)
                    left[blocker] = reason
                    if acting:
                        self._leave(row, blocker, reason, self._undecidable_message)
                elif blocker.queued:
                    queued.append(blocker)
                else:
                    endable.append(blocker)
            if acting:
                for prepared in graph.prepared:
                    staying.append(f"prepared transaction {printable(prepared.literal)}")
                    self._show_prepared(prepared, graph)
                if 0 in pids and not graph.prepared:
                    staying.append("a prepared transaction")
                    self._show_prepared(None, graph)
            if self.action is None:  # every blocker stays, the queued ones too
                left.update(dict.fromkeys([*endable, *queued], "no blocking action"))
                return self._step_aside(graph, left, statement, found.lock_vxids)
            # A queued session is ended only when nothing else is in the way: ended along
            # with holders, it would not make the wait shorter than they do (once they are
            # gone, it gets its lock ahead of the migration and is ended then if it keeps
            # it); behind a holder that stays, ending it would be in vain.
            targets = endable or ([] if staying else queued)
            for blocker in queued:
                if blocker not in targets:
                    self.left_alone[blocker.pid] = "queued ahead of the migration"
                    self._show_queued(blocker, staying)
            if type(self.action) is actions.Show and not self.action.filters:
                # Show reads nothing live, only the blockers read above: out of the queue
                # first, then tell (the app does not wait for the printing).
                for blocker in [*targets, *queued]:
                    left.setdefault(blocker, "left alone by Show")
                done = self._step_aside(graph, left, statement, found.lock_vxids)
                if targets and not distrust:
                    blocked_locks = self.blocked_locks(blocker.pid for blocker in targets)
                    self.action(
                        self.command,
                        with_blockers(blocked_locks, targets, self.backend_pid, graph),
                    )
                return done
            acted: list[int] = []
            crowd: Aside | None = None
            if targets and not distrust:  # while the backend waits: it may read pg_locks
                blocked_locks = self.blocked_locks(blocker.pid for blocker in targets)
                crowd = self._aside_while_ending(graph, targets, staying, statement, found)
                try:
                    acted = self.action(
                        self.command,
                        with_blockers(
                            blocked_locks,
                            targets,
                            self.backend_pid,
                            self._later(graph),
                            statement.query_start if crowd is not None else None,
                            signalled=graph.ended,
                        ),
                    )
                except Exception as exc:  # a custom action's bug: its targets stay
                    if isinstance(exc, Error) and sqlstate(exc) is None:
                        raise  # the watcher's connection broke: it reconnects, acts again
                    self._report_error("error while running the action", exc)
                    acted = []
                finally:
                    crowd = self._cancelled_first(crowd)
            # The others stay: those the action does not end (all, unless it ends the
            # sessions it returns), and the queued sessions it was not run on.
            ends = self.action.ends_blockers
            ended = set(acted) if ends and not distrust else set()
            why = (
                "not ended by the blocking action"
                if ends
                else f"left alone by {type(self.action).__name__}"
            )
            # Those the signal statement left out (gone, no longer the session or transaction
            # seen, or no longer blocking) are not waited for: the next look reads the graph
            # again and acts on what blocks then, even if the pids are the same.
            ran = bool(targets) and not distrust
            missed = set(getattr(self.action, "missed", ())) if ran else set()
            for blocker in [*targets, *([] if ends else queued)]:
                if blocker.pid not in ended and blocker.pid not in missed:
                    left.setdefault(blocker, why)
            if crowd is not None:  # out of the queue already, with those that stay too
                self.left_alone.update({blocker.pid: why for blocker, why in left.items()})
                crowd.reasons.update({blocker.pid: why for blocker, why in left.items()})
                self._say_aside(crowd, ending=len(ended))
                return not missed
            done = self._step_aside(graph, left, statement, found.lock_vxids)
            return done and not missed

    def _aside_while_ending(
        self,
        graph: lockgraph.LockGraph,
        targets: list[Blocker],
        staying: list[str],
        statement: _Statement,
        found: _InTheWay,
    ) -> Aside | None:
        """The step-aside asked for (``StepAside.request``) when ``Terminate`` (without
        filters) is to end a crowd of stale sessions (``CROWD``, ``CROWD_STALE_AFTER``) and
        nothing else stays in the way: the statement that ends them then cancels the
        migration's waiting statement first. Only if the retry unit may run again, went
        only through SQL and has little to redo (``CROWD_REDO_AT_MOST``), and only for the
        first crowd on this lock in this migration (the slot is taken even if the signal
        statement does not cancel after all); None otherwise."""
        once = (statement.migration, graph.target)
        wait_began = statement.wait_began or time.monotonic()
        if (
            type(self.action) is not actions.Terminate
            or self.action.filters
            or len(targets) < CROWD
            or staying
            or graph.prepared
            or not graph.blocks_app
            or statement.query_start is None
            or self._statement is not statement
            or once in self._crowds
            or not all(_stale(blocker) for blocker in targets)
            or not self.step_aside.sql_only
            or wait_began - self.step_aside.unit_began > CROWD_REDO_AT_MOST
        ):
            return None
        aside = self._new_aside(graph, dict.fromkeys(targets, ENDING), statement, found.lock_vxids)
        if not self.step_aside.request(aside):
            return None
        self._crowds.add(once)
        return aside

    def _cancelled_first(self, aside: Aside | None) -> Aside | None:
        """Settle the step-aside of ``_aside_while_ending`` once the action ran: ``aside``
        if the signal statement cancelled the waiting statement (or may have: it failed),
        None if it did not."""
        if aside is None:
            return None
        if getattr(self.action, "cancelled_first", None) is False:
            self.step_aside.withdraw(aside)
            return None
        self.step_aside.sent(aside)
        return aside

    # Stepping out of the lock queue ---------------------------------------------------

    def _step_aside(
        self,
        graph: lockgraph.LockGraph,
        left: dict[Blocker, str],
        statement: _Statement,
        lock_vxids: dict[str, int] | None = None,
    ) -> bool:
        """Step out of the lock queue for the sessions ``left`` (with why each stays) and the
        prepared transactions, unless none stays or the migration should keep its place a
        little longer (then False: act again at the next look). ``lock_vxids``: virtual
        transactions whose locks count as a session's (``_InTheWay``)."""
        self.left_alone.update({blocker.pid: why for blocker, why in left.items()})
        if not (left or graph.prepared):
            return True
        if self._keeps_its_place(left, statement):
            return False
        aside = self._leave_queue(graph, left, statement, lock_vxids or {})
        if aside is not None and not aside.deadlock:  # a deadlock stops the unit: said so
            self._say_aside(aside)
        return True

    def _keeps_its_place(self, left: dict[Blocker, str], statement: _Statement) -> bool:
        """Whether to stay in the queue a little longer: each session in the way is one the
        migration stepped aside for before, whose transaction then ended within
        ``BUSY_TRANSACTION`` seconds. A session running short transactions back to back
        would otherwise keep the migration out of the queue for good (each new transaction
        of it starts before the migration is back); in the queue, the migration gets its
        lock when the current one ends, and the session's next one queues behind it."""
        durations = [self._durations.get(_session_key(blocker)) for blocker in left]
        if not durations or None in durations:
            return False
        longest = max(d for d in durations if d is not None)
        if longest > BUSY_TRANSACTION:
            # In the queue the app would wait as long: out of it, the migration waits.
            self._say_busy(left, longest)
            return False
        waited = time.monotonic() - (statement.wait_began or time.monotonic())
        return waited < 2 * longest

    def _say_busy(self, left: dict[Blocker, str], longest: float) -> None:
        """Say once that sessions stepped aside for run long transactions back to back."""
        key = ("busy", frozenset(_session_key(blocker) for blocker in left))
        if key in self._shown:
            return
        self._shown.add(key)
        who = ", ".join(f"pid {blocker.pid}" for blocker in left)
        self.command.notice(
            f"pgmigrate: {printable(who)} began another transaction that blocks the "
            f"migration as soon as the last one ended (it lasted {longest:.1f} s). The "
            "migration keeps waiting out of the lock queue, so the app does not stall behind "
            "it, but it gets its lock only in a gap between those transactions: pause that "
            "work, or run migrate with --no-step-aside to queue behind one of them.",
            warning=True,
        )

    def _leave_queue(
        self,
        graph: lockgraph.LockGraph,
        left: dict[Blocker, str],
        statement: _Statement,
        lock_vxids: dict[str, int],
    ) -> Aside | None:
        """Cancel the migration's waiting statement so that it leaves the lock queue, when
        the sessions ``left`` (with why each is not ended) or prepared transactions block it
        and its wait holds the app's queries back; the retry unit waits for them and runs
        it again. The ``Aside`` handed to it, or None if it stays in the queue."""
        deadlock = OWN_THREAD in left.values()
        if not (left or graph.prepared) or not (graph.blocks_app or deadlock):
            return None
        if statement.query_start is None or self._statement is not statement:
            return None
        aside = self._new_aside(graph, left, statement, lock_vxids)
        aside.deadlock = deadlock
        if not self.step_aside.request(aside):
            return None  # not in a unit that can run again (or stepping aside is off)
        try:
            cancelled = self._cancel_own(statement)
        except BaseException:
            self.step_aside.sent(aside)  # it may have been: the unit runs again, safely
            raise
        if not cancelled:  # it got its lock meanwhile
            self.step_aside.withdraw(aside)
            return None
        self.step_aside.sent(aside)
        return aside

    @staticmethod
    def _new_aside(
        graph: lockgraph.LockGraph,
        left: dict[Blocker, str],
        statement: _Statement,
        lock_vxids: dict[str, int],
    ) -> Aside:
        """The ``Aside`` for the sessions ``left`` (with why each stays in the way) and the
        prepared transactions of ``graph``."""
        return Aside(
            locktag=graph.locktag,
            modes=sorted(lockgraph.CONFLICTS.get(graph.mode, frozenset(lockgraph.CONFLICTS))),
            target=graph.target,
            pids=[blocker.pid for blocker in left],
            prepared=list(graph.prepared),
            waiting_since=statement.wait_began or time.monotonic(),
            statement_started=statement.started,
            statement_timeout=statement.statement_timeout,
            sessions=list(left),
            reasons={blocker.pid: reason for blocker, reason in left.items()},
            lock_vxids={
                vxid: pid
                for vxid, pid in lock_vxids.items()
                if pid in {blocker.pid for blocker in left}
            },
        )

    def _say_aside(self, aside: Aside, *, ending: int = 0) -> None:
        """Say whom the migration stepped out of the lock queue for (once per set of
        blockers; the event every time); ``ending``: how many of them the action is ending
        (``_aside_while_ending``), which are not named again."""
        aside.xact_starts = {
            blocker.pid: blocker.xact_start
            for blocker in aside.sessions
            if blocker.told_by_xact_start
        }
        staying = dataclasses.replace(
            aside, sessions=[b for b in aside.sessions if aside.reasons.get(b.pid) != ENDING]
        )
        text = f"pgmigrate: stepped out of the lock queue for {printable(aside.target)}"
        if ending:
            text += f" while the {ending} session{'s' if ending > 1 else ''} ended exit"
        if staying.sessions or staying.prepared:
            text += f": {staying.describe()} will not be ended"
        text = (
            text + ". The app's queries no longer queue behind the migration, which runs the "
            "statement again once they are gone"
            + (
                f" (or gives up at the lock timeout, {self.lock_timeout:g} s)."
                if self.lock_timeout is not None
                else "."
            )
        )
        said = frozenset(blocker.key for blocker in aside.sessions) | frozenset(
            prepared.key for prepared in aside.prepared
        )
        if said != self._aside_said:
            self._aside_said = said
            self.command.notice(text, warning=bool(staying.sessions or staying.prepared))
        self._event("stepped_aside", text, **_aside_fields(aside))

    def _cancel_own(self, statement: _Statement) -> bool:
        """Cancel the migrating backend's ``statement`` if it still waits on a lock; True if
        the cancel was sent."""
        with connections[self.using].cursor() as cursor:
            CANCEL_OWN_P.execute(cursor, [self.backend_pid, statement.query_start])
            return cursor.fetchone() is not None

    def wait_aside(self, aside: Aside) -> None:
        """Called by the migrating thread after it stepped aside: the watcher thread looks
        at the blockers until they are gone (``aside.done``)."""
        if not self._thread.is_alive():
            aside.done.set()
            return
        self._aside = aside
        self._wake.set()

    def _wait_aside(self, aside: Aside) -> None:
        """Look at the blockers of ``aside`` until none holds or awaits a conflicting lock
        on the object, saying at growing gaps whom the migration waits for."""
        gap = self.interval
        remind_gap = REMINDER_FIRST
        remind_at = aside.stepped + remind_gap
        still: set[Any] | None = None
        full_at = time.monotonic() + FULL_LOOK_EVERY
        try:
            while not self._stop.is_set() and not aside.abandoned:
                if time.monotonic() >= full_at:  # a savepoint's rollback frees its locks too
                    still, full_at = None, time.monotonic() + FULL_LOOK_EVERY
                look = functools.partial(self._still_blocking, aside, still)
                still = self._safely(look, "looking")
                if still is not None:
                    aside.still = still
                if not still:  # gone (or the look failed: running again finds out)
                    aside.gone = True
                    self._note_durations(aside)
                    return
                now = time.monotonic()
                if now >= remind_at:
                    self._remind(aside, now)
                    remind_gap = min(remind_gap * 2, REMINDER_MAX)
                    remind_at = now + remind_gap
                self._stop.wait(max(0.0, min(gap, remind_at - now)))
                longest = (
                    ASIDE_GAP_MAX if now - aside.stepped < ASIDE_SLOW_AFTER else ASIDE_GAP_SLOW
                )
                gap = min(gap * 2, longest)
        finally:
            aside.done.set()

    def _note_durations(self, aside: Aside) -> None:
        """How long the transactions stepped aside for lasted, at least (``_keeps_its_place``)."""
        out_of_queue = time.monotonic() - aside.stepped
        for blocker in aside.sessions:
            age = blocker.transaction_age.total_seconds() if blocker.transaction_age else 0.0
            self._durations[_session_key(blocker)] = age + out_of_queue

    def _still_blocking(self, aside: Aside, previous: set[Any] | None) -> set[Any]:
        """Which of the blockers of ``aside`` still hold or await a conflicting lock on the
        awaited object (pids; virtual transactions for prepared transactions).

        ``previous`` is the last answer: while each of those sessions is still in the same
        transaction (``xact_start``, when visible), it stands, without reading ``pg_locks``
        (which takes every lock-manager partition lock).
        """
        self._ensure_connected()
        with connections[self.using].cursor() as cursor:
            if previous is not None and self._same_transactions(cursor, aside, previous):
                return previous
            STILL_BLOCKING_P.execute(cursor, [list(aside.locktag), aside.modes, aside.vxids])
            return {vxid for (vxid,) in cursor.fetchall()}

    @staticmethod
    def _same_transactions(cursor: Any, aside: Aside, previous: set[Any]) -> bool:
        """Whether every blocker in ``previous`` (virtual transactions) is a session still in
        the transaction seen (never for prepared transactions or hidden ``xact_start``)."""
        pids = {b.virtualtransaction: b.pid for b in aside.sessions}
        # (a parallel worker's vxid maps to no pid here: its leader's transaction may go on
        # after the worker let go of its locks, so pg_locks is read)
        seen = [pids.get(vxid) for vxid in previous]
        starts = [aside.xact_starts.get(pid) for pid in seen if pid is not None]
        if not starts or len(starts) < len(seen) or None in starts:
            return False
        SAME_TRANSACTIONS_P.execute(cursor, [seen, starts])
        return cursor.fetchone()[0] == len(seen)

    def _remind(self, aside: Aside, now: float) -> None:
        """Say again whom the migration waits for, out of the lock queue."""
        waited = now - aside.stepped
        current = aside.left_over(waited)  # those still there, as they are now
        text = (
            f"pgmigrate: still out of the lock queue after {waited:.1f} s "
            f"({printable(aside.target)}), waiting for {current.describe()}"
        )
        self.command.notice(text, warning=True)
        self._event("waiting_aside", text, waited=round(waited, 3), **_aside_fields(current))

    def _outcome(self) -> str:
        if self._stepping:
            limit = f" (or the lock timeout, {self.lock_timeout:g} s)" if self.lock_timeout else ""
            return (
                "the migration steps out of the lock queue (the app does not queue behind it) "
                f"and waits for it to end{limit}"
            )
        if self.lock_timeout is None:
            return "migrate waits until it ends (set PGMIGRATE_LOCK_TIMEOUT to give up instead)"
        return f"the lock timeout ({self.lock_timeout:g} s) decides"

    def _leave(
        self,
        row: dict[str, Any],
        blocker: Blocker,
        reason: str,
        message: Callable[[dict[str, Any], Blocker, str], str],
    ) -> None:
        """Say once that ``blocker`` is left alone, and why."""
        if blocker.key in self._shown:
            return
        self._shown.add(blocker.key)
        self._say_shown(blocker, message(row, blocker, reason), reason)

    def _say_shown(self, blocker: Blocker, text: str, reason: str) -> None:
        """Print ``text`` about a blocker left alone, and emit ``blocker_shown``."""
        self.command.notice(text, warning=True)
        self._event(
            "blocker_shown",
            text,
            blocker_pid=blocker.pid,
            usename=blocker.usename,
            application_name=blocker.application_name,
            reason=reason,
        )

    def _who(self, blocker: Blocker) -> str:
        return (
            f"session pid {blocker.pid} (user {blocker.usename!r}, application "
            f"{blocker.application_name!r})"
        )

    def _protected_message(self, row: dict[str, Any], blocker: Blocker, reason: str) -> str:
        return (
            f"pgmigrate: {self._who(blocker)} blocks the migration but is protected "
            f"({reason}); it is left alone and {self._outcome()}.\n"
            f"    to end it yourself: SELECT pg_terminate_backend({blocker.pid});"
        )

    def _own_message(self, row: dict[str, Any], blocker: Blocker, reason: str) -> str:
        if reason == OWN_THREAD:
            # Stopped where the statement may be cancelled (``Aside.deadlock``); elsewhere
            # (stepping aside off, a statement no unit runs again) it stays in the queue.
            then = "it stops the migration" if self.step_aside.ready else self._outcome()
            return (
                f"pgmigrate: {self._who(blocker)} blocks the migration but is a connection "
                "that the migration's own code opened (another alias of the same database): "
                "its transaction cannot end before the migration's statement returns, a "
                f"deadlock. pgmigrate never ends its own sessions: {then}."
            )
        return (
            f"pgmigrate: {self._who(blocker)} blocks the migration but is a connection of "
            "this migrate process (a thread of the migration's code, say): pgmigrate never "
            f"ends its own sessions, so it is left alone and {self._outcome()}.\n"
            f"    to end it yourself: SELECT pg_terminate_backend({blocker.pid});"
        )

    def _autovacuum_message(self, row: dict[str, Any], blocker: Blocker, reason: str) -> str:
        return (
            f"pgmigrate: {self._who(blocker)} blocks the migration but is protected ({reason}); "
            "it is left alone, and the migration keeps its place in the lock queue: PostgreSQL "
            "cancels an autovacuum worker that keeps a lock request waiting for "
            "deadlock_timeout (unless it prevents transaction ID wraparound).\n"
            f"    to end it sooner: SELECT pg_cancel_backend({blocker.pid}); (as a superuser)"
        )

    def _undecidable_message(self, row: dict[str, Any], blocker: Blocker, reason: str) -> str:
        hidden = ", ".join(protection.hidden_columns(self.protected))
        role = _quoted(row["migrating_role"])
        return (
            f"pgmigrate: {self._who(blocker)} blocks the migration, but pgmigrate cannot tell "
            f"whether it is protected: PGMIGRATE_PROTECTED names {hidden}, which PostgreSQL "
            f"hides from the migrating role {role} for the sessions of other roles (it is "
            "neither a superuser nor a member of pg_read_all_stats). It is left alone and "
            f"{self._outcome()}.\n"
            f"    to let pgmigrate see them: GRANT pg_read_all_stats TO {role}; (as a superuser)\n"
            f"    to end it yourself: SELECT pg_terminate_backend({blocker.pid});"
        )

    def _unplaced_message(self, row: dict[str, Any], blocker: Blocker, reason: str) -> str:
        role = _quoted(row["migrating_role"])
        return (
            f"pgmigrate: {self._who(blocker)} blocks the migration through the workers of a "
            "parallel query, but PostgreSQL hides which session leads them (leader_pid) from "
            f"the migrating role {role}: it is left alone and {self._outcome()}.\n"
            f"    to let pgmigrate see them: GRANT pg_read_all_stats TO {role}; (as a superuser)\n"
            f"    to end it yourself: SELECT pg_terminate_backend({blocker.pid});"
        )

    def _elsewhere_message(self, row: dict[str, Any], blocker: Blocker, reason: str) -> str:
        return (
            f"pgmigrate: {self._who(blocker)} of database {row['datname']!r} blocks the "
            "migration; pgmigrate only ends sessions of the migration's database, so it is "
            f"left alone and {self._outcome()}.\n"
            f"    to end it yourself: SELECT pg_terminate_backend({blocker.pid});"
        )

    def _show_queued(self, blocker: Blocker, staying: list[str]) -> None:
        """Say once that a queued session is left alone, and why."""
        if blocker.key in self._shown:
            return
        self._shown.add(blocker.key)
        if staying:
            why = (
                f"{', '.join(staying)} stay(s) in the migration's way, so ending it would not "
                "shorten the wait"
            )
        else:
            why = (
                "once the sessions holding the lock are gone it gets its lock before the "
                "migration, and is ended only if it then keeps the migration waiting"
            )
        text = (
            f"pgmigrate: {self._who(blocker)} waits in the lock queue ahead of the migration "
            f"but holds no lock it needs; it is left alone: {why}."
        )
        self._say_shown(blocker, text, "queued")

    def _show_prepared(
        self, prepared: lockgraph.PreparedTransaction | None, graph: lockgraph.LockGraph
    ) -> None:
        """Say once that a prepared transaction blocks, and how to end it."""
        key = ("prepared", prepared.key if prepared is not None else None)
        if key in self._shown:
            return
        self._shown.add(key)
        if prepared is None:  # it ended between two looks at pg_locks
            what = "a prepared transaction (pid 0 in pg_blocking_pids)"
            how = "see pg_prepared_xacts: ROLLBACK PREPARED '<gid>'; in its database"
            fields: dict[str, Any] = {}
        else:
            age = actions.elapsed(prepared.age) if prepared.age is not None else "?"
            gid = printable(prepared.literal)
            what = (
                f"prepared transaction {gid} (owner {prepared.owner!r}, database "
                f"{prepared.database!r}, prepared {age} ago)"
            )
            how = (
                f"ROLLBACK PREPARED {gid}; (or COMMIT PREPARED {gid}; to keep its changes), "
                f"in database {prepared.database!r} as {prepared.owner!r} or a superuser"
            )
            fields = {
                "gid": prepared.gid,
                "owner": prepared.owner,
                "prepared_database": prepared.database,
                "prepared_at": prepared.prepared.isoformat() if prepared.prepared else None,
            }
        text = (
            f"pgmigrate: {what} blocks the migration: it holds a lock the migration needs "
            f"({printable(graph.target)}). No session runs it, so it cannot be terminated or "
            "cancelled: it keeps its locks until it is committed or rolled back. It is left "
            f"alone and {self._outcome()}.\n"
            f"    to end it: {how}"
        )
        self.command.notice(text, warning=True)
        self._event("blocker_shown", text, blocker_pid=0, reason="prepared transaction", **fields)

    def _safely(self, func: Callable[[], T], doing: str) -> T | None:
        """Run ``func``; report an error once and go on, reconnecting if the link broke."""
        try:
            return func()
        except Exception as exc:
            self._report_error(f"error while {doing}", exc)
            if isinstance(exc, Error):
                with contextlib.suppress(Error):
                    connections[self.using].close()
            return None

    def _report_error(self, what: str, exc: BaseException) -> None:
        message = f"pgmigrate: {what}: {type(exc).__name__}: {printable(str(exc).strip())}"
        if message in self._reported_errors:
            return
        self._reported_errors.add(message)
        self.command.notice(message, warning=True)
