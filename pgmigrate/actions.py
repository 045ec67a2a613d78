"""Blocking actions: what pgmigrate does with the sessions that block a migration."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import FieldError, ImproperlyConfigured, ValidationError
from django.db import DatabaseError, connections
from django.utils.module_loading import import_string

from pgmigrate.db import atomic
from pgmigrate.errors import sqlstate
from pgmigrate.prepared import Prepared, prepare_all
from pgmigrate.text import printable

if TYPE_CHECKING:
    from pglock.models import BlockedPGLockQuerySet

    from pgmigrate.command import MigrateCommand
    from pgmigrate.lockgraph import LockGraph

#: How much of a blocker's query is printed.
QUERY_PREVIEW_CHARS = 120


@dataclass(frozen=True)
class Blocker:
    """A session that blocks the migrating backend, as seen in ``pg_stat_activity``."""

    pid: int
    backend_start: dt.datetime | None
    application_name: str | None
    state: str | None
    query: str | None
    usename: str | None = None
    transaction_age: dt.timedelta | None = None
    #: The session's virtual transaction (``3/1234``) when the watcher saw it block: it is
    #: ended only while that transaction runs (so neither a later transaction of the
    #: session nor another session that got its pid is hit).
    virtualtransaction: str | None = None
    #: True for a session that holds no lock the migration needs but waits for one, ahead
    #: of the migration in the lock's queue.
    queued: bool = False
    #: True when PostgreSQL hides the session's state, query and times from the migrating
    #: role (neither a superuser nor a member of ``pg_read_all_stats`` or of its role).
    hidden: bool = False
    #: When its transaction began (``pg_stat_activity.xact_start``; None: hidden or unknown).
    #: Where it tells the transaction the watcher saw (``told_by_xact_start``), the signal
    #: statement checks it instead of reading ``pg_locks``.
    xact_start: dt.datetime | None = None
    #: When its current (or, idle, last) query string began (``query_start``).
    query_start: dt.datetime | None = None
    #: For a session that blocks the migration through another one, that session's pid:
    #: the migration waits for a row's lock (its tuple lock) held by a session queued for
    #: the row, which waits for this one, the row's holder. None: it blocks the migration
    #: itself (``pg_blocking_pids``).
    via: int | None = None

    @property
    def told_by_xact_start(self) -> bool:
        """Whether ``xact_start`` tells the transaction seen from any later one of the
        session. A transaction begins at the statement timestamp of the protocol message
        that starts it, and the statements of one query string (``BEGIN; ...; COMMIT;
        BEGIN; ...``: psql, scripts, psycopg 2) share one: a later transaction of the same
        string has the same ``xact_start``. So only a transaction begun before the query
        string the session was seen running, or one seen idle (the string that began it
        done), is told by it."""
        if self.xact_start is None:
            return False
        if self.state in ("idle in transaction", "idle in transaction (aborted)"):
            return True
        return (
            self.state == "active"
            and self.query_start is not None
            and self.xact_start < self.query_start
        )

    @property
    def key(self) -> tuple[int, dt.datetime | str | None]:
        """Identifies the session even if its pid is later reused by another one (by its
        transaction when its ``backend_start`` is hidden)."""
        return (self.pid, self.backend_start or self.virtualtransaction)

    @property
    def readable_state(self) -> str:
        return (self.state or "unknown").lower().replace("_", " ")

    @property
    def query_preview(self) -> str:
        text = printable(" ".join((self.query or "").split()))
        if len(text) > QUERY_PREVIEW_CHARS:
            return text[: QUERY_PREVIEW_CHARS - 3] + "..."
        return text

    def describe(self) -> str:
        queued = ", queued ahead of the migration" if self.queued else ""
        if self.via is not None:
            queued += f", holding the row pid {self.via} waits for"
        return (
            f"pid {self.pid} (application {self.application_name!r}, "
            f"{self.readable_state}{queued})"
        )


#: Attribute of a ``blocked_locks`` queryset holding the blockers the watcher already read.
PREFETCHED = "_pgmigrate_blockers"
#: Attribute of that queryset and of the querysets made from it (filtered, excluded): the
#: same blockers by pid, to complete what django-pglock reads.
KNOWN = "_pgmigrate_known_blockers"
#: Attribute of those querysets too: the pid of the migrating backend they block.
BLOCKED_PID = "_pgmigrate_blocked_pid"
#: And the lock it waits for, as the watcher saw it (``lockgraph.LockGraph``; None: unknown).
AWAITED = "_pgmigrate_awaited"
#: Attribute of the queryset the watcher hands over only (not of those made from it): the
#: ``query_start`` of the migrating backend's waiting statement, which ``Terminate`` cancels
#: in the statement that ends the blockers, before it signals them (``CANCEL_FIRST``); None:
#: it does not.
CANCEL_FIRST = "_pgmigrate_cancel_first"
#: Attribute of that queryset too: the pids of the blockers already signalled with the
#: action's signal (``Terminate``'s, by the watcher's first look: ``watcher.FIRST_END``).
SIGNALLED = "_pgmigrate_signalled"


@functools.cache
def _carrying(base: type[Any]) -> type[Any]:
    """A subclass of the queryset class ``base`` whose clones keep ``KNOWN``."""

    class Carrying(base):  # type: ignore[misc,valid-type]
        def _clone(self) -> Any:
            clone = super()._clone()
            setattr(clone, KNOWN, getattr(self, KNOWN, None))
            setattr(clone, BLOCKED_PID, getattr(self, BLOCKED_PID, None))
            setattr(clone, AWAITED, getattr(self, AWAITED, None))
            return clone

    Carrying.__name__ = Carrying.__qualname__ = base.__name__
    return Carrying


def with_blockers(
    blocked_locks: Any,
    found: list[Blocker],
    blocked_pid: int | None = None,
    awaited: LockGraph | None = None,
    cancel_first: Any = None,
    *,
    signalled: frozenset[int] = frozenset(),
) -> Any:
    """Attach the blockers the watcher read to ``blocked_locks`` (see ``blockers``), the
    pid of the migrating backend they block, the lock graph of its wait (``awaited``), the
    ``query_start`` of its statement to cancel first (``CANCEL_FIRST``) and the blockers
    already signalled (``SIGNALLED``)."""
    blocked_locks.__class__ = _carrying(type(blocked_locks))
    setattr(blocked_locks, PREFETCHED, list(found))
    setattr(blocked_locks, KNOWN, {blocker.pid: blocker for blocker in found})
    setattr(blocked_locks, BLOCKED_PID, blocked_pid)
    setattr(blocked_locks, AWAITED, awaited)
    setattr(blocked_locks, CANCEL_FIRST, cancel_first)
    setattr(blocked_locks, SIGNALLED, signalled)
    return blocked_locks


def blockers(blocked_locks: BlockedPGLockQuerySet) -> list[Blocker]:
    """The distinct sessions behind ``blocked_locks``, ordered by pid.

    The watcher hands actions a queryset whose blockers it has already read (one cheap
    query); a filtered queryset (a clone) is read through django-pglock, and its sessions
    completed with what the watcher read. Traversing ``blocking_activity`` joins
    pgactivity's view of ``pg_stat_activity``, which only holds sessions of the migration's
    database: a session of another database is never returned.
    """
    prefetched = getattr(blocked_locks, PREFETCHED, None)
    if prefetched is not None:
        return list(prefetched)
    known: dict[int, Blocker] | None = getattr(blocked_locks, KNOWN, None)
    rows = (
        blocked_locks.order_by("blocking_activity_id")
        .values_list(
            "blocking_activity_id",
            "blocking_activity__backend_start",
            "blocking_activity__application_name",
            "blocking_activity__state",
            "blocking_activity__query",
        )
        .distinct()
    )
    if known is not None:
        pids = dict.fromkeys(row[0] for row in rows)
        return [known[pid] for pid in pids if pid in known]
    return [Blocker(*row) for row in rows]


class BlockingAction:
    """Base class of the actions run on the sessions that block a migration.

    Subclasses implement ``worker(cmd, blocked_locks)``. Keyword arguments given to the
    constructor are Django filters applied to ``blocked_locks`` (a django-pglock
    ``BlockedPGLock`` queryset) before the worker sees it, e.g.
    ``Terminate(blocking_activity__duration__gte=timedelta(seconds=5))``.

    pgmigrate copies the configured action at the start of each run, so attributes set on
    ``self`` during a run (what was already reported, say) do not leak into the next one.
    """

    #: Whether the sessions ``worker`` returns are being ended (their locks freed). For the
    #: others, pgmigrate steps out of the lock queue right after the action (see
    #: ``pgmigrate.aside``): so for an action that only reports (the default), the app does
    #: not queue behind the migration meanwhile.
    ends_blockers: bool = False

    def __init__(self, **filters: Any) -> None:
        self.filters = filters

    def __call__(self, cmd: MigrateCommand, blocked_locks: BlockedPGLockQuerySet) -> list[int]:
        if self.filters:
            blocked_locks = blocked_locks.filter(**self.filters)
        return list(self.worker(cmd, blocked_locks) or [])

    def worker(self, cmd: MigrateCommand, blocked_locks: BlockedPGLockQuerySet) -> list[int]:
        """Act on the blocked locks of the migrating backend; return the pids acted on."""
        raise NotImplementedError(f"{type(self).__name__} must implement worker()")

    def warm_up(self, blocked_locks: BlockedPGLockQuerySet, using: str) -> None:
        """Called once the watcher has connected, with an empty ``blocked_locks``: prepare
        what acting needs (run its queries once on nothing), so that the first action is as
        quick as the next ones. The default does nothing."""

    def validate(self) -> None:
        """Raise ``ImproperlyConfigured`` if the action has no ``worker`` of its own (the
        base class, or a subclass that forgot it), its filters do not fit
        ``BlockedPGLock`` (as far as Django can tell: ``filters_error`` asks PostgreSQL), or
        it cannot be copied as pgmigrate copies it at the start of each run."""
        from pglock.models import BlockedPGLock

        if type(self).worker is BlockingAction.worker:
            raise ImproperlyConfigured(
                f"{type(self).__name__} does not implement worker(): use one of pgmigrate's "
                "actions (Terminate, Cancel, Show) or a subclass that implements it."
            )
        try:
            BlockedPGLock.objects.filter(**self.filters)
        except (FieldError, ValidationError, TypeError, ValueError) as exc:
            raise ImproperlyConfigured(
                f"{self!r} has an invalid filter: {_error_text(exc)}"
            ) from exc
        try:
            copy.deepcopy(self)  # as the watcher does at the start of each run
        except Exception as exc:
            raise ImproperlyConfigured(
                f"{self!r} cannot be copied ({_error_text(exc)}), and pgmigrate copies the "
                "action at the start of each run: create what cannot be copied (a lock, a "
                "connection, a client) when the action first runs, in warm_up() or worker(), "
                "or give the class a __deepcopy__()."
            ) from exc

    def __repr__(self) -> str:
        filters = ", ".join(f"{key}={value!r}" for key, value in self.filters.items())
        return f"{type(self).__name__}({filters})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.filters == other.filters  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(self.filters))))


def _error_text(exc: BaseException) -> str:
    """An exception's message for an error line (a ``ValidationError``'s messages without
    the brackets of its ``str``)."""
    if isinstance(exc, ValidationError):
        return printable(" ".join(str(message) for message in exc.messages))
    return printable(str(exc).strip() or type(exc).__name__)


def filters_error(action: BlockingAction, using: str) -> str | None:
    """What goes wrong when ``action``'s filters run on database ``using``, or None.

    The filtered queryset is read once as the watcher hands it to actions (django-pglock's
    ``BlockedPGLock`` of the migrating backend, for the blockers it saw) and as the built-in
    actions read it (``blockers``), for backend pid 0, which does not exist: the query reads
    no session, but PostgreSQL parses and plans it, which is where a value that does not fit
    its field (``interval >= integer``, ``'abc'`` for an interval) or an invalid regular
    expression fails. Otherwise that error would come only once a session blocks the
    migration, and the blocker would be left alone. Runs in a savepoint when the connection
    is in a transaction. None also when the action has no filters, or the database cannot
    be asked (a connection that fails has nothing to say here)."""
    from pglock.models import BlockedPGLock

    filters = getattr(action, "filters", None)
    if not filters:
        return None
    locks = BlockedPGLock.objects.using(using).pid(0).filter(activity_id=0)
    locks = locks.filter(blocking_activity_id__in=[0]).filter(**filters)
    try:
        with atomic(using):
            blockers(locks)
    except DatabaseError as exc:
        if sqlstate(exc) is None:
            return None  # not PostgreSQL's verdict on the query: the connection failed
        lines = str(exc).strip().splitlines()  # its first line: the others quote the SQL
        return printable(lines[0] if lines else type(exc).__name__)
    except (FieldError, ValidationError, TypeError, ValueError) as exc:
        return _error_text(exc)
    return None


def signal_failure_hint(exc: BaseException, using: str) -> str:
    """How to fix a failed ``pg_terminate_backend``/``pg_cancel_backend``."""
    text = str(exc).lower()
    if "superuser" in text:
        return (
            "only a superuser can end a superuser's session: end it as one, or set "
            "PGMIGRATE_LOCK_TIMEOUT so that migrate gives up instead of waiting for it"
        )
    if sqlstate(exc) == "42501" or "permission denied" in text or "must be a member" in text:
        return f"GRANT pg_signal_backend TO {current_role(using)}; (run as a superuser)"
    return "see the PostgreSQL server log"


def current_role(using: str) -> str:
    """The migrating role, quoted as an SQL identifier (``"migrator"``), to be printed."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT quote_ident(current_user)")
        role: str = cursor.fetchone()[0]
    return printable(role if role.startswith('"') else f'"{role}"')


