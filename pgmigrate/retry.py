"""Retrying what hit the lock timeout, after an exponential, jittered, capped delay."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pgmigrate import sql as sql_kinds
from pgmigrate.aside import StepAside
from pgmigrate.db import in_server_transaction
from pgmigrate.errors import (
    LockWaitTimeout,
    SelfDeadlock,
    StatementTimeoutAside,
    is_lock_timeout,
)

T = TypeVar("T")

#: The delay doubles at most this many times (2**64 times the smallest delay, 1 ms, is far
#: above the largest cap, an hour).
MAX_DOUBLINGS = 64


#: First words of statements that open or end a transaction, or may (checked with the
#: parser).
_TRANSACTION_WORDS = (
    "begin",
    "call",
    "do",
    "start",
    "commit",
    "end",
    "rollback",
    "abort",
    "savepoint",
    "release",
    "prepare",
)


def _runs_as_it_is(sql: Any) -> bool:
    """Whether the SQL text ``sql`` must run once, as it is, never cancelled: it holds a
    statement that opens or ends a transaction (a ``CALL``, or a ``DO`` block that commits,
    included), or a ``DO`` block that traps a cancel (its handler would run instead of the
    statement failing). PostgreSQL's parser decides; only texts with several statements or
    such a first word are parsed."""
    text = str(sql).lstrip().lower()
    if ";" not in text.rstrip().rstrip(";") and not text.startswith(_TRANSACTION_WORDS):
        return False
    return any(
        statement.kind is sql_kinds.Kind.TRANSACTION_CONTROL or statement.traps_cancel
        for statement in sql_kinds.parse(str(sql))
    )


def backoff(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before retry ``attempt`` (1-based): ``base * 2**(attempt-1)``, capped, times a
    random factor in [0.5, 1) so that several migrating pods do not retry in step.

    All in seconds. The doubling stops at 2**64 (past any cap), so that the ten-thousandth
    attempt of a large ``PGMIGRATE_LOCK_RETRIES`` does not overflow a float."""
    return min(cap, base * 2 ** min(attempt - 1, MAX_DOUBLINGS)) * (0.5 + rand() / 2)


