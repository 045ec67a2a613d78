"""Retrying what hit the lock timeout, after an exponential, jittered, capped delay."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pgmigrate.errors import is_lock_timeout

T = TypeVar("T")

#: The delay doubles at most this many times (2**64 times the smallest delay, 1 ms, is far
#: above the largest cap, an hour).
MAX_DOUBLINGS = 64


def backoff(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before retry ``attempt`` (1-based): ``base * 2**(attempt-1)``, capped, times a
    random factor in [0.5, 1) so that several migrating pods do not retry in step.

    All in seconds. The doubling stops at 2**64 (past any cap), so that the ten-thousandth
    attempt of a large ``PGMIGRATE_LOCK_RETRIES`` does not overflow a float."""
    return min(cap, base * 2 ** min(attempt - 1, MAX_DOUBLINGS)) * (0.5 + rand() / 2)


class LockRetry:
    """Runs callables, retrying those that fail with a lock timeout, and reports each try."""

    def __init__(
        self,
        *,
        retries: int,
        base_delay: float,
        max_delay: float,
        events: Any,
        notice: Callable[..., None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retries = retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.events = events
        self.notice = notice
        self.sleep = sleep
        self._suspended = False

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Let ``statement_wrapper`` pass statements through: the caller retries them."""
        previous, self._suspended = self._suspended, True
        try:
            yield
        finally:
            self._suspended = previous

    def call(self, func: Callable[[], T], *, what: str | Callable[[], str]) -> T:
        """``func()``, retried up to ``retries`` times while it fails with a lock timeout.
        ``what`` names it in messages (a callable: asked after each failure)."""
        attempt = 1
        while True:
            try:
                return func()
            except Exception as exc:
                if not is_lock_timeout(exc):
                    raise
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
            return self.call(lambda: execute(sql, params, many, context), what="a statement")

        return wrapper