#: Signals the sessions that are still those the watcher saw: the same ``backend_start``
#: (when known) and the same transaction, checked in the statement that signals them. The
#: transaction is told by its ``xact_start`` where the migrating role may see it and it
#: tells the transaction apart (``Blocker.told_by_xact_start``), otherwise by its virtual
#: transaction in ``pg_locks`` (visible to every role; read only then: it copies the whole
#: lock table while the app waits). Where the migrating backend's pid is given, only those
#: that still block it (``pg_blocking_pids``, read once before any signal); a session that
#: blocks it through another one (``Blocker.via``: the holder of a row that a session
#: queued for it waits for), only while that one still blocks the backend and waits for it.
#: ``{function}`` is ``pg_terminate_backend`` or ``pg_cancel_backend``; a session is
#: signalled only where ``{allowed}`` holds (NULL for the others).
_SIGNAL_CTES = """
WITH transactions AS MATERIALIZED (
    SELECT pid, virtualxid FROM pg_locks WHERE locktype = 'virtualxid' AND granted
), blocking AS MATERIALIZED (
    SELECT pg_blocking_pids(%s::int) AS pids
)"""
#: ``{gate}``: a condition put first (empty in ``SIGNAL``).
_SIGNALLED = """
SELECT seen.pid, CASE WHEN {allowed} THEN {function}(seen.pid) END
FROM unnest(%s::int[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::int[])
    AS seen(pid, vxid, backend_start, xact_start, via)
CROSS JOIN LATERAL pg_stat_get_activity(seen.pid) AS a
LEFT JOIN pg_roles AS r ON r.oid = a.usesysid
WHERE {gate}CASE
      WHEN seen.xact_start IS NOT NULL THEN a.xact_start IS NOT DISTINCT FROM seen.xact_start
      ELSE seen.vxid IS NULL
           OR EXISTS (SELECT FROM transactions AS t
                      WHERE t.pid = seen.pid AND t.virtualxid = seen.vxid)
           -- a session-level lock of a session outside a transaction (vxid n/0): the
           -- session still holds a lock under that vxid
           OR (seen.vxid LIKE '%%/0'
               AND EXISTS (SELECT FROM pg_locks AS l WHERE l.pid = seen.pid AND l.granted
                           AND l.virtualtransaction = seen.vxid))
      END
  AND (seen.backend_start IS NULL OR a.backend_start = seen.backend_start)
  -- and it still blocks the migrating backend (given: pg_blocking_pids is strict, NULL
  -- otherwise), which it may no longer do though in the same transaction (a savepoint's
  -- rollback let go of the lock)
  AND (SELECT CASE WHEN seen.via IS NULL THEN b.pids IS NULL OR seen.pid = ANY(b.pids)
                   ELSE b.pids IS NULL OR (seen.via = ANY(b.pids)
                                           AND seen.pid = ANY(pg_blocking_pids(seen.via)))
              END
       FROM blocking AS b)
"""
SIGNAL = _SIGNAL_CTES + _SIGNALLED.replace("{gate}", "")
#: ``SIGNAL`` that first cancels the migrating backend's statement, while it still waits on
#: a lock in the statement seen (its ``query_start``), one of the sessions seen (or one it
#: blocks the backend through) still blocks it and PostgreSQL lets the migrating role
#: signal each of them (``{allowed}``; else the blockers that stay are stepped aside for as
#: usual, after the action, and named): the statement leaves the lock queue, so
#: the app's queries stop waiting behind it while the blockers exit, and its retry unit
#: waits for them to be gone out of the queue and runs it again (``pgmigrate.aside``).
#: ``own`` reads ``blocking`` and is read before any signal (they are lateral to it). One
#: row for the cancel (``sent``: NULL when not sent) joined to each session signalled (a
#: NULL pid: none). Parameters: the backend's pid; again, with that ``query_start``, the
#: arrays of pids and of ``via`` and the pids again; then ``SIGNAL``'s arrays.
SIGNAL_CANCELLING_FIRST = (
    _SIGNAL_CTES
    + """, own AS MATERIALIZED (
    SELECT bool_or(pg_cancel_backend(m.pid)) AS sent
    FROM blocking AS b
    -- (of NULL, every backend; of 0, none)
    CROSS JOIN pg_stat_get_activity(COALESCE(%s::int, 0)) AS m
    WHERE m.wait_event_type = 'Lock' AND m.state = 'active' AND m.query_start = %s
      AND b.pids && (%s::int[] || %s::int[])
      AND NOT EXISTS (SELECT FROM unnest(%s::int[]) AS seen(pid)
                      CROSS JOIN LATERAL pg_stat_get_activity(seen.pid) AS a
                      LEFT JOIN pg_roles AS r ON r.oid = a.usesysid
                      WHERE NOT COALESCE({allowed}, false))
)
SELECT o.sent, signalled.*
FROM own AS o
LEFT JOIN LATERAL ("""
    + _SIGNALLED.replace("{gate}", "o.sent IS NOT DISTINCT FROM o.sent -- lateral to own\n  AND ")
    + """) AS signalled ON true
"""
)
#: For ``Terminate``, sent only for the sessions ``SIGNAL`` left out (so never while
#: nothing of this applies): a session no longer in the transaction seen is still ended for
#: a lock it holds across its transactions (a session-level lock: ``pg_advisory_lock``, the
#: lock of ``CREATE INDEX CONCURRENTLY``), which ending the session frees. It is one when
#: the session (the same ``backend_start``, when known), which still blocks the migrating
#: backend, holds a conflicting lock on the awaited object while the backend still waits in
#: the request it was seen in (the same ``waitstart``): while a request waits, PostgreSQL
#: queues every conflicting request made after it behind it (unless its session already
#: holds a lock on the object), and the session's current transaction began after the
#: look, so that lock is not one of its current transaction's. (For ``Cancel``, cancelling a
#: later statement frees no such lock.) Parameters: the backend's pid, the awaited lock's tag
#: and conflicting modes, the backend's ``waitstart``, then the sessions' pids and
#: ``backend_start``.
SESSION_LOCK = """
WITH locks AS MATERIALIZED (
    SELECT pid, granted, mode, waitstart,
           ARRAY[locktype, database::text, relation::text, page::text, tuple::text,
                 virtualxid, transactionid::text, classid::text, objid::text,
                 objsubid::text] AS tag
    FROM pg_locks
), awaited AS MATERIALIZED (
    SELECT %s::int AS pid, %s::text[] AS tag, %s::text[] AS modes,
           %s::timestamptz AS waitstart,
           pg_blocking_pids(%s::int) AS blocking
)
SELECT seen.pid, CASE WHEN {allowed} THEN pg_terminate_backend(seen.pid) END
FROM unnest(%s::int[], %s::timestamptz[]) AS seen(pid, backend_start)
CROSS JOIN awaited AS aw
CROSS JOIN LATERAL pg_stat_get_activity(seen.pid) AS a
LEFT JOIN pg_roles AS r ON r.oid = a.usesysid
WHERE (seen.backend_start IS NULL OR a.backend_start = seen.backend_start)
  AND seen.pid = ANY(aw.blocking)
  AND EXISTS (SELECT FROM locks AS w
              WHERE w.pid = aw.pid AND NOT w.granted AND w.tag = aw.tag
                AND w.waitstart = aw.waitstart)
  AND EXISTS (SELECT FROM locks AS h
              WHERE h.pid = seen.pid AND h.granted AND h.tag = aw.tag
                AND h.mode = ANY(aw.modes))
"""


