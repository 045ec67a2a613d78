"""``MigrateCommand``: Django's ``migrate`` with a watcher that handles blocking sessions."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pgactivity
import pglock
from django.core.management.base import CommandError
from django.core.management.commands import migrate as django_migrate
from django.db import Error, OperationalError, connections
from django.db.migrations.executor import MigrationExecutor

from pgmigrate import interrupts, options, own, pooling
from pgmigrate.aside import StepAside
from pgmigrate.errors import (
    PartialMigrationError,
    add_note,
    chain,
    first_line,
    is_connection_lost,
    is_lock_timeout,
    migrate_error,
    sqlstate,
)
from pgmigrate.events import RunEvents
from pgmigrate.executor import PGMigrateExecutor
from pgmigrate.liveline import LiveLine
from pgmigrate.migrate_lock import migrate_lock
from pgmigrate.progress import ProgressRecorder
from pgmigrate.retry import LockRetry
from pgmigrate.run import Run
from pgmigrate.text import printable
from pgmigrate.watcher import Watcher

#: Django's own ``migrate`` command, kept before pgmigrate patches it.
DjangoMigrateCommand = django_migrate.Command
#: The line Django's ``migrate`` leaves open until its ``OK`` (``migration_progress_callback``),
#: by action: a long statement's progress follows it (``pgmigrate.liveline``).
OPEN_LINES = {
    "apply_start": "  Applying {}...",
    "unapply_start": "  Unapplying {}...",
    "render_start": "  Rendering model states...",
}


@contextlib.contextmanager
def _keeping_the_error(
    manager: contextlib.AbstractContextManager[Any], using: str
) -> Iterator[None]:
    """Enter ``manager`` (``pglock.timeout``, ``pgactivity.timeout``); if the block fails,
    restoring the timeout neither hides the original error (a database error) nor opens a
    new connection when the migrating one is gone (the setting went with it)."""
    manager.__enter__()
    try:
        yield
    except BaseException:
        if connections[using].connection is not None:
            with contextlib.suppress(Error):
                manager.__exit__(*sys.exc_info())
        raise
    manager.__exit__(None, None, None)


_runs = threading.local()


def _executor(connection: Any, progress_callback: Any = None) -> Any:
    """Build the executor of Django's ``migrate``: pgmigrate's while this thread runs
    pgmigrate, Django's otherwise (so a plain ``migrate`` elsewhere is unaffected)."""
    run = getattr(_runs, "current", None)
    if run is None:
        return MigrationExecutor(connection, progress_callback)
    executor = PGMigrateExecutor(connection, progress_callback)
    executor.run = run
    return executor


@contextlib.contextmanager
def _executor_for(run: Run) -> Iterator[None]:
    """Make Django's ``migrate`` (in this thread) apply migrations through ``run``."""
    django_migrate.MigrationExecutor = _executor  # type: ignore[misc]
    previous, _runs.current = getattr(_runs, "current", None), run
    try:
        yield
    finally:
        _runs.current = previous


#: SQLSTATE ``read_only_sql_transaction``: a hot standby, or ``default_transaction_read_only``.
READ_ONLY_TRANSACTION = "25006"


def _cannot_connect(exc: BaseException, using: str) -> CommandError | None:
    """A one-line ``CommandError`` (also an instance of the driver's error) naming the
    database, when ``exc`` is a failure to connect to it (Django's first query connects;
    the connection is still not open)."""
    if isinstance(exc, OperationalError) and connections[using].connection is None:
        return migrate_error(
            f"pgmigrate: cannot connect to database {using!r}: {first_line(exc)}. Nothing was "
            "migrated.",
            exc,
        )
    return None


def _applies_nothing(opts: dict[str, Any]) -> bool:
    """``migrate --plan``, ``--check`` and ``--prune`` apply no migration: Django's command
    runs them as it is, without pgmigrate's set-up or its lock."""
    return bool(opts.get("plan") or opts.get("check_unapplied") or opts.get("prune"))


