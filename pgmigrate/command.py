"""``MigrateCommand``: Django's ``migrate`` with a watcher that handles blocking sessions."""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pgactivity
import pglock
from django.core.management.base import CommandError
from django.core.management.commands import migrate as django_migrate
from django.db import Error, connections

from pgmigrate import config, interrupts
from pgmigrate.errors import (
    PartialMigrationError,
    is_cancelled_by_interrupt,
    is_connection_lost,
    is_lock_timeout,
)
from pgmigrate.executor import PGMigrateExecutor
from pgmigrate.migrate_lock import migrate_lock
from pgmigrate.watcher import Watcher

#: Django's own ``migrate`` command, kept before pgmigrate patches it.
DjangoMigrateCommand = django_migrate.Command


@contextlib.contextmanager
def _lock_timeout(seconds: float, using: str) -> Iterator[None]:
    """``pglock.timeout`` that does not hide the original error if the connection broke."""
    manager = pglock.timeout(seconds, using=using)
    manager.__enter__()
    try:
        yield
    except BaseException:
        with contextlib.suppress(Error):
            manager.__exit__(*sys.exc_info())
        raise
    manager.__exit__(None, None, None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def _executor_class(executor_class: type) -> Iterator[None]:
    """Make Django's ``migrate`` build its executor from ``executor_class`` for a while."""
    previous = django_migrate.MigrationExecutor
    django_migrate.MigrationExecutor = executor_class  # type: ignore[misc]
    try:
        yield
    finally:
        django_migrate.MigrationExecutor = previous  # type: ignore[misc]


def _seconds_text(seconds: float) -> str:
    return f"{seconds:g} s"


class MigrateCommand(DjangoMigrateCommand):
    """Django's ``migrate``, made safe for busy PostgreSQL databases.

    On a PostgreSQL database it prints the migrating backend's pid, runs a watcher that
    applies the blocking action to sessions that block the migration, applies the lock
    timeout, and runs migrations statement by statement. Elsewhere it is Django's command.
    """

    help = DjangoMigrateCommand.help + (
        " On PostgreSQL, pgmigrate ends or shows the sessions that block the migration."
    )

    #: The migration being applied or unapplied, if any.
    current_migration: Any = None

    def handle(self, *args: Any, **options: Any) -> Any:
        using = options["database"]
        if connections[using].vendor != "postgresql":
            return super().handle(*args, **options)

        self.verbosity = options["verbosity"]
        self._output_lock = threading.Lock()
        self._line_open = False
        self.current_migration = None
        lock_timeout = config.lock_timeout()
        backend_pid = pgactivity.pid(using=using)
        self.notice(
            f"pgmigrate: migrating with PostgreSQL backend pid {backend_pid} (database {using!r})"
        )
        watcher = Watcher(
            self,
            using=using,
            backend_pid=backend_pid,
            action=config.blocking_action(),
            interval=config.blocking_action_interval(),
            protected=config.protected(),
            lock_timeout=lock_timeout,
        )
        executor_class = type(
            "PGMigrateExecutor",
            (PGMigrateExecutor,),
            {"statement_by_statement": not config.atomic()},
        )
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(
                    interrupts.interruptible(
                        functools.partial(interrupts.cancel_backend, using, backend_pid)
                    )
                )
                stack.enter_context(
                    migrate_lock(
                        using, wait=config.concurrent_migrate() == "wait", notice=self.notice
                    )
                )
                watcher.start()
                stack.callback(watcher.stop)
                stack.enter_context(connections[using].execute_wrapper(watcher.execute_wrapper))
                if lock_timeout is not None:
                    stack.enter_context(_lock_timeout(lock_timeout, using))
                stack.enter_context(_executor_class(executor_class))
                return super().handle(*args, **options)
        except (Exception, KeyboardInterrupt) as exc:
            error = self._command_error(exc, lock_timeout, using, backend_pid)
            if error is None:
                raise
            if isinstance(exc, KeyboardInterrupt) and not getattr(
                self, "_called_from_command_line", False
            ):
                # call_command callers get the interrupt itself, as Python code expects.
                self.stderr.write(str(error))
                raise
            raise error from exc
        finally:
            watcher.stop()

    def _command_error(
        self,
        exc: BaseException,
        lock_timeout: float | None,
        using: str,
        backend_pid: int,
    ) -> CommandError | None:
        """A clear ``CommandError`` for a lock timeout, a lost connection, an interrupt, or a
        partly applied migration; ``None`` for other errors (raised as they are)."""
        partial = exc if isinstance(exc, PartialMigrationError) else None
        migration = partial.migration if partial else self.current_migration
        where = f"migration {migration.app_label}.{migration.name}" if migration else "migrate"
        returncode = 1
        if isinstance(exc, KeyboardInterrupt) or is_cancelled_by_interrupt(exc):
            name = "SIGTERM" if isinstance(exc, interrupts.Terminated) else "SIGINT (Ctrl-C)"
            returncode = 143 if isinstance(exc, interrupts.Terminated) else 130
            message = (
                f"pgmigrate: {where} interrupted by {name}. The running statement was "
                "cancelled; migrations applied before it stay applied."
            )
        elif is_lock_timeout(exc):
            setting = (
                f"PGMIGRATE_LOCK_TIMEOUT = {_seconds_text(lock_timeout)}"
                if lock_timeout is not None
                else "the server's lock_timeout"
            )
            message = (
                f"pgmigrate: {where} stopped: a statement waited for a lock longer than the "
                f"lock timeout ({setting}). Migrations applied before it stay applied; run "
                "migrate again once the blocking sessions are gone."
            )
        elif is_connection_lost(exc, using):
            message = (
                f"pgmigrate: {where} stopped: the migrating connection (backend pid "
                f"{backend_pid}) was lost: {_first_line(exc)}. Migrations applied before it "
                "stay applied; check the database, then run migrate again."
            )
            with contextlib.suppress(Error):
                connections[using].close()
        elif partial is not None:
            message = "pgmigrate: a migration failed part of the way through."
        else:
            return None
        if partial is not None:
            message += "\n" + partial.report()
        return CommandError(message, returncode=returncode)

    def migration_progress_callback(
        self, action: str, migration: Any = None, fake: bool = False
    ) -> None:
        if action in ("apply_start", "unapply_start"):
            self.current_migration = migration
        with self._output_guard():
            super().migration_progress_callback(action, migration, fake)
            if action in ("apply_start", "unapply_start", "render_start"):
                self._line_open = self.verbosity >= 1
            elif action.endswith("_success"):
                self._line_open = False
        if action in ("apply_success", "unapply_success"):
            self.current_migration = None

    @contextlib.contextmanager
    def _output_guard(self) -> Iterator[None]:
        lock = getattr(self, "_output_lock", None)
        if lock is None:
            yield
            return
        with lock:
            yield

    def notice(self, message: str, *, warning: bool = False) -> None:
        """Print a pgmigrate message (thread-safe; used by watchers and blocking actions)."""
        if self.verbosity < 1:
            return
        with self._output_guard():
            if getattr(self, "_line_open", False):
                self.stdout.write("")
                self._line_open = False
            self.stdout.write(self.style.WARNING(message) if warning else message)