def signal_sql(
    function: str, *, allowed: str | None = None, cancelling_first: bool = False
) -> str:
    """``SIGNAL`` (``SIGNAL_CANCELLING_FIRST``) with ``function`` and ``allowed`` (default:
    ``ALLOWED``). Its parameters: the migrating backend's pid, then the arrays of the
    sessions' pids, virtual transactions, ``backend_start``, ``xact_start`` (where it tells
    the transaction) and ``via``."""
    text = SIGNAL_CANCELLING_FIRST if cancelling_first else SIGNAL
    return text.format(function=function, allowed=ALLOWED if allowed is None else allowed)


#: PostgreSQL's rule for signalling a session (only a superuser may signal a superuser's
#: session; otherwise the privileges of its role or of ``pg_signal_backend`` are needed), so
#: that one refusal does not fail the statement that signals all the others at once.
ALLOWED = """
    (NOT COALESCE(r.rolsuper, false)
     OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))
    AND (COALESCE(pg_has_role(a.usesysid, 'USAGE'), false)
         OR pg_has_role('pg_signal_backend', 'USAGE'))
"""


@functools.cache
def _signal_statement(function: str, checked: bool, cancelling_first: bool = False) -> Prepared:
    """``SIGNAL`` (``SIGNAL_CANCELLING_FIRST``) with ``function``, only where PostgreSQL
    allows it (``checked``), as a prepared statement of the watcher's session."""
    text = signal_sql(
        function, allowed=ALLOWED if checked else "true", cancelling_first=cancelling_first
    )
    name = f"{function}_{'checked' if checked else 'unchecked'}"
    first = ("int", "timestamptz", "int[]", "int[]", "int[]") if cancelling_first else ()
    return Prepared(
        name + ("_cancelling_first" if cancelling_first else ""),
        text,
        ("int", *first, "int[]", "text[]", "timestamptz[]", "timestamptz[]", "int[]"),
    )