def _interrupt_in(exc: BaseException | None) -> KeyboardInterrupt | None:
    """The Ctrl-C/SIGTERM behind ``exc`` (itself, or in its causes), if any."""
    return next((e for e in chain(exc) if isinstance(e, KeyboardInterrupt)), None)


def _same_migration(one: Any, other: Any) -> bool:
    return other is not None and (one.app_label, one.name) == (other.app_label, other.name)


class MigrateCommand(DjangoMigrateCommand):
    """Django's ``migrate``, made safe for busy PostgreSQL databases.

    On a PostgreSQL database it prints the migrating backend's pid, runs a watcher that
    applies the blocking action to sessions that block the migration, applies the lock and
    statement timeouts (with retries), and runs migrations statement by statement, resuming
    one that stopped part of the way through. Elsewhere it is Django's command.
    """

    help = DjangoMigrateCommand.help + (
        " On PostgreSQL, pgmigrate ends or shows the sessions that block the migration."
    )

    #: The migration being applied or unapplied, if any.
    current_migration: Any = None
    #: The events of the current run (``pgmigrate.events.RunEvents``), on PostgreSQL.
    events: RunEvents | None = None
    #: Where the watcher shows a long statement's progress, once pgmigrate is set up.
    _live: LiveLine | None = None

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        options.add_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> Any:
        if any(opts.get(flag) for flag in ("lock_plan", "ci", "json")):
            # Plans only: none of the set-up below (imported here: only --lock-plan needs it).
            from pgmigrate.lockplan import command as lockplan_command

            return lockplan_command.handle(self, opts)
        using = opts["database"]
        if connections[using].vendor != "postgresql" or _applies_nothing(opts):
            return super().handle(*args, **opts)

        self.verbosity = opts["verbosity"]
        self._connection_lost = False
        self._output_lock = threading.Lock()
        self._line_open = False
        self.current_migration = None
        try:
            run_options = options.RunOptions.from_command(opts)
        except CommandError:
            if not opts.get("skip_checks"):
                # Django 4.2 runs the system checks in handle (5.0+: before it): report the
                # setting's check ID first, as Django would.
                self.check(databases=[using])
            raise
        if connections[using].in_atomic_block:
            # Called inside the caller's transaction: nothing commits before it does, so each
            # migration runs in one transaction (a savepoint), as in Django.
            run_options = dataclasses.replace(run_options, atomic=True)
        self.events = events = RunEvents(
            self, database=using, backend_pid=None, log_queries=run_options.log_queries
        )
        guard = interrupts.Guard()
        retry = LockRetry(
            retries=run_options.lock_retries,
            base_delay=run_options.lock_retry_delay,
            max_delay=run_options.lock_retry_max_delay,
            events=events,
            notice=self.notice,
            sleep=guard.sleep,
            aside=StepAside(enabled=run_options.step_aside),
            lock_timeout=run_options.lock_timeout,
            checkpoint=guard.checkpoint,
        )
        self._run = run = Run(
            using=using,
            options=run_options,
            events=events,
            guard=guard,
            retry=retry,
            progress=ProgressRecorder(connections[using]),
            notice=self.notice,
        )
        run.from_command_line = getattr(self, "_called_from_command_line", False)
        self._watcher: Watcher | None = None
        try:
            with contextlib.ExitStack() as stack:
                # Django's handle checks its arguments, loads the graph and prints the plan
                # first; pgmigrate's set-up waits until the executor has something to do.
                run.starter = functools.partial(self._start, stack, run)
                stack.enter_context(_executor_for(run))
                result = super().handle(*args, **opts)
            events.status = "applied"
            return result
        except (Exception, KeyboardInterrupt) as exc:
            guard.reset()
            error, status = self._command_error(exc, run_options, using, events.backend_pid)
            events.status = status
            events.migration_finished(status)
            if error is None:
                raise
            interrupt = _interrupt_in(exc)
            from_command_line = getattr(self, "_called_from_command_line", False)
            if interrupt is not None and not from_command_line:
                # call_command callers get the interrupt itself, as Python code expects.
                self.stderr.write(str(error))
                raise interrupt from exc
            original = next(e for e in chain(exc) if not isinstance(e, PartialMigrationError))
            if (
                interrupt is None
                and not from_command_line
                and not isinstance(error, type(original))
            ):
                # Its class cannot be combined with CommandError: Python code gets the error
                # itself, with the report as a note.
                add_note(original, str(error))
                raise original  # noqa: B904 (it keeps its own cause)
            raise error from exc
        finally:
            if self._watcher is not None:
                self._watcher.stop()
            self._finish(events, run_options)

    def _new_watcher(self, run: Run, backend_pid: int) -> Watcher:
        """The run's watcher of ``backend_pid`` (its thread started: it connects and prepares
        its queries)."""
        run_options = run.options
        self._watcher = watcher = Watcher(
            self,
            using=run.using,
            backend_pid=backend_pid,
            action=run_options.action,
            interval=run_options.interval,
            protected=run_options.protected,
            step_aside=run.retry.aside,
            live_line=self._live,
        )
        watcher.direct = pooling.talks_directly(run.using, backend_pid)
        watcher.start()
        return watcher

    def _start(self, stack: contextlib.ExitStack, run: Run) -> None:
        """pgmigrate's set-up, once the executor has something to apply or settle: the
        backend pid, signal handling, the one-migrate-at-a-time lock, recorded progress, the
        watcher, the timeouts. ``stack`` undoes it all when ``handle`` ends."""
        using, run_options = run.using, run.options
        connection = connections[using]
        backend_pid = pgactivity.pid(using=using)
        pooling.ensure_one_session(using, backend_pid)  # before anything is taken or set
        self.notice(
            f"pgmigrate: migrating with PostgreSQL backend pid {backend_pid} (database {using!r})",
            status=True,
        )
        run.events.backend_pid = backend_pid
        self._live = LiveLine(
            self.stdout, lock=self._output_lock, verbosity=self.verbosity, notice=self.notice
        )
        # It connects and prepares its queries while the rest is set up and Django renders
        # the project state (``Run.watcher_ready``). Not earlier: a migrate with nothing to
        # apply (and Django's own tests, which mock the executor) opens no connection of
        # pgmigrate's, and through a pooler the pooling check comes first.
        watcher = self._new_watcher(run, backend_pid)
        stack.callback(watcher.stop)
        # The process's other sessions are never ended (``pgmigrate.own``).
        stack.enter_context(own.tracking(watcher.process_sessions, using))
        stack.enter_context(
            interrupts.interruptible(
                run.guard, functools.partial(interrupts.cancel_backend, using, backend_pid)
            )
        )
        stack.enter_context(
            migrate_lock(using, wait=run_options.wait_for_other_migrate, notice=self.notice)
        )
        self._prepare_progress(run.progress, run_options)
        lock_timeout = options.effective_lock_timeout(run_options, connection)
        for warning in (
            options.too_short_to_act(run_options, lock_timeout),
            options.retries_without_timeout(run_options, lock_timeout),
        ):
            if warning:
                self.notice(warning, warning=True)
        stack.enter_context(connection.execute_wrapper(run.retry.statement_wrapper(connection)))
        stack.enter_context(connection.execute_wrapper(watcher.execute_wrapper))
        stack.enter_context(connection.execute_wrapper(run.guard.execute_wrapper))
        stack.enter_context(connection.execute_wrapper(functools.partial(self._note_lost, using)))
        stack.enter_context(connection.execute_wrapper(run.count_statements))
        stack.callback(run.close)
        if run_options.lock_timeout is not None:
            stack.enter_context(
                _keeping_the_error(pglock.timeout(run_options.lock_timeout, using=using), using)
            )
        run.retry.lock_timeout = watcher.lock_timeout = lock_timeout
        if run_options.statement_timeout is not None:
            stack.enter_context(
                _keeping_the_error(
                    pgactivity.timeout(run_options.statement_timeout, using=using), using
                )
            )
        run.retry.aside.statement_timeout = options.effective_statement_timeout(
            run_options, connection
        )
        # Waited for right before the first change (``Run.prepare``): statements before it
        # (reading what is applied) are watched as soon as the watcher is ready.
        run.watcher_ready = watcher.wait_ready

    def _note_lost(
        self, using: str, execute: Any, sql: Any, params: Any, many: bool, context: Any
    ) -> Any:
        """Django ``execute_wrapper``: note when a statement fails because the connection
        is gone, at once (Django may reconnect before the error reaches ``handle``)."""
        try:
            return execute(sql, params, many, context)
        except Error as exc:
            if is_connection_lost(exc, using):
                self._connection_lost = True
            raise

    def _prepare_progress(self, progress: ProgressRecorder, run_options: Any) -> None:
        """Load recorded progress; forget it with ``--pgmigrate-restart``."""
        if run_options.restart:
            forgotten = progress.forget_all()
            self.notice(
                f"pgmigrate: --pgmigrate-restart: forgot the progress of {forgotten} "
                "half-applied migration(s)"
            )
        else:
            progress.load()

    def _finish(self, events: RunEvents, run_options: Any) -> None:
        lines = events.summary_lines()
        if lines:
            self.notice("pgmigrate summary:\n" + "\n".join(lines))
        if run_options.report_path:
            try:
                events.write_report(run_options.report_path)
            except OSError as exc:  # must not hide or change the run's outcome
                self.stderr.write(
                    f"pgmigrate: could not write the report to {run_options.report_path!r}: "
                    f"{printable(exc)}"
                )

    def _command_error(
        self, exc: BaseException, run_options: Any, using: str, backend_pid: int | None
    ) -> tuple[CommandError | None, str]:
        """A clear ``CommandError`` (and the run's status) for a failed run: a lock timeout,
        a lost connection, an interrupt, or a migration that failed. ``None`` for errors that
        are raised as they are (pgmigrate's own ``CommandError``, errors outside migrations).

        For a migration's error it is a ``MigrateError``: also an instance of that error's
        class, so ``call_command`` callers catch a ``DatabaseError`` as with Django."""
        if isinstance(exc, CommandError):
            return None, "failed"
        partial = next((e for e in chain(exc) if isinstance(e, PartialMigrationError)), None)
        original = next(e for e in chain(exc) if not isinstance(e, PartialMigrationError))
        if not self._run.started and (error := _cannot_connect(original, using)) is not None:
            return error, "failed"
        migration = partial.migration if partial else self.current_migration
        where = f"migration {migration.app_label}.{migration.name}" if migration else "migrate"
        returncode = 1
        interrupt = _interrupt_in(exc)
        if interrupt is not None:
            terminated = isinstance(interrupt, interrupts.Terminated)
            returncode, status = (143, "terminated") if terminated else (130, "interrupted")
            name = "SIGTERM" if terminated else "SIGINT (Ctrl-C)"
            message = f"pgmigrate: {where} interrupted by {name}."
        elif is_lock_timeout(exc):
            status = "lock_timeout"
            lock_timeout = run_options.lock_timeout
            source = (
                "--lock-timeout"
                if "lock_timeout" in run_options.overrides
                else "PGMIGRATE_LOCK_TIMEOUT ="
            )
            setting = (
                f"{source} {lock_timeout:g} s"
                if lock_timeout is not None
                else "the server's lock_timeout"
            )
            if run_options.lock_retries:
                setting += f", {run_options.lock_retries + 1} attempts"
            message = (
                f"pgmigrate: {where} stopped: a statement waited for a lock longer than the "
                f"lock timeout ({setting}). Run migrate again once the blocking sessions are gone."
            )
        elif sqlstate(exc) == READ_ONLY_TRANSACTION:
            status = "failed"
            message = (
                f"pgmigrate: {where} stopped: database {using!r} is read-only "
                f"({first_line(original)}): it is a hot standby, or default_transaction_read_only "
                "is on. Run migrate against the primary."
            )
        elif self._connection_lost or is_connection_lost(exc, using):
            status = "connection_lost"
            message = (
                f"pgmigrate: {where} stopped: the migrating connection"
                + (f" (backend pid {backend_pid})" if backend_pid is not None else "")
                + f" was lost: {first_line(original)}. Check the database, then run "
                "migrate again."
            )
            with contextlib.suppress(Error):
                connections[using].close()
        elif migration is not None:
            status = "failed"
            message = f"pgmigrate: {where} failed" + (
                "." if partial else f": {type(original).__name__}: {first_line(original)}"
            )
        else:
            return None, "failed"
        if partial is not None:
            message += "\n" + partial.report()
        elif migration is not None and run_options.atomic and migration.atomic:
            message += (
                " It ran in one transaction, which was rolled back; migrations applied before "
                "it stay applied."
            )
        else:
            message += " Migrations applied before stay applied."
        if interrupt is not None:
            return CommandError(message, returncode=returncode), status
        return migrate_error(message, original, returncode), status

    def migration_progress_callback(
        self, action: str, migration: Any = None, fake: bool = False
    ) -> None:
        events = self.events
        if action in ("apply_start", "unapply_start"):
            # The same migration again, not finished meanwhile: run again whole (in one
            # transaction, after a lock timeout or a step out of the lock queue). Its events
            # and figures go on from its first start.
            again = _same_migration(migration, self.current_migration)
            self.current_migration = migration
            if events is not None and not again:
                events.migration_started(f"{migration.app_label}.{migration.name}")
        with self._output_guard():
            if self._live is not None:
                self._live.erase()
            super().migration_progress_callback(action, migration, fake)
            if action in ("apply_start", "unapply_start", "render_start"):
                self._line_open = self.verbosity >= 1
            elif action.endswith("_success"):
                self._line_open = False
            if self._live is not None:
                opened = OPEN_LINES.get(action, "").format(migration)
                self._live.prefix = opened if self._line_open else ""
        if action in ("apply_success", "unapply_success"):
            self.current_migration = None
            if events is not None:
                status = "faked" if fake else {"apply_success": "applied"}.get(action, "unapplied")
                watcher = getattr(self, "_watcher", None)
                if watcher is not None:
                    watcher.settle()  # its lock wait, told by a look still in flight
                events.migration_finished(status)

    @contextlib.contextmanager
    def _output_guard(self) -> Iterator[None]:
        lock = getattr(self, "_output_lock", None)
        if lock is None:
            yield
            return
        with lock:
            yield

    def notice(self, message: str, *, warning: bool = False, status: bool = False) -> None:
        """Print a pgmigrate message (thread-safe; used by watchers and blocking actions).
        A ``status`` line (the backend pid, printed by every run) goes to stderr, so that
        the output of a run without incident is Django's, line for line."""
        if self.verbosity < 1:
            return
        with self._output_guard():
            if self._live is not None:
                self._live.erase()
                self._live.prefix = ""
            if getattr(self, "_line_open", False):
                self.stdout.write("")
                self._line_open = False
            style = self.style.WARNING  # pyright: ignore[reportAttributeAccessIssue]
            message = printable(message, keep="\n")  # no terminal escapes from the database
            if status:
                self.stderr.write(message, style_func=str)
            else:
                self.stdout.write(style(message) if warning else message)

    def event(self, event: str, message: str, **fields: Any) -> None:
        """Emit a pgmigrate event (log record + signal), e.g. from a custom blocking action."""
        if self.events is not None:
            if self._live is not None:
                self._live.clear()  # a log handler may print on the same terminal
            self.events.emit(event, message, **fields)
