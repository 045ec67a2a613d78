"""Blocking actions: what pgmigrate does with the sessions that block a migration."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pgactivity
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.db import DatabaseError, connections
from django.utils.module_loading import import_string

from pgmigrate.errors import sqlstate

if TYPE_CHECKING:
    from pglock.models import BlockedPGLockQuerySet

    from pgmigrate.command import MigrateCommand

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

    @property
    def key(self) -> tuple[int, dt.datetime | None]:
        """Identifies the session even if its pid is later reused by another one."""
        return (self.pid, self.backend_start)

    @property
    def readable_state(self) -> str:
        return (self.state or "unknown").lower().replace("_", " ")

    @property
    def query_preview(self) -> str:
        text = " ".join((self.query or "").split())
        if len(text) > QUERY_PREVIEW_CHARS:
            return text[: QUERY_PREVIEW_CHARS - 3] + "..."
        return text

    def describe(self) -> str:
        return f"pid {self.pid} (application {self.application_name!r}, {self.readable_state})"


#: Attribute of a ``blocked_locks`` queryset holding the blockers the watcher already read.
PREFETCHED = "_pgmigrate_blockers"


def blockers(blocked_locks: BlockedPGLockQuerySet) -> list[Blocker]:
    """The distinct sessions behind ``blocked_locks``, ordered by pid.

    The watcher hands actions a queryset whose blockers it has already read (one cheap
    query); a filtered queryset (a clone) is read through django-pglock. Traversing
    ``blocking_activity`` joins pgactivity's view of ``pg_stat_activity``, which only holds
    sessions of the migration's database: a session of another database is never returned.
    """
    prefetched = getattr(blocked_locks, PREFETCHED, None)
    if prefetched is not None:
        return list(prefetched)
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

    def __init__(self, **filters: Any) -> None:
        self.filters = filters

    def __call__(self, cmd: MigrateCommand, blocked_locks: BlockedPGLockQuerySet) -> list[int]:
        if self.filters:
            blocked_locks = blocked_locks.filter(**self.filters)
        return list(self.worker(cmd, blocked_locks) or [])

    def worker(self, cmd: MigrateCommand, blocked_locks: BlockedPGLockQuerySet) -> list[int]:
        """Act on the blocked locks of the migrating backend; return the pids acted on."""
        raise NotImplementedError(f"{type(self).__name__} must implement worker()")

    def validate(self) -> None:
        """Raise ``ImproperlyConfigured`` if the filters do not fit ``BlockedPGLock``."""
        from pglock.models import BlockedPGLock

        try:
            BlockedPGLock.objects.filter(**self.filters)
        except (FieldError, TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"{self!r} has an invalid filter: {exc}") from exc

    def __repr__(self) -> str:
        filters = ", ".join(f"{key}={value!r}" for key, value in self.filters.items())
        return f"{type(self).__name__}({filters})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.filters == other.filters  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(self.filters))))


def signal_failure_hint(exc: BaseException, using: str) -> str:
    """How to fix a failed ``pg_terminate_backend``/``pg_cancel_backend``."""
    text = str(exc).lower()
    if "superuser" in text:
        return (
            "only a superuser can end a superuser's session; set PGMIGRATE_LOCK_TIMEOUT so "
            "that migrate gives up instead of queueing behind it"
        )
    if sqlstate(exc) == "42501" or "permission denied" in text or "must be a member" in text:
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT current_user")
            role = cursor.fetchone()[0]
        return f'GRANT pg_signal_backend TO "{role}"; (run as a superuser)'
    return "see the PostgreSQL server log"


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

    def __init__(self, **filters: Any) -> None:
        super().__init__(**filters)
        self._announced: set[tuple[int, dt.datetime | None]] = set()
        self._failed: set[tuple[int, dt.datetime | None]] = set()

    def signal(self, *pids: int, using: str) -> None:
        raise NotImplementedError

    def worker(self, cmd: MigrateCommand, blocked_locks: BlockedPGLockQuerySet) -> list[int]:
        signalled: list[Blocker] = []
        found = [b for b in blockers(blocked_locks) if b.key not in self._failed]
        try:
            # One statement for all: blockers exit together, the app resumes sooner.
            if found:
                self.signal(*(blocker.pid for blocker in found), using=blocked_locks.db)
            batch_failed = False
        except DatabaseError as exc:
            if sqlstate(exc) is None:
                raise  # the watcher's connection broke: it reconnects and acts again
            batch_failed = True  # one of them is out of reach: go one by one to say which
        for blocker in found:
            try:
                if batch_failed:
                    self.signal(blocker.pid, using=blocked_locks.db)
            except DatabaseError as exc:
                if sqlstate(exc) is None:
                    raise
                self._failed.add(blocker.key)
                hint = signal_failure_hint(exc, blocked_locks.db)
                message = (
                    f"pgmigrate: could not run {self.function}({blocker.pid}) on "
                    f"{blocker.describe()}: {str(exc).strip()}\n    remedy: {hint}"
                )
                cmd.notice(message, warning=True)
                _event(cmd, "action_failed", message, blocker, self, error=str(exc), hint=hint)
                continue
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
                + ", ".join(blocker.describe() for blocker in new),
                warning=True,
            )
        return [blocker.pid for blocker in signalled]


class Terminate(_SignalBlockers):
    """End the blocking sessions with ``pg_terminate_backend`` (the default action)."""

    verb = "terminated"
    function = "pg_terminate_backend"

    def signal(self, *pids: int, using: str) -> None:
        pgactivity.terminate(*pids, using=using)


class Cancel(_SignalBlockers):
    """Cancel the running query of the blocking sessions with ``pg_cancel_backend``.

    This frees locks held by a single running statement (a long report). It does not help
    against a session idle in transaction: use ``Terminate`` for those.
    """

    verb = "cancelled the query of"
    function = "pg_cancel_backend"

    def signal(self, *pids: int, using: str) -> None:
        pgactivity.cancel(*pids, using=using)


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
    tenths = round(value.total_seconds() * 10)
    minutes, seconds = divmod(tenths / 10, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{seconds:04.1f}"


class Show(BlockingAction):
    """Print each blocking session once, with how to end it, and leave it alone."""

    def __init__(self, **filters: Any) -> None:
        super().__init__(**filters)
        self._shown: set[tuple[int, dt.datetime | None]] = set()

    def worker(self, cmd: MigrateCommand, blocked_locks: BlockedPGLockQuerySet) -> list[int]:
        new = [blocker for blocker in blockers(blocked_locks) if blocker.key not in self._shown]
        if not new:
            return []
        missing = [blocker.pid for blocker in new if blocker.usename is None]
        details = _session_details(missing, blocked_locks.db) if missing else {}
        for blocker in new:
            self._shown.add(blocker.key)
            user, age = details.get(blocker.pid, (blocker.usename, blocker.transaction_age))
            message = (
                f"pgmigrate: session pid {blocker.pid} blocks the migration\n"
                f"    user: {user}  application: {blocker.application_name!r}  "
                f"state: {blocker.readable_state}  transaction open: {_age(age)}\n"
                f"    query: {blocker.query_preview}\n"
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


def resolve(value: object, *, setting: str) -> BlockingAction | None:
    """Turn a setting value (class, instance, dotted path or None) into an action."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(f"{setting}: cannot import {value!r}: {exc}") from exc
    if isinstance(value, type) and issubclass(value, BlockingAction):
        value = value()
    if not isinstance(value, BlockingAction):
        raise ImproperlyConfigured(
            f"{setting} must be None, a pgmigrate.BlockingAction subclass or instance, or a "
            f"dotted path to one, not {value!r}."
        )
    value.validate()
    return value