@functools.cache
def _session_lock_statement(checked: bool) -> Prepared:
    """``SESSION_LOCK``, only where PostgreSQL allows it (``checked``), prepared."""
    text = SESSION_LOCK.format(allowed=ALLOWED if checked else "true")
    name = f"session_lock_{'checked' if checked else 'unchecked'}"
    return Prepared(
        name, text, ("int", "text[]", "text[]", "timestamptz", "int", "int[]", "timestamptz[]")
    )


def _event(
    cmd: Any, event: str, message: str, blocker: Blocker, action: BlockingAction, **fields: Any
) -> None:
    """Emit a pgmigrate event about ``blocker`` (when ``cmd`` is a pgmigrate command)."""
    emit = getattr(cmd, "event", None)
    if emit is not None:
        emit(
            event,
            message,
            blocker_pid=blocker.pid,
            application_name=blocker.application_name,
            state=blocker.readable_state,
            action=type(action).__name__,
            query=blocker.query,
            **fields,
        )


class _SignalBlockers(BlockingAction):
    """Send a signal to each blocking session; say once which were signalled or failed."""

    verb = "signalled"
    function = "pg_signal_backend"
    ends_blockers = True

    def __init__(self, **filters: Any) -> None:
        super().__init__(**filters)
        self._announced: set[tuple[int, Any]] = set()
        self._failed: set[tuple[int, Any]] = set()
        #: The pids of the last run that the signal statement left out: gone, no longer the
        #: session or transaction seen, or no longer blocking (the watcher looks again).
        self.missed: list[int] = []
        #: Whether the last run cancelled the migrating backend's statement first
        #: (``CANCEL_FIRST``); None if it may have (the statement failed).
        self.cancelled_first: bool | None = False

    def signal(
        self,
        *found: Blocker,
        using: str,
        checked: bool = True,
        blocked_pid: int | None = None,
        awaited: LockGraph | None = None,
        cancel_first: Any = None,
    ) -> dict[int, bool | None]:
        """Send the signal, in one statement, to those of ``found`` that are still the
        sessions (and transactions) the watcher saw and, with ``blocked_pid`` (the
        migrating backend), that still block it; with ``awaited`` (the lock graph of its
        wait), ``Terminate`` also ends those that hold a session-level lock it waits for
        (``SESSION_LOCK``); with ``cancel_first`` (the ``query_start`` of the backend's
        waiting statement), the same statement first cancels that statement
        (``SIGNAL_CANCELLING_FIRST``; whether it did: ``cancelled_first``). Returns, by pid,
        whether each was signalled: None when PostgreSQL would refuse (``checked``;
        unchecked, PostgreSQL's refusal raises); sessions gone, changed or no longer
        blocking are left out."""
        pids = [blocker.pid for blocker in found]
        via = [blocker.via for blocker in found]
        first = cancel_first is not None
        with connections[using].cursor() as cursor:
            if first:
                self.cancelled_first = None  # until it returns
            _signal_statement(self.function, checked, first).execute(
                cursor,
                [
                    blocked_pid,
                    *([blocked_pid, cancel_first, pids, via, pids] if first else []),
                    pids,
                    [blocker.virtualtransaction for blocker in found],
                    [blocker.backend_start for blocker in found],
                    [b.xact_start if b.told_by_xact_start else None for b in found],
                    via,
                ],
            )
            rows = cursor.fetchall()
            if first:
                self.cancelled_first = bool(rows and rows[0][0])
                rows = [row[1:] for row in rows if row[1] is not None]
            reached: dict[int, bool | None] = dict(rows)
            left_out = [b for b in found if b.pid not in reached and b.via is None]
            if (
                left_out
                and self.function == "pg_terminate_backend"
                and awaited is not None
                and awaited.waitstart is not None
                and blocked_pid is not None
            ):
                _session_lock_statement(checked).execute(
                    cursor,
                    [
                        blocked_pid,
                        list(awaited.locktag),
                        awaited.modes,
                        awaited.waitstart,
                        blocked_pid,
                        [blocker.pid for blocker in left_out],
                        [blocker.backend_start for blocker in left_out],
                    ],
                )
                reached.update(cursor.fetchall())
            return reached

    def cannot_help(self, cmd: MigrateCommand, found: list[Blocker]) -> list[Blocker]:
        """Those of ``found`` that the signal cannot free the lock of (reported here)."""
        return []

    def warm_up(self, blocked_locks: BlockedPGLockQuerySet, using: str) -> None:
        statements = [_signal_statement(self.function, True)]
        if self.function == "pg_terminate_backend":
            statements += [
                _session_lock_statement(True),
                _signal_statement(self.function, True, True),
            ]
        with connections[using].cursor() as cursor:
            prepare_all(cursor, statements, [])  # one round trip
        self.signal(using=using)  # signals nobody, as the urgent path sends it
        if self.function == "pg_terminate_backend":
            self.signal(using=using, cancel_first=dt.datetime.now(dt.timezone.utc))

    def worker(self, cmd: MigrateCommand, blocked_locks: BlockedPGLockQuerySet) -> list[int]:
        signalled: list[Blocker] = []
        found = [b for b in blockers(blocked_locks) if b.key not in self._failed]
        hopeless = {blocker.key for blocker in self.cannot_help(cmd, found)}
        found = [blocker for blocker in found if blocker.key not in hopeless]
        reached: dict[int, bool | None] = {}
        blocked_pid = getattr(blocked_locks, BLOCKED_PID, None)
        awaited = getattr(blocked_locks, AWAITED, None)
        self.missed = []
        self.cancelled_first = False
        # Those signalled already (``SIGNALLED``: by the watcher's first look, ``Terminate``).
        already: frozenset[int] = getattr(blocked_locks, SIGNALLED, frozenset())
        try:
            reached = {blocker.pid: True for blocker in found if blocker.pid in already}
            rest = [blocker for blocker in found if blocker.pid not in already]
            # One statement for all: blockers exit together, the app resumes sooner.
            if rest:
                reached |= self.signal(
                    *rest,
                    using=blocked_locks.db,
                    blocked_pid=blocked_pid,
                    awaited=awaited,
                    cancel_first=getattr(blocked_locks, CANCEL_FIRST, None),
                )
            batch_failed = False
        except DatabaseError as exc:
            if sqlstate(exc) is None:
                raise  # the watcher's connection broke: it reconnects and acts again
            batch_failed = True  # one of them is out of reach: go one by one to say which
        if self.cancelled_first is not False:
            # The backend may no longer wait (the batch cancelled its statement): the batch's
            # check that they block it is the last (their session and transaction still are).
            blocked_pid = awaited = None
        for blocker in found:
            try:
                out_of_reach = blocker.pid in reached and reached[blocker.pid] is None
                if blocker.pid not in already and (batch_failed or out_of_reach):
                    # Out of reach: PostgreSQL's own refusal says why.
                    reached.update(
                        self.signal(
                            blocker,
                            using=blocked_locks.db,
                            checked=False,
                            blocked_pid=blocked_pid,
                            awaited=awaited,
                        )
                    )
            except DatabaseError as exc:
                if sqlstate(exc) is None:
                    raise
                self._failed.add(blocker.key)
                hint = signal_failure_hint(exc, blocked_locks.db)
                message = (
                    f"pgmigrate: could not run {self.function}({blocker.pid}) on "
                    f"{blocker.describe()}: {printable(str(exc).strip())}\n    remedy: {hint}"
                )
                cmd.notice(message, warning=True)
                _event(cmd, "action_failed", message, blocker, self, error=str(exc), hint=hint)
                continue
            if not reached.get(blocker.pid):
                if blocker.pid not in reached:
                    self.missed.append(blocker.pid)
                continue  # gone, or no longer the session (transaction) that blocked
            signalled.append(blocker)
            if blocker.key not in self._announced:
                _event(
                    cmd,
                    "blocker_ended",
                    f"pgmigrate: {self.verb} {blocker.describe()}",
                    blocker,
                    self,
                )
        new = [blocker for blocker in signalled if blocker.key not in self._announced]
        if new:
            self._announced.update(blocker.key for blocker in new)
            plural = "s" if len(new) > 1 else ""
            cmd.notice(
                f"pgmigrate: {self.verb} {len(new)} session{plural} blocking the migration: "
                + ", ".join(blocker.describe() for blocker in new)
                + self.note(new),
                warning=True,
            )
        return [blocker.pid for blocker in signalled]

    def note(self, signalled: list[Blocker]) -> str:
        """More to say about the sessions just signalled (a line of its own, or nothing)."""
        return ""


