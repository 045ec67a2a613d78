"""Exceptions raised by pgmigrate and helpers to recognise database errors."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING

from django.core.management.base import CommandError
from django.db.utils import OperationalError

from pgmigrate.text import printable

if TYPE_CHECKING:
    from django.db.migrations import Migration
    from django.db.migrations.operations.base import Operation

#: SQLSTATE of ``lock_not_available``, raised when ``lock_timeout`` expires.
LOCK_NOT_AVAILABLE = "55P03"
#: SQLSTATE of ``query_canceled`` (``pg_cancel_backend``, ``statement_timeout``).
QUERY_CANCELED = "57014"


class StatementTimeoutAside(OperationalError):
    """The statement timeout of a statement pgmigrate cancelled to step out of the lock queue
    passed while it waited out of the queue (PostgreSQL counts lock waits in the statement
    timeout). Reported as PostgreSQL's statement timeout is: not retried."""

    sqlstate = QUERY_CANCELED


class SteppedAside(OperationalError):
    """Raised in the migrating thread when the migration's own code caught the error of the
    statement pgmigrate cancelled to step out of the lock queue, and went on: the unit must
    not commit without that statement; it is rolled back and runs again."""

    sqlstate = QUERY_CANCELED


class SelfDeadlock(OperationalError):
    """The migration's statement waited for a lock that a session opened by the migrating
    thread itself holds (another alias of the same database, used by the migration's
    code): that transaction cannot end before the statement returns (``pgmigrate.own``).
    PostgreSQL cannot see this deadlock (it is in the client); it carries PostgreSQL's
    ``deadlock_detected`` SQLSTATE, and is not retried."""

    sqlstate = "40P01"


class LockWaitTimeout(OperationalError):
    """The lock timeout passed while pgmigrate waited out of the lock queue for sessions it
    does not end (``pgmigrate.aside``). It carries PostgreSQL's ``lock_not_available``
    SQLSTATE, so that it is reported and retried as a lock timeout of the server is."""

    sqlstate = LOCK_NOT_AVAILABLE


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and the exceptions that caused it, outermost first."""
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name if it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def sqlstate(exc: BaseException | None) -> str | None:
    """Return the SQLSTATE of a psycopg (2 or 3) error found in ``exc`` or its causes."""
    for error in chain(exc):
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if code:
            return str(code)
    return None


def is_lock_timeout(exc: BaseException | None) -> bool:
    """True when ``exc`` (or its cause) is PostgreSQL's lock timeout error."""
    return sqlstate(exc) == LOCK_NOT_AVAILABLE


#: SQLSTATE of ``active_sql_transaction``: the statement cannot run in a transaction block.
CANNOT_RUN_IN_TRANSACTION = "25001"

#: SQLSTATEs of a backend ended under the client (admin_shutdown, crash_shutdown, ...).
CONNECTION_ENDED = {"57P01", "57P02", "57P03", "08000", "08003", "08006"}


def _driver_connection_closed(using: str) -> bool:
    """Whether the driver's connection of ``using`` is closed or broken (psycopg 2 and 3)."""
    from django.db import connections

    raw = connections[using].connection
    if raw is None:
        return True
    if getattr(raw, "closed", False):  # psycopg2: 1 closed, 2 broken; psycopg 3: bool
        return True
    pgconn = getattr(raw, "pgconn", None)  # psycopg 3
    return pgconn is not None and pgconn.status != 0  # ConnStatus.OK