class LockRetry:
    """Runs callables (retry units), retrying those that fail with a lock timeout, and
    reports each try. A unit whose statement the watcher cancelled to step out of the lock
    queue (``pgmigrate.aside``) waits out of it and runs again, within the same attempt:
    ``lock_timeout`` (seconds, None for none) bounds each attempt's waits, in the queue and
    out of it."""

    def __init__(
        self,
        *,
        retries: int,
        base_delay: float,
        max_delay: float,
        events: Any,
        notice: Callable[..., None],
        sleep: Callable[[float], None] = time.sleep,
        aside: StepAside | None = None,
        lock_timeout: float | None = None,
        checkpoint: Callable[[], None] = lambda: None,
    ) -> None:
        self.retries = retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.events = events
        self.notice = notice
        self.sleep = sleep
        self.aside = aside if aside is not None else StepAside(enabled=False)
        self.lock_timeout = lock_timeout
        self.checkpoint = checkpoint
        self._suspended = False

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Let ``statement_wrapper`` pass statements through: the caller retries them. The
        statement runs outside a transaction: it is never cancelled to step aside."""
        previous, self._suspended = self._suspended, True
        try:
            with self.aside.suspended():
                yield
        finally:
            self._suspended = previous

    def _run(self, func: Callable[[], T]) -> T:
        with self.aside.unit():
            try:
                result = func()
            except Exception as exc:
                if is_lock_timeout(exc):
                    # It failed on its own, its transaction rolled back: a step-aside asked
                    # for meanwhile is stale, and must not stop the next attempt's commit.
                    self.aside.settle()
                raise
        self.aside.settle()
        return result

    def _step_aside(
        self, exc: Exception, spent: float, what: str | Callable[[], str]
    ) -> float | None:
        """If ``exc`` comes from a step-aside, wait out of the lock queue and return the
        seconds this attempt has now waited for locks, in the queue and out of it (to run the
        unit again); else None. ``spent``: what its earlier waits took.

        Raises:
            LockWaitTimeout: The lock timeout passed meanwhile.
            StatementTimeoutAside: The statement timeout of the cancelled statement passed.
        """
        aside = self.aside.claim(exc)
        if aside is None:
            return None
        name = what() if callable(what) else what
        if aside.deadlock:  # never out of the queue: the unit stops
            raise SelfDeadlock(
                f"{name} waited for {aside.target}, held by a connection that the migration's "
                f"own code opened ({aside.describe()}): that transaction cannot end before the "
                "statement returns (a deadlock). End it before the schema change, or do both "
                "on the schema editor's connection."
            ) from exc
        deadline = None
        if self.lock_timeout is not None:
            deadline = aside.waiting_since + max(0.0, self.lock_timeout - spent)
        statement_deadline = None
        if aside.statement_timeout is not None:
            statement_deadline = aside.statement_started + aside.statement_timeout
        earliest = min((d for d in (deadline, statement_deadline) if d is not None), default=None)
        try:
            gone = self.aside.wait(aside, earliest, self.checkpoint)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM) or failed out of the queue: the time spent there
            # is in the figures all the same.
            self.events.emit(
                "stepped_back",
                f"pgmigrate: {name} stopped waiting out of the lock queue: interrupted",
                waited=round(time.monotonic() - aside.stepped, 6),
                outcome="interrupted",
            )
            raise
        waited = round(time.monotonic() - aside.stepped, 6)
        current = aside.left_over(waited)  # for people: what was still in the way
        if not gone and statement_deadline is not None and earliest == statement_deadline:
            self.events.emit(
                "stepped_back",
                f"pgmigrate: {name} hit the statement timeout out of the lock queue",
                waited=waited,
                outcome="statement_timeout",
            )
            raise StatementTimeoutAside(
                f"canceling statement due to statement timeout ({aside.statement_timeout:g} s, "
                f"out of the lock queue, waiting for {current.describe()})"
            ) from exc
        if gone:
            message = (
                f"pgmigrate: the sessions the migration stepped aside for are gone after "
                f"{waited:.3f} s; running {name} again"
            )
        else:
            message = (
                f"pgmigrate: {name} waited out of the lock queue until the lock timeout "
                f"({self.lock_timeout:g} s) for {current.describe()}"
            )
        self.events.emit(
            "stepped_back", message, waited=waited, outcome="gone" if gone else "lock_timeout"
        )
        spent += time.monotonic() - aside.waiting_since
        if gone:
            self.notice(message)
            return spent
        raise LockWaitTimeout(
            f"waited {spent:.3f} s for {aside.target} (out of the lock queue, for "
            f"{current.describe()}): lock timeout"
        ) from exc

    def call(self, func: Callable[[], T], *, what: str | Callable[[], str]) -> T:
        """``func()``, retried up to ``retries`` times while it fails with a lock timeout.
        ``what`` names it in messages (a callable: asked after each failure)."""
        attempt = 1
        spent = 0.0  # seconds this attempt waited for locks, in the queue and out of it
        while True:
            try:
                return self._run(func)
            except Exception as caught:
                exc: Exception = caught
                if self.aside.enabled:
                    try:
                        waited = self._step_aside(exc, spent, what)
                    except LockWaitTimeout as timeout:
                        exc = timeout
                    else:
                        if waited is not None:
                            spent = waited
                            continue  # the same attempt, after waiting out of the queue
                if not is_lock_timeout(exc):
                    raise
                spent = 0.0
                name = what() if callable(what) else what
                gave_up = attempt > self.retries
                self.events.emit(
                    "lock_timeout",
                    f"pgmigrate: {name} hit the lock timeout (attempt {attempt} of "
                    f"{self.retries + 1})" + ("; giving up" if gave_up else ""),
                    attempt=attempt,
                    attempts=self.retries + 1,
                    gave_up=gave_up,
                )
                if gave_up:
                    if self.retries:
                        self.notice(
                            f"pgmigrate: {name} hit the lock timeout {attempt} times; giving up",
                            warning=True,
                        )
                    if exc is not caught:
                        raise exc from caught
                    raise
                delay = backoff(attempt, self.base_delay, self.max_delay)
                self.notice(
                    f"pgmigrate: {name} hit the lock timeout (attempt {attempt} of "
                    f"{self.retries + 1}); retrying in {delay:.2f} s",
                    warning=True,
                )
                self.events.emit(
                    "retry",
                    f"pgmigrate: retrying {name} in {delay:.2f} s",
                    attempt=attempt + 1,
                    delay=round(delay, 6),
                )
                self.sleep(delay)
                attempt += 1

    def statement_wrapper(self, connection: Any) -> Callable[..., Any]:
        """A Django ``execute_wrapper`` retrying single statements run in autocommit.

        A statement inside a transaction cannot be retried on its own (the transaction is
        aborted): its operation or migration is retried instead (``pgmigrate.run``).
        """

        def wrapper(
            execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any
        ) -> Any:
            if connection.in_atomic_block or self._suspended:  # retried by the caller
                return execute(sql, params, many, context)
            if in_server_transaction(connection) or _runs_as_it_is(sql):
                # Not all or nothing: in a transaction the code opened itself, or ending or
                # opening one (what committed would run twice), or trapping the cancel.
                # Neither retried nor cancelled.
                return execute(sql, params, many, context)
            return self.call(lambda: execute(sql, params, many, context), what="a statement")

        return wrapper