class Terminate(_SignalBlockers):
    """End the blocking sessions with ``pg_terminate_backend`` (the default action)."""

    verb = "terminated"
    function = "pg_terminate_backend"


class Cancel(_SignalBlockers):
    """Cancel the running query of the blocking sessions with ``pg_cancel_backend``.

    This frees locks held by a single running statement (a long report). It does not help
    against a session idle in transaction: there is no query to cancel, and its transaction
    keeps its locks. Such sessions are reported, not cancelled (nor counted as cancelled):
    use ``Terminate`` for those.
    """

    verb = "cancelled the query of"
    function = "pg_cancel_backend"

    def __init__(self, **filters: Any) -> None:
        super().__init__(**filters)
        self._reported: set[tuple[int, Any]] = set()

    def cannot_help(self, cmd: MigrateCommand, found: list[Blocker]) -> list[Blocker]:
        idle = [blocker for blocker in found if blocker.readable_state.startswith("idle")]
        for blocker in idle:
            if blocker.key in self._reported:
                continue
            self._reported.add(blocker.key)
            message = (
                f"pgmigrate: cannot cancel {blocker.describe()}: it runs no query, so "
                "pg_cancel_backend would not free the locks it holds; it is left alone and "
                "the migration waits for it (or for the lock timeout).\n"
                f"    to end it: SELECT pg_terminate_backend({blocker.pid}); (or run migrate "
                "with --blocking-action terminate)"
            )
            cmd.notice(message, warning=True)
            _event(
                cmd,
                "blocker_shown",
                message,
                blocker,
                self,
                reason="idle: cancelling does not free its locks",
            )
        return idle

    def note(self, signalled: list[Blocker]) -> str:
        hidden = [blocker for blocker in signalled if blocker.hidden and not blocker.queued]
        if not hidden:
            return ""
        pids = ", ".join(str(blocker.pid) for blocker in hidden)
        return (
            f"\n    PostgreSQL hides the state of pid {pids} from the migrating role: if it "
            "sits idle in a transaction, cancelling does not free its locks (Terminate ends "
            "it; GRANT pg_read_all_stats to the migrating role to let pgmigrate tell)"
        )