def is_connection_lost(exc: BaseException | None, using: str) -> bool:
    """True when ``exc`` means the connection ``using`` is gone (an error *inside* a live
    connection, such as one that aborts its transaction, is not)."""
    from django.db import DatabaseError, InterfaceError

    if exc is None:
        return False
    if sqlstate(exc) in CONNECTION_ENDED:
        # Another connection's end (another alias, used by the migration's code) leaves
        # ``using`` as it was.
        return _driver_connection_closed(using)
    if any(isinstance(error, InterfaceError) for error in chain(exc)):
        return True
    if sqlstate(exc) is not None:
        return False  # the server answered with an error: the connection was alive
    if not any(isinstance(error, DatabaseError) for error in chain(exc)):
        return False
    return _driver_connection_closed(using)


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)`` (PEP 678; Python 3.10 gets ``__notes__`` set directly)."""
    add = getattr(exc, "add_note", None)
    if add is not None:
        add(note)
    else:  # pragma: no cover (Python 3.10)
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]


class MigrateError(CommandError):
    """What ``migrate`` raises when a migration fails.

    A ``CommandError`` (so the command line prints a clean message and exits with its
    status) whose class also derives from the class of the error that stopped the migration:
    ``except django.db.IntegrityError`` around ``call_command("migrate")`` still catches an
    ``IntegrityError``, in every mode. ``__cause__`` is that error (or the
    ``PartialMigrationError`` that reports it).
    """


@functools.cache
def _migrate_error_class(original: type[BaseException]) -> type[MigrateError]:
    # Named like its base for the command line ("CommandError: ..."), which prints the class
    # name; tracebacks show the qualified name.
    cls = type("CommandError", (MigrateError, original), {})
    cls.__qualname__ = f"MigrateError[{original.__qualname__}]"
    return cls


def migrate_error(message: str, original: BaseException, returncode: int = 1) -> CommandError:
    """A ``MigrateError`` for ``original`` (a plain ``CommandError`` if the two classes
    cannot be combined, e.g. a built-in exception with a layout of its own). Control
    characters in ``message`` (from the server's error, say) are escaped; its lines stay."""
    message = printable(message, keep="\n")
    try:
        cls = _migrate_error_class(type(original))
        return cls(message, returncode=returncode)
    except TypeError:
        return CommandError(message, returncode=returncode)


class PartialMigrationError(Exception):
    """A migration stopped with some of its operations applied, or failed part of the way.

    Each operation of an atomic migration runs in a transaction of its own, together with
    its progress record in ``pgmigrate_progress``, so what is applied is exactly what is
    recorded, and the next ``migrate`` resumes after it.

    Attributes:
        migration: The migration that stopped.
        forwards: True when it was being applied, False when unapplied.
        done: Operations 1 to ``done`` are applied (and recorded in ``pgmigrate_progress``).
        failed_index: 0-based index of the operation that failed, or None when the run
            stopped between operations (an interrupt after a commit), or after all of them
            (recording the migration in ``django_migrations`` failed).
        detail: What happened to the failed operation ("rolled back", the statements that
            committed, an index left behind...).
        statements: How many statements of the failed operation committed and are recorded
            (an operation that runs statement by statement; the next run resumes after them).
        shared_from: 0-based index of the first operation of the failed transaction, when
            the failed operation shared it with others (they were rolled back with it).
    """

    def __init__(
        self,
        migration: Migration,
        *,
        forwards: bool = True,
        done: int,
        failed_index: int | None,
        detail: str | None = None,
        statements: int = 0,
        shared_from: int | None = None,
    ) -> None:
        self.migration = migration
        self.forwards = forwards
        self.done = done
        self.failed_index = failed_index
        self.detail = detail
        self.statements = statements
        self.shared_from = shared_from
        super().__init__(self.report())

    @property
    def label(self) -> str:
        return f"{self.migration.app_label}.{self.migration.name}"

    @property
    def operations(self) -> list[Operation]:
        return list(self.migration.operations)

    @property
    def applied(self) -> list[Operation]:
        """Operations that are applied (committed and recorded)."""
        return self.operations[: self.done]

    @property
    def failed(self) -> Operation | None:
        """The operation that failed, if one did."""
        return None if self.failed_index is None else self.operations[self.failed_index]

    @property
    def not_applied(self) -> list[Operation]:
        """Operations that are not applied (and did not fail)."""
        return [
            operation
            for index, operation in enumerate(self.operations)
            if index >= self.done and index != self.failed_index
        ]

    def _status(self, index: int) -> str:
        if index == self.failed_index:
            return "FAILED"
        if index < self.done:
            return "applied"
        return "not applied" if self.forwards else "unapplied"

    def _headline(self) -> str:
        total = len(self.operations)
        if not self.forwards:
            return (
                f"Migration {self.label} was being unapplied and stopped with operations 1 to "
                f"{self.done} of {total} still applied; it is not recorded as applied."
                if self.done
                else f"Migration {self.label} is unapplied."
            )
        if self.failed_index is None and self.done == total:
            return (
                f"All {total} operations of migration {self.label} are applied and recorded in "
                "pgmigrate_progress, but recording the migration in django_migrations failed."
            )
        where = (
            f"operation {self.failed_index + 1} of {total} failed"
            if self.failed_index is not None
            else f"it stopped after operation {self.done} of {total}"
        )
        return f"Migration {self.label} is not recorded as applied: {where}."

    def _advice(self) -> str:
        total = len(self.operations)
        if not self.forwards:
            return (
                "Run the same migrate again to finish unapplying it (it goes on where it "
                "stopped), or migrate forwards to apply it again."
            )
        if self.done == total:
            return "Run migrate again: it records the migration without running anything again."
        if self.statements:
            where = f"statement {self.statements + 1} of operation {self.done + 1}"
            return f"Fix the cause and run migrate again: it resumes at {where}."
        if not self.done and not self.detail_commits:
            return "Nothing of it was applied; fix the cause and run migrate again."
        applied = (
            "none of its operations is applied"  # the failed one may have left something
            if not self.done
            else "operation 1 is applied"
            if self.done == 1
            else f"operations 1 to {self.done} are applied"
        )
        return (
            f"Fix the cause and run migrate again: {applied}, and it resumes at operation "
            f"{self.done + 1}."
        )

    def _rolled_back_with(self, index: int) -> bool:
        """Whether operation ``index`` ran in the failed operation's transaction."""
        if self.shared_from is None or self.failed_index is None:
            return False
        low, high = sorted((self.shared_from, self.failed_index))
        return low <= index <= high and index != self.failed_index

    @property
    def detail_commits(self) -> bool:
        """Whether the failed operation committed part of its work (statements, an index)."""
        return bool(self.detail) and self.detail != ROLLED_BACK

    def report(self) -> str:
        """A human-readable account of which operations are applied and which are not."""
        lines = [self._headline()]
        for index, operation in enumerate(self.operations):
            line = f"  {self._status(index):<12}{index + 1}. {operation.describe()}"
            if index == self.failed_index and self.detail:
                line += f" ({self.detail})"
            elif self._rolled_back_with(index):
                number = (self.failed_index or 0) + 1
                line += f" (ran in one transaction with operation {number}: rolled back)"
            lines.append(line)
        cause = self.__cause__
        if cause is not None and not isinstance(cause, KeyboardInterrupt):
            message = f": {first_line(cause)}" if str(cause).strip() else ""
            lines.append(f"Error: {type(cause).__name__}{message}")
        lines.append(self._advice())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


#: ``PartialMigrationError.detail`` of an operation whose transaction was rolled back.
ROLLED_BACK = "rolled back"
