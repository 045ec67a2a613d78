"""Exceptions raised by pgmigrate and helpers to recognise database errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.db.migrations import Migration
    from django.db.migrations.operations.base import Operation

#: SQLSTATE of ``lock_not_available``, raised when ``lock_timeout`` expires.
LOCK_NOT_AVAILABLE = "55P03"


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


#: SQLSTATEs of a backend ended under the client (admin_shutdown, crash_shutdown, ...).
CONNECTION_ENDED = {"57P01", "57P02", "57P03", "08000", "08003", "08006"}


def is_connection_lost(exc: BaseException | None, using: str) -> bool:
    """True when ``exc`` means the connection ``using`` is gone."""
    from django.db import InterfaceError, connections

    if exc is None:
        return False
    if sqlstate(exc) in CONNECTION_ENDED:
        return True
    if any(isinstance(error, InterfaceError) for error in chain(exc)):
        return True
    from django.db import Error as DatabaseError

    if not isinstance(exc, DatabaseError) and not isinstance(exc.__cause__, DatabaseError):
        return False
    return not connections[using].is_usable()


class PartialMigrationError(Exception):
    """A statement-by-statement migration stopped after some of its operations ran.

    Attributes:
        migration: The migration that stopped.
        failed_index: Index (0-based) of the operation that failed.
        statements_committed: How many statements of the failing operation committed
            before it failed (0 when it ran in a transaction of its own).
        in_transaction: Whether the failing operation ran in a transaction of its own.
    """

    def __init__(
        self,
        migration: Migration,
        failed_index: int,
        *,
        statements_committed: int,
        in_transaction: bool,
    ) -> None:
        self.migration = migration
        self.failed_index = failed_index
        self.statements_committed = statements_committed
        self.in_transaction = in_transaction
        super().__init__(self.report())

    @property
    def operations(self) -> list[Operation]:
        return list(self.migration.operations)

    @property
    def applied(self) -> list[Operation]:
        """Operations that were applied (and committed) before the failure."""
        return self.operations[: self.failed_index]

    @property
    def failed(self) -> Operation:
        """The operation that failed."""
        return self.operations[self.failed_index]

    @property
    def not_applied(self) -> list[Operation]:
        """Operations after the failing one, which did not run."""
        return self.operations[self.failed_index + 1 :]

    def _failed_detail(self) -> str:
        if self.in_transaction:
            return "rolled back"
        if self.statements_committed:
            plural = "s" if self.statements_committed > 1 else ""
            return f"partly applied: {self.statements_committed} statement{plural} committed"
        return "nothing of it committed"

    def report(self) -> str:
        """A human-readable account of which operations were applied and which were not."""
        total = len(self.operations)
        cause = self.__cause__
        lines = [
            f"Migration {self.migration.app_label}.{self.migration.name} stopped at operation "
            f"{self.failed_index + 1} of {total}; it is not recorded as applied."
        ]
        for number, operation in enumerate(self.operations, start=1):
            if number <= self.failed_index:
                status = "applied"
            elif number == self.failed_index + 1:
                status = "FAILED"
            else:
                status = "not applied"
            line = f"  {status:<12}{number}. {operation.describe()}"
            if number == self.failed_index + 1:
                line += f" ({self._failed_detail()})"
            lines.append(line)
        if cause is not None:
            message = f": {first_line(cause)}" if str(cause).strip() else ""
            lines.append(f"Error: {type(cause).__name__}{message}")
        if self.failed_index or self.statements_committed:
            lines.append(
                f"Fix the cause and run migrate again: it resumes at operation "
                f"{self.failed_index + 1}. If you repair the database by hand instead, run "
                "migrate --pgmigrate-restart."
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()