def _session_details(pids: list[int], using: str) -> dict[int, tuple[str, dt.timedelta | None]]:
    """User name and transaction age (server clock) of the given sessions."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT pid, usename, now() - xact_start FROM pg_stat_activity WHERE pid = ANY(%s)",
            [pids],
        )
        return {pid: (user, age) for pid, user, age in cursor.fetchall()}


def _age(value: dt.timedelta | None) -> str:
    """A transaction's age as ``H:MM:SS.s``."""
    if value is None:
        return "no open transaction"
    return elapsed(value)


def elapsed(value: dt.timedelta) -> str:
    """A duration as ``H:MM:SS.s``."""
    tenths = round(value.total_seconds() * 10)
    minutes, seconds = divmod(tenths / 10, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{seconds:04.1f}"


class Show(BlockingAction):
    """Print each blocking session once, with how to end it, and leave it alone."""

    def __init__(self, **filters: Any) -> None:
        super().__init__(**filters)
        self._shown: set[tuple[int, Any]] = set()

    def worker(self, cmd: MigrateCommand, blocked_locks: BlockedPGLockQuerySet) -> list[int]:
        new = [blocker for blocker in blockers(blocked_locks) if blocker.key not in self._shown]
        if not new:
            return []
        missing = [blocker.pid for blocker in new if blocker.usename is None]
        details = _session_details(missing, blocked_locks.db) if missing else {}
        role = current_role(blocked_locks.db) if any(b.hidden for b in new) else ""
        for blocker in new:
            self._shown.add(blocker.key)
            user, age = details.get(blocker.pid, (blocker.usename, blocker.transaction_age))
            opened = "hidden" if blocker.hidden else _age(age)
            notes = ""
            if blocker.queued:
                notes += (
                    "\n    it holds no lock the migration needs, but waits for one ahead of "
                    "the migration in the lock's queue"
                )
            if blocker.hidden:
                notes += (
                    "\n    PostgreSQL hides its state, query and times from the migrating role "
                    f"{role}: GRANT pg_read_all_stats TO {role}; shows them"
                )
            message = (
                f"pgmigrate: session pid {blocker.pid} blocks the migration\n"
                f"    user: {printable(user)}  application: {blocker.application_name!r}  "
                f"state: {blocker.readable_state}  transaction open: {opened}\n"
                f"    query: {blocker.query_preview}{notes}\n"
                f"    to end it: SELECT pg_terminate_backend({blocker.pid});"
            )
            cmd.notice(message, warning=True)
            _event(
                cmd,
                "blocker_shown",
                f"pgmigrate: session pid {blocker.pid} blocks the migration",
                blocker,
                self,
                usename=user,
                transaction_age=age.total_seconds() if age is not None else None,
            )
        return [blocker.pid for blocker in new]


def import_path(path: str, *, setting: str) -> Any:
    """The object the dotted path ``path`` names (``"pgmigrate.Show"``), imported.

    Raises ``ImproperlyConfigured``, naming ``setting``, when it does not import, or is no
    full dotted path: one with an empty part (``".Show"``, ``"."``, ``"a..b"``) would be a
    relative import, which Python refuses with a ``ValueError`` or ``TypeError``."""
    if "." in path and not all(path.split(".")):
        raise ImproperlyConfigured(
            f"{setting}: {path!r} is not a full dotted path: it has an empty part (a "
            "relative path cannot be imported); give the path from the top-level package."
        )
    try:
        return import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{setting}: cannot import {path!r}: {exc}") from exc


def _instantiate(cls: type[BlockingAction], setting: str) -> BlockingAction:
    """An instance of the action class ``cls``, made without arguments as pgmigrate makes a
    class given as the action; ``ImproperlyConfigured`` if its constructor needs some."""
    try:
        inspect.signature(cls).bind()
    except TypeError as exc:
        raise ImproperlyConfigured(
            f"{setting}: the class {cls.__name__} cannot be made without arguments "
            f"({printable(exc)}): a class given as the action must take no arguments; give an "
            f"instance instead, e.g. {cls.__name__}(...)."
        ) from exc
    except ValueError:
        pass  # no signature to tell: make it and see
    try:
        return cls()
    except Exception as exc:
        raise ImproperlyConfigured(
            f"{setting}: making the action {cls.__name__}() failed: "
            f"{type(exc).__name__}: {_error_text(exc)}"
        ) from exc


def resolve(value: object, *, setting: str) -> BlockingAction | None:
    """Turn a setting value (class, instance, dotted path or None) into an action."""
    if value is None:
        return None
    if isinstance(value, str):
        value = import_path(value, setting=setting)
    if isinstance(value, type) and issubclass(value, BlockingAction):
        value = _instantiate(value, setting)
    if not isinstance(value, BlockingAction):
        raise ImproperlyConfigured(
            f"{setting} must be None, a pgmigrate.BlockingAction subclass or instance, or a "
            f"dotted path to one, not {value!r}."
        )
    try:
        value.validate()
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(f"{setting}: {exc}") from exc
    return value
