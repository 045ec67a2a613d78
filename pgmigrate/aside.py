"""Stepping aside: leaving PostgreSQL's lock queue while the blockers will not be ended.

PostgreSQL grants a table lock in queue order (PostgreSQL docs, "Explicit Locking", and the
``pg_blocking_pids`` notes): while the migration's ``ALTER TABLE`` waits for its ACCESS
EXCLUSIVE lock, every later query on the table queues behind it. When the sessions in its
way are ones pgmigrate does not end (protected, undecidable, of another database, prepared
transactions, out of the migrating role's reach, or left alone by the blocking action), the
watcher cancels the migration's own waiting statement. What ran it is a *retry unit*, all or
nothing, so the cancel rolls all of it back and it can simply run again:

- a statement in autocommit (``LockRetry.statement_wrapper``);
- an operation's transaction, or one statement of an ``atomic = False`` migration with its
  progress count (``pgmigrate.run``);
- the whole migration with ``PGMIGRATE_ATOMIC`` (``pgmigrate.executor``).

The unit then waits, out of the queue, until those sessions no longer hold or await a
conflicting lock on the object it waited for (the watcher polls ``pg_locks``), and runs
again; the lock timeout, when set, still bounds the time of each attempt. A statement that
got its lock just before the cancel arrived is rolled back by it all the same: PostgreSQL
reports a cancel only for work it undoes, so nothing is applied twice.

Statements that cannot run in a transaction (``CREATE INDEX CONCURRENTLY``...) are never
cancelled to step aside: the unit marks them (``suspended``), and their waits do not hold
the app's queries back anyway.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pgmigrate.actions import Blocker, elapsed
from pgmigrate.errors import QUERY_CANCELED, SteppedAside, sqlstate
from pgmigrate.lockgraph import PreparedTransaction
from pgmigrate.text import printable


@dataclass
class Aside:
    """What the migration stepped out of the lock queue for."""

    #: The awaited lock's tag (``pg_locks``: locktype to objsubid, as text) and the modes
    #: that conflict with the awaited one.
    locktag: tuple[str | None, ...]
    modes: list[str]
    #: The awaited lock, for people (``AccessExclusiveLock on app_item``).
    target: str
    #: The sessions (pids) and prepared transactions that will not be ended.
    pids: list[int]
    prepared: list[PreparedTransaction]
    #: ``time.monotonic()`` when the statement began to wait, and when it stepped aside.
    waiting_since: float
    stepped: float = field(default_factory=time.monotonic)
    #: When the cancelled statement started, and its statement timeout (s; None: none):
    #: PostgreSQL counts lock waits in it, so it also bounds the wait out of the queue.
    statement_started: float = 0.0
    statement_timeout: float | None = None
    #: What was read of those sessions, with why each is not ended (for people).
    sessions: list[Blocker] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)
    #: Their ``xact_start`` where visible and it tells their transaction apart
    #: (``Blocker.told_by_xact_start``): while it is unchanged, the transaction (and so its
    #: table locks) is still there, which is cheaper to look at than ``pg_locks``.
    xact_starts: dict[int, Any] = field(default_factory=dict)
    #: Virtual transactions whose locks count as one of the sessions' (a parallel query's
    #: workers, for their leader): vxid -> the session's pid.
    lock_vxids: dict[str, int] = field(default_factory=dict)
    #: Set by the watcher when the wait is over (``gone``: the blockers are gone).
    done: threading.Event = field(default_factory=threading.Event)
    gone: bool = False
    #: Set by the migrating thread when it stopped waiting (lock timeout, interrupt).
    abandoned: bool = False
    #: What the watcher's last look found still in the way (virtual transactions; None:
    #: not looked yet).
    still: set[Any] | None = None
    #: One of the sessions is the migrating thread's own (``pgmigrate.own``): its
    #: transaction cannot end while the unit waits, so the unit stops (``SelfDeadlock``).
    deadlock: bool = False

    def left_over(self, waited: float = 0.0) -> Aside:
        """This step-aside with only what the last look found still in the way (all of it
        before any look), their transactions ``waited`` seconds older (since it stepped
        aside)."""
        still = self.still
        holding = {self.lock_vxids[vxid] for vxid in still or () if vxid in self.lock_vxids}
        later = dt.timedelta(seconds=waited)
        sessions = [
            dataclasses.replace(blocker, transaction_age=blocker.transaction_age + later)
            if blocker.transaction_age is not None
            else blocker
            for blocker in self.sessions
            if still is None or blocker.virtualtransaction in still or blocker.pid in holding
        ]
        prepared = [
            dataclasses.replace(p, age=p.age + later) if p.age else p
            for p in self.prepared
            if still is None or p.virtualtransaction in still
        ]
        return dataclasses.replace(
            self, pids=[blocker.pid for blocker in sessions], sessions=sessions, prepared=prepared
        )

    def describe(self) -> str:
        """Whom the migration waits for: ``pid 12 (application 'x', idle in transaction,
        transaction open 0:00:02.0, protected: ...)``, prepared transactions by gid."""
        parts = []
        for blocker in self.sessions:
            age = None if blocker.transaction_age is None else elapsed(blocker.transaction_age)
            details = [f"application {blocker.application_name!r}", blocker.readable_state]
            if blocker.hidden:
                details[-1] = "state hidden"
            elif age is not None:
                details.append(f"transaction open {age}")
            reason = self.reasons.get(blocker.pid)
            if reason:
                details.append(reason)
            parts.append(f"pid {blocker.pid} ({', '.join(details)})")
        for prepared in self.prepared:
            age = elapsed(prepared.age) if prepared.age is not None else "?"
            parts.append(
                f"prepared transaction {printable(prepared.literal)} (owner "
                f"{prepared.owner!r}, prepared {age} ago)"
            )
        return ", ".join(parts)

    @property
    def vxids(self) -> list[str]:
        """The virtual transactions waited for: the sessions' and the prepared ones'."""
        sessions = [b.virtualtransaction for b in self.sessions if b.virtualtransaction]
        prepared = [prepared.virtualtransaction for prepared in self.prepared]
        return sessions + list(self.lock_vxids) + prepared


class StepAside:
    """Hands a step-aside from the watcher (which cancels) to the retry unit (which waits and
    runs again). Thread-safe: the watcher calls ``request``/``withdraw``, the migrating
    thread the others."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        #: Waits out of the queue (the watcher's ``wait_aside``): returns when ``done``.
        self.waiter: Callable[[Aside], None] | None = None
        #: The statement timeout of the statements now run (s; None: none), kept by
        #: ``pgmigrate.run`` (operations exempt from it run with None).
        self.statement_timeout: float | None = None
        self._units = 0
        #: ``time.monotonic()`` when the outermost retry unit running began (its attempt).
        self.unit_began = 0.0
        #: Whether what the running unit did so far went only through SQL on the migrating
        #: connection: running it again repeats nothing else. Kept by ``pgmigrate.run`` as
        #: each step begins (a unit may begin within a step: a statement of an ``atomic =
        #: False`` migration); False until then.
        self.sql_only = False
        self._suspended = 0
        self._pending: Aside | None = None
        #: The pending step-aside's cancel was sent (``sent``); until the watcher says
        #: whether it was (``sent`` or ``withdraw``), ``_deciding``.
        self._sent = False
        self._deciding = False
        #: The pending step-aside's cancel reached a statement (its error was raised).
        self._delivered = False
        self._lock = threading.Lock()
        self._decided = threading.Condition(self._lock)

    @property
    def ready(self) -> bool:
        """Whether the running statement may be cancelled to step aside: it runs in a retry
        unit, and not in a part the unit cannot run again (``suspended``)."""
        return self.enabled and self.waiter is not None and self._units > 0 and not self._suspended

    @contextlib.contextmanager
    def unit(self) -> Iterator[None]:
        """A retry unit runs (``LockRetry.call``)."""
        if not self._units:
            self.unit_began = time.monotonic()
        self._units += 1
        try:
            yield
        finally:
            self._units -= 1

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """A statement that must not be cancelled runs (outside a transaction)."""
        self._suspended += 1
        try:
            yield
        finally:
            self._suspended -= 1

    def request(self, aside: Aside) -> bool:
        """The watcher is about to cancel the waiting statement to step aside for ``aside``;
        False if it may not (then it must not cancel)."""
        with self._lock:
            if not self.ready:
                return False
            self._pending, self._sent, self._deciding = aside, False, True
            return True

    def sent(self, aside: Aside) -> None:
        """The watcher sent the cancel of ``aside`` (or may have: its statement failed)."""
        with self._lock:
            if self._pending is aside:
                self._sent, self._deciding = True, False
                self._decided.notify_all()

    def note_failure(self, exc: BaseException) -> None:
        """A statement of the migrating connection failed with ``exc``: if it is the cancel
        of the pending step-aside, remember that it was delivered (``check``)."""
        with self._lock:
            if self._pending is not None and sqlstate(exc) == QUERY_CANCELED:
                self._delivered = True

    def check(self, *, committing: bool = False) -> None:
        """Before a statement runs, and before a unit commits (``committing``): the cancel
        of a step-aside was delivered but never reached the retry unit (the migration's own
        code caught the error and went on). The unit must not go on without that statement.
        Before a commit, a cancel sent that no statement failed with is as bad: SQL that
        traps ``query_canceled`` (a PL/pgSQL handler) ran its handler instead of the
        statement; what the statement did is unknown, so the unit does not commit either.

        Raises:
            SteppedAside: Then (the retry unit claims it, waits and runs again).
        """
        with self._lock:
            if committing:  # the watcher is about to say whether it sent the cancel
                self._decided.wait_for(lambda: not self._deciding, DECIDING_TIMEOUT)
            pending, delivered = self._pending is not None, self._delivered
            # Undecided past the timeout: as if sent (the unit runs again, safely).
            sent = self._sent or self._deciding
        if pending and delivered:
            raise SteppedAside(
                "pgmigrate cancelled a statement of this unit to step out of the lock queue, "
                "and the migration's code caught the error and went on: the unit is rolled "
                "back and runs again"
            )
        if pending and committing and sent:
            raise SteppedAside(
                "pgmigrate cancelled a statement of this unit to step out of the lock queue, "
                "and no statement failed with the cancel (SQL that traps query_canceled may "
                "have run its handler instead): the unit is rolled back and runs again"
            )

    def withdraw(self, aside: Aside) -> None:
        """The cancel was not sent (the statement no longer waited)."""
        with self._lock:
            if self._pending is aside:
                self._pending, self._deciding = None, False
                self._decided.notify_all()

    def claim(self, exc: BaseException) -> Aside | None:
        """The step-aside that ``exc`` (a failed unit's error) comes from, if any."""
        with self._lock:
            if self._pending is None or sqlstate(exc) != QUERY_CANCELED:
                return None
            if "statement timeout" in str(exc):  # not ours (when messages are in English)
                return None
            aside, self._pending, self._delivered = self._pending, None, False
            self._sent = self._deciding = False
            return aside

    def settle(self) -> None:
        """A unit finished: a step-aside still pending had no effect."""
        with self._lock:
            self._pending, self._delivered = None, False
            self._sent = self._deciding = False

    def wait(self, aside: Aside, deadline: float | None, checkpoint: Callable[[], None]) -> bool:
        """Wait out of the queue until the blockers of ``aside`` are gone (True) or until
        ``deadline`` (``time.monotonic()``; False). ``checkpoint`` raises a pending interrupt.
        """
        waiter = self.waiter
        if waiter is None:
            return True
        waiter(aside)
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                slice_ = WAIT_SLICE if remaining is None else min(WAIT_SLICE, remaining)
                if aside.done.wait(slice_):
                    return True
                checkpoint()
        finally:
            aside.abandoned = True


#: Before a unit commits, the migrating thread waits at most this long (s) for the watcher to
#: say whether it sent the cancel it is about to send (one round trip).
DECIDING_TIMEOUT = 2.0
#: The migrating thread checks for Ctrl-C this often while it waits out of the queue (s).
WAIT_SLICE = 0.05
