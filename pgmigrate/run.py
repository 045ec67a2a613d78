"""How pgmigrate applies (and unapplies) the operations of a migration, end to end.

**One transaction per operation.** Each operation of an atomic migration (Django's default)
runs in a transaction of its own that also holds its deferred SQL (the indexes and foreign
keys Django creates at the end of a migration) and its progress record in
``pgmigrate_progress``: "applied" and "recorded" commit together. A lock taken by an
operation is released when it commits, so the application never waits on a table the
migration has finished with. A lock timeout retries the operation's transaction.

**Deferred SQL as in Django.** A later operation of the same migration can rename what a
deferred statement refers to (``RenameField``, ``AlterModelTable``, ``RenameModel``...),
which Django's schema editor applies to the pending statement. So an operation whose deferred
SQL a later operation changes shares its transaction with the operations up to that one:
the names come out exactly as Django makes them.

**Outside a transaction** (``Mode.STATEMENTS``, in ``atomic = False`` migrations: ``RunSQL``
and the ``CONCURRENTLY`` index operations) each statement that can run in a transaction
commits together with the count of committed statements; one that cannot (``CREATE INDEX
CONCURRENTLY``...) is marked in flight first, so that a later run, or a retry, drops what a
cut-short attempt left (an INVALID index) or finds it done. A resume never repeats a
committed statement. ``RunPython`` of an ``atomic = False`` migration runs as Django runs it
(``Mode.AUTOCOMMIT``).

**Backwards** is the same, in reverse order: the migration is first marked unapplied in
``django_migrations`` with all its operations counted as applied in ``pgmigrate_progress``,
then each operation is unapplied and counted down in its own transaction.

With ``PGMIGRATE_ATOMIC = True``, an atomic migration runs in one transaction, as Django runs
it (``apply_in_one_transaction``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

import pgactivity
from django.core.management.base import CommandError
from django.db import DatabaseError, Error, connections
from django.db.backends.ddl_references import Statement
from django.db.migrations.exceptions import IrreversibleError

from pgmigrate import concurrent, sql
from pgmigrate.db import atomic
from pgmigrate.deferred import name_as_renamed
from pgmigrate.errors import (
    CANNOT_RUN_IN_TRANSACTION,
    ROLLED_BACK,
    PartialMigrationError,
    sqlstate,
)
from pgmigrate.progress import (
    BACKWARDS,
    FORWARDS,
    Progress,
    ProgressRecorder,
    statements_digest,
)
from pgmigrate.steps import (
    ForwardSteps,
    Mode,
    Rename,
    Step,
    acts_only_through_sql,
    backward_steps,
    deferred_needs,
    destroys_data,
    is_exempt,
    later_renames,
    mode,
    transaction_end,
)

if TYPE_CHECKING:
    from django.db.backends.base.schema import BaseDatabaseSchemaEditor
    from django.db.migrations import Migration
    from django.db.migrations.state import ProjectState

    from pgmigrate.events import RunEvents
    from pgmigrate.interrupts import Guard
    from pgmigrate.options import RunOptions
    from pgmigrate.retry import LockRetry

#: SQLSTATE of ``duplicate_table`` ("relation ... already exists").
DUPLICATE_TABLE = "42P07"

#: ``client_connection_check_interval`` of the migrating connection (PostgreSQL 14+), in
#: milliseconds: a statement whose client died is cancelled instead of committing later.
CLIENT_CHECK_INTERVAL_MS = 500


def label(migration: Migration) -> str:
    return f"{migration.app_label}.{migration.name}"


def _done_before(step: Step) -> int:
    """The progress count (operations applied) while ``step`` runs."""
    return step.index if step.forwards else step.index + 1


def _done_after(step: Step) -> int:
    return step.index + 1 if step.forwards else step.index


@dataclass
class _Position:
    """The step being run, and the statements it ran (for the failure report)."""

    step: Step
    mode: Mode
    #: Everything the step does goes through SQL on the migrating connection
    #: (``acts_only_through_sql``).
    through_sql: bool = True
    #: Statements of the step that an earlier run committed (skipped now).
    skip: int = 0
    #: Digest of a statement an earlier run started outside a transaction.
    inflight: str | None = None
    #: Statements the step executed so far (``schema_editor.execute`` calls).
    seq: int = 0
    #: Of them, committed (outside a transaction), including the skipped ones.
    committed: int = 0
    #: What a failed statement left in the database, in words.
    leftover: str | None = None
    #: A statement outside a transaction ran to its end, but its count was not recorded.
    unrecorded: bool = False
    #: The step's transaction is committing (its outcome is unknown if that fails).
    committing: bool = False
    #: ``progress.statements_digest`` of the statements seen so far, and the one recorded.
    digest: str | None = None
    saved_digest: str | None = None
    #: The step dropped a foreign key made early from deferred SQL (``_early_fk_renamed``).
    remakes_early_fk: bool = False


class Run:
    """The state of one ``migrate`` run that applying operations needs."""

    def __init__(
        self,
        *,
        using: str,
        options: RunOptions,
        events: RunEvents,
        guard: Guard,
        retry: LockRetry,
        progress: ProgressRecorder,
        notice: Callable[..., None],
    ) -> None:
        self.using = using
        self.options = options
        self.events = events
        self.guard = guard
        self.retry = retry
        self.progress = progress
        self.notice = notice
        self._at: _Position | None = None
        #: Steps found to need running outside a transaction (SQLSTATE 25001).
        self._outside: set[tuple[str, str, int, bool]] = set()
        self._prepared = False
        #: pgmigrate's set-up (``MigrateCommand._start``), run once by ``start``.
        self.starter: Callable[[], None] | None = None
        self.started = False
        #: ``migrate`` runs from the command line (a deploy), not from ``call_command``.
        self.from_command_line = False
        #: Waits until the watcher can look at statements (``Watcher.wait_ready``); called
        #: once, right before the first change, so that the watcher connects while Django
        #: renders the project state.
        self.watcher_ready: Callable[[], None] | None = None
        #: Statements run on the migrating connection (``count_statements``), and their
        #: number when the current transaction or step began.
        self.executed = 0
        self._executed_before = 0
        #: A step of the current transaction or step may act other than through SQL here.
        self._acts_elsewhere = False
        #: Foreign keys made from deferred SQL before later operations rename them.
        self._early_fks: set[str] = set()
        self._check_interval_set = False
        self._record_applied: Callable[[], None] | None = None
        #: Index of the first operation of the transaction being run.
        self._unit_first: int | None = None
        #: Finishing an operation only to unapply it (``unapply_operations``): its first
        #: statement, cut short by an earlier run, stops it if it had changed nothing.
        self._undoing = False

    @property
    def connection(self) -> Any:
        return connections[self.using]

    # Before the first change, after the last -------------------------------------------

    def start(self) -> None:
        """Set pgmigrate up (once), when there is something to apply or settle."""
        if not self.started:
            self.started = True
            if self.starter is not None:
                self.starter()

    def count_statements(
        self, execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any
    ) -> Any:
        """Django ``execute_wrapper`` on the migrating connection: counts its statements."""
        self.executed += 1
        return execute(sql, params, many, context)

    def wait_for_watcher(self) -> None:
        """Wait (once) until the watcher can look at statements (``watcher_ready``): before
        the first change, outside any section where interrupts wait (``Guard.deferred``)."""
        ready, self.watcher_ready = self.watcher_ready, None
        if ready is not None:
            ready()

    def prepare(self, *, progress_table: bool) -> None:
        """Before the run changes anything: wait for the watcher, make sure progress can be
        recorded, and that a statement of a client that died is cancelled rather than
        committed."""
        self.wait_for_watcher()
        if progress_table:
            self.progress.ensure_table()
        if self._prepared:
            return
        self._prepared = True
        if self.connection.pg_version >= 140000:
            with self.connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('client_connection_check_interval', %s, false)",
                    [str(CLIENT_CHECK_INTERVAL_MS)],
                )
            self._check_interval_set = True

    def close(self) -> None:
        """Undo ``prepare``'s session setting (the connection may be used further)."""
        if self._check_interval_set and self.connection.connection is not None:
            self._check_interval_set = False
            with contextlib.suppress(Error), self.connection.cursor() as cursor:
                cursor.execute("RESET client_connection_check_interval")

    # Entry points (pgmigrate.executor) ------------------------------------------------

    def apply_operations(
        self,
        migration: Migration,
        project_state: ProjectState,
        schema_editor: BaseDatabaseSchemaEditor,
        collect_sql: bool = False,
        *,
        record: Callable[[], None] | None = None,
    ) -> ProjectState:
        """``Migration.apply`` for pgmigrate. ``record`` records the migration as applied
        (in the caller's transaction): it is called in the transaction of its last
        operation, so that the migration is recorded exactly when all of it is applied."""
        self._record_applied = record
        self._early_fks.clear()
        if collect_sql:  # pragma: no cover (sqlmigrate calls Migration.apply itself)
            return migration.apply(project_state, schema_editor, collect_sql=True)
        if schema_editor.atomic_migration:
            steps = ForwardSteps(migration, project_state, 0)
            self._run_in_one_transaction(_Lazy(steps, 0), schema_editor)
            return steps.final_state
        saved = self.saved(migration)
        start = saved.done if saved else 0
        with self._editing(schema_editor):
            if saved and saved.mid_operation and saved.direction == BACKWARDS:
                # An earlier run stopped between two statements of an operation it was
                # unapplying: finish unapplying it, then apply it again like the others.
                start -= 1
                steps = ForwardSteps(migration, project_state, start)
                forward = steps[start]
                backward = Step(
                    migration, start, forward.to_state, forward.from_state, forwards=False
                )
                self._run_steps([backward], schema_editor, saved)
                saved = None
            else:
                steps = ForwardSteps(migration, project_state, start)
            self._announce_resume(migration, saved, start)
            self._run_steps(_Lazy(steps, start), schema_editor, saved)
        return steps.final_state

    def unapply_operations(
        self,
        migration: Migration,
        project_state: ProjectState,
        schema_editor: BaseDatabaseSchemaEditor,
        collect_sql: bool = False,
    ) -> ProjectState:
        """``Migration.unapply`` for pgmigrate: the operations that are applied, last first."""
        if collect_sql:  # pragma: no cover (sqlmigrate calls Migration.unapply itself)
            return migration.unapply(project_state, schema_editor, collect_sql=True)
        if schema_editor.atomic_migration:
            steps = backward_steps(migration, project_state, len(migration.operations))
            self._run_in_one_transaction(steps, schema_editor)
            return project_state
        saved = self.saved(migration)
        done = saved.done if saved else len(migration.operations)
        with self._editing(schema_editor):
            if saved and saved.mid_operation and saved.direction == FORWARDS:
                done = self._finish_to_unapply(migration, project_state, schema_editor, saved)
                saved = None
            steps = backward_steps(migration, project_state, done)
            self._run_steps(steps, schema_editor, saved)
        return project_state

    def _finish_to_unapply(
        self,
        migration: Migration,
        project_state: ProjectState,
        schema_editor: BaseDatabaseSchemaEditor,
        saved: Progress,
    ) -> int:
        """An earlier run stopped part of the way through operation ``saved.done + 1`` while
        applying it: finish applying it, so that its reverse (written for the whole
        operation) undoes exactly what it did. Return how many operations are applied.

        When only its first statement ran, outside a transaction, and was cut short before
        it changed anything (a ``CREATE INDEX CONCURRENTLY`` that waited for its lock, a
        ``DROP INDEX CONCURRENTLY`` that had not begun), nothing of the operation is applied:
        it is neither finished nor unapplied (its reverse would fail, or undo what was never
        done)."""
        done = saved.done
        if not saved.statements and self._mode_of(migration, done, True) is not Mode.STATEMENTS:
            # Run as Django runs it (the next forward run runs it again from its start):
            # unapplying it undoes what it left.
            return done + 1
        forward = ForwardSteps(migration, project_state.clone(), done)
        self._undoing = True
        try:
            self._run_steps(_Lazy(forward, done, stop=done + 1), schema_editor, saved)
        except _Untouched:
            self._at = None
            with self.guard.deferred(cancellable=False), atomic(self.using):
                if done:
                    self.progress.save(migration, self.progress.start(migration, done, BACKWARDS))
                else:
                    self.progress.forget([(migration.app_label, migration.name)])
            self.notice(
                f"pgmigrate: operation {done + 1} of {label(migration)} was cut short before "
                "its first statement changed anything: there is nothing of it to unapply"
            )
            return done
        finally:
            self._undoing = False
        return done + 1

    def check_reversible(self, migration: Migration, done: int) -> None:
        """Before anything of ``migration`` is unapplied: its operations 1 to ``done`` must
        be reversible (Django's ``Migration.unapply`` checks the same first).

        Raises:
            IrreversibleError: Naming the first operation that is not.
        """
        for operation in migration.operations[:done]:
            if not operation.reversible:
                raise IrreversibleError(f"Operation {operation} in {migration} is not reversible")

    # The steps --------------------------------------------------------------------------

    def _run_steps(
        self,
        steps: Sequence[Step],
        schema_editor: BaseDatabaseSchemaEditor,
        saved: Progress | None,
    ) -> None:
        """Run ``steps`` in order: in transactions, or statement by statement. ``saved`` is
        the progress an earlier run recorded; when it stopped between two statements of the
        first step, that step resumes after them."""
        resumed = saved if saved is not None and saved.mid_operation else None
        position = 0
        while position < len(steps):
            step = steps[position]
            try:
                step_mode = self._mode(step)
                if step_mode is Mode.TRANSACTION:
                    position = self._run_transaction(steps, position, schema_editor)
                else:
                    self._run_outside(step, step_mode, schema_editor, resumed)
                    position += 1
                resumed = None
                if isinstance(steps, _Lazy):
                    steps.forget_before(position)
                if position < len(steps):
                    # An interrupt that came meanwhile stops the run here. (After the last
                    # step, the executor raises it once the migration is recorded.)
                    self.guard.checkpoint()
            except _RunOutside:
                continue  # the same position again, now outside a transaction
            except _Untouched:
                raise  # not a failure: nothing of the step to finish (_finish_to_unapply)
            except (Exception, KeyboardInterrupt) as exc:  # SystemExit passes as it is
                raise self._failure(step.migration, step.forwards, exc) from exc

    def _mode(self, step: Step) -> Mode:
        return self._mode_of(step.migration, step.index, step.forwards)

    def _mode_of(self, migration: Migration, index: int, forwards: bool) -> Mode:
        if (migration.app_label, migration.name, index, forwards) in self._outside:
            return Mode.AUTOCOMMIT
        return mode(migration, migration.operations[index], forwards)

    def _run_transaction(
        self, steps: Sequence[Step], first: int, schema_editor: BaseDatabaseSchemaEditor
    ) -> int:
        """Run ``steps[first]``, and the later steps that must share its transaction, in one
        transaction with their progress record; retried as a whole on a lock timeout. Return
        the position after the last step run.

        Later steps share the transaction when they change what the pending deferred SQL
        refers to (``_deferred_needs``); when a step deletes data that undoing it cannot
        bring back, the steps after it share it up to the next step that runs outside a
        transaction, so that a failure after it rolls it back, as in Django; and when
        deferred constraints fail at the commit, the transaction is tried again with those
        steps too, as Django would have checked them at the end of the migration."""
        migration = steps[first].migration
        end = self._transactions_end(steps, first)
        until = first + 1
        reached = first

        def attempt() -> int:
            nonlocal until, reached
            schema_editor.deferred_sql.clear()
            position = first
            self._unit_first = steps[first].index
            self._executed_before, self._acts_elsewhere = self.executed, False
            with self.guard.deferred(cancellable=True), atomic(self.using):
                while True:
                    step = steps[position]
                    with (
                        self._running(step, Mode.TRANSACTION),
                        self._exempt(step),
                        self.guard.operation(),
                    ):
                        step.run(schema_editor)
                    position += 1
                    if isinstance(steps, _Lazy):
                        steps.release(first, position - 1)
                    if destroys_data(step, schema_editor.connection):
                        until = end
                    if position < until:
                        continue
                    if not self._deferred_needs(steps, position, schema_editor.deferred_sql):
                        break
                if schema_editor.deferred_sql:  # later_renames renders later states
                    with self._running(step, Mode.TRANSACTION):
                        renames = later_renames(step)
                        _run_deferred_sql(schema_editor, renames, self._early_fks)
                # Not without a statement cancelled to step aside.
                self.retry.aside.check(committing=True)
                self.guard.checkpoint()  # a signal that came meanwhile rolls it back
                self.guard.protect()  # the record and the commit must not be cut in two
                last = step.forwards and step.number == len(migration.operations)
                if last and self._record_applied is not None:
                    self._record_applied()  # django_migrations, with the last operation
                else:
                    self._record(migration, step, statements=0)
                reached = position
                if self._at is not None:
                    self._at.committing = True
            self._at = None
            return position

        def what() -> str:
            step = self._at.step if self._at is not None else steps[first]
            return f"operation {step.number} of {label(migration)}"

        while True:
            try:
                return self.retry.call(attempt, what=what)
            except DatabaseError as exc:
                at = self._at
                code = sqlstate(exc) or ""
                if code == CANNOT_RUN_IN_TRANSACTION and at is not None and not migration.atomic:
                    # The operation runs a statement that cannot run in a transaction (a
                    # custom CONCURRENTLY operation): run it as Django runs it instead.
                    step = at.step
                    key = (migration.app_label, migration.name, step.index, step.forwards)
                    self._outside.add(key)
                    self._at = None
                    raise _RunOutside from exc
                if at is not None and at.committing and code.startswith("23") and reached < end:
                    self.notice(
                        f"pgmigrate: {what()}: a deferred constraint failed at the commit; "
                        f"running operations {steps[first].number} to {steps[end - 1].number} "
                        "in one transaction, as the constraint is checked at the end of the "
                        "migration in Django"
                    )
                    until, self._at = end, None
                    continue
                raise

    def _transactions_end(self, steps: Sequence[Step], first: int) -> int:
        def mode_at(position: int) -> Mode:
            if isinstance(steps, _Lazy):  # by operation: no project state made ahead
                return self._mode_of(steps.migration, steps.start + position, True)
            return self._mode(steps[position])

        return transaction_end(len(steps), first, mode_at)

    def _deferred_needs(self, steps: Sequence[Step], position: int, deferred: list[Any]) -> bool:
        return deferred_needs(steps, position, deferred, self._mode)

    def _run_outside(
        self,
        step: Step,
        step_mode: Mode,
        schema_editor: BaseDatabaseSchemaEditor,
        resumed: Progress | None,
    ) -> None:
        """Run one step outside a transaction; its statements go through ``_execute``."""
        schema_editor.deferred_sql.clear()
        self._executed_before, self._acts_elsewhere = self.executed, False
        in_python = self.guard.operation() if step_mode is Mode.AUTOCOMMIT else nullcontext()
        with self._running(step, step_mode, resumed) as at, self._exempt(step), in_python:
            step.run(schema_editor)
            if at.mode is Mode.STATEMENTS and at.seq < at.skip:
                raise self._not_those_committed(at)  # fewer statements than committed
            if schema_editor.deferred_sql:
                _run_deferred_sql(schema_editor, later_renames(step), self._early_fks)
        with self.guard.deferred(cancellable=False):
            self._record(step.migration, step, statements=0)
        self._at = None

    def _run_in_one_transaction(
        self, steps: Sequence[Step], schema_editor: BaseDatabaseSchemaEditor
    ) -> None:
        """``PGMIGRATE_ATOMIC``: the whole migration in the schema editor's transaction (as
        Django), with the deferred SQL run inside it so that Django records the migration in
        the same transaction."""
        self._acts_elsewhere = False  # (each attempt: its unit is this migration)
        with self._editing(schema_editor):
            for position in range(len(steps)):
                step = steps[position]
                with self._running(step, Mode.TRANSACTION), self._exempt(step):
                    step.run(schema_editor)
                if isinstance(steps, _Lazy):
                    steps.forget_before(position)
            _run_deferred_sql(schema_editor)
        self._at = None

    # Progress ---------------------------------------------------------------------------

    def saved(self, migration: Migration) -> Progress | None:
        """The recorded progress of ``migration``, checked against its file; the migration
        takes the operations the earlier run's plan gave it (``ProgressRecorder.matches``)."""
        saved = self.progress.get(migration.app_label, migration.name)
        if saved is None:
            return None
        planned = len(migration.operations)
        if not self.progress.matches(migration, saved):
            raise CommandError(
                f"pgmigrate: {label(migration)} changed since an earlier run applied its "
                f"operations 1 to {saved.done}: one of them is not the same now, so pgmigrate "
                "cannot tell what is in the database. Restore those operations as they were "
                "(later ones may change) and run migrate again to finish the migration (or "
                "migrate backwards to unapply them), then make your change in a new migration. "
                + _by_hand(migration, f"operations 1 to {saved.done}")
            )
        if len(migration.operations) != planned:
            self.notice(
                f"pgmigrate: {label(migration)} runs with the {len(migration.operations)} "
                f"operations an earlier run's plan gave it, not {planned} (Django's plan adds "
                "a RenameContentType after each RenameModel only when the ContentType model of "
                "django.contrib.contenttypes is there)"
            )
        return saved

    def _announce_resume(self, migration: Migration, saved: Progress | None, start: int) -> None:
        if saved is None:
            return
        total = len(migration.operations)
        if start >= total:
            message = (
                f"pgmigrate: all {total} operations of {label(migration)} were applied by an "
                "earlier run; recording the migration"
            )
        else:
            where = f"operation {start + 1} of {total}"
            if saved.mid_operation and saved.direction == FORWARDS:
                where = f"statement {saved.statements + 1} of {where}"
            message = f"pgmigrate: resuming {label(migration)} at {where}" + (
                f" (operations 1 to {start} were applied by an earlier run)" if start else ""
            )
        self.notice(message)
        self.events.emit(
            "resumed", message, migration=label(migration), operation=min(start + 1, total)
        )

    def _record(self, migration: Migration, step: Step, *, statements: int) -> None:
        """Record that ``step`` is done (in the caller's transaction, if any). Steps that
        ran no statement here and act only through SQL (a database router sent their work
        elsewhere) changed nothing: running them again is harmless, so no record (nor
        table) is made."""
        done = _done_after(step)
        if not step.forwards and done == 0:
            self.progress.forget([(migration.app_label, migration.name)])
            return
        if self.executed == self._executed_before and not self._acts_elsewhere:
            return
        direction = FORWARDS if step.forwards else BACKWARDS
        progress = self.progress.start(migration, done, direction)
        self.progress.save(migration, replace(progress, statements=statements))

    # Statements -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _editing(self, schema_editor: BaseDatabaseSchemaEditor) -> Iterator[None]:
        """Route the schema editor's statements through ``_execute``."""
        original = schema_editor.execute
        schema_editor.execute = functools.partial(self._execute, original)  # type: ignore[method-assign]
        try:
            yield
        finally:
            del schema_editor.execute

    @contextlib.contextmanager
    def _running(
        self, step: Step, step_mode: Mode, resumed: Progress | None = None
    ) -> Iterator[_Position]:
        at = self._at
        if at is None or at.step is not step:
            at = self._at = _Position(step, step_mode, acts_only_through_sql(step, self.using))
            if resumed is not None:
                at.skip = at.committed = resumed.statements
                at.inflight = resumed.inflight
                at.saved_digest = resumed.statements_digest
        # (each time: an attempt run again keeps the position its step failed at)
        self._acts_elsewhere |= not at.through_sql
        self.retry.aside.sql_only = not self._acts_elsewhere
        yield at

    def _execute(self, execute: Callable[..., Any], sql_text: Any, params: Any = ()) -> Any:
        """The schema editor's ``execute`` while pgmigrate runs a step."""
        at = self._at
        if at is None:
            return execute(sql_text, params)
        at.seq += 1
        if self._early_fks:
            self._early_fk_renamed(at, sql_text, getattr(execute, "__self__", None))
        if at.mode is Mode.TRANSACTION:
            return execute(sql_text, params)
        text = str(sql_text)
        if at.mode is Mode.STATEMENTS and at.seq <= at.skip:
            self._skip(at, text)  # committed by an earlier run
            return None
        statement = self._statement(text, params)
        if statement.transactional is not False:
            if at.mode is Mode.AUTOCOMMIT:
                return execute(text, params)  # as Django runs it
            if self._execute_in_transaction(at, execute, text, params, statement):
                return None
        self._execute_alone(at, execute, text, params, statement)
        return None

    def _early_fk_renamed(self, at: _Position, statement: Any, editor: Any) -> None:
        """A later operation's ``alter_field`` drops a foreign key that pgmigrate made
        from deferred SQL before the end of the migration, and makes it again: give the new
        one the name Django's deferred statement would have had (in Django the key does not
        exist yet, so it is neither dropped nor made again)."""
        if not isinstance(statement, Statement) or editor is None:
            return
        name = str(statement.parts.get("name", ""))
        if statement.template == editor.sql_delete_fk and name in self._early_fks:
            at.remakes_early_fk = True
        elif statement.template == editor.sql_create_fk and at.remakes_early_fk:
            name_as_renamed(statement, later_renames(at.step))
            at.remakes_early_fk = False

    def _skip(self, at: _Position, text: str) -> None:
        """Skip a statement an earlier run committed, after checking, once all of them are
        seen, that they are the statements it committed (``statements_digest``)."""
        at.digest = statements_digest(at.digest, text)
        if at.seq == at.skip and at.digest != at.saved_digest:
            raise self._not_those_committed(at)

    @staticmethod
    def _not_those_committed(at: _Position) -> CommandError:
        """The statements of the operation resumed are not those an earlier run committed
        (other statements, or fewer of them)."""
        migration = at.step.migration
        return CommandError(
            f"pgmigrate: the first {at.skip} statements of operation {at.step.number} of "
            f"{label(migration)} are not those an earlier run committed (the migration "
            "changed, or the operation's SQL depends on the database), so pgmigrate cannot "
            "tell where to resume it. Restore the migration file as it was and run migrate "
            "again. "
            + _by_hand(
                migration, f"what those {at.skip} statements and the operations before them did"
            )
        )

    def _statement(self, text: str, params: Any) -> sql.Statement:
        """What the statement is (parameters merged in first, as the server would see it)."""
        if params:
            with contextlib.suppress(Exception):
                text = self.connection.ops.compose_sql(text, params)
        found = sql.parse(text)
        return found[0] if len(found) == 1 else sql.Statement(sql.Kind.UNKNOWN)

    def _execute_in_transaction(
        self,
        at: _Position,
        execute: Callable[..., Any],
        text: str,
        params: Any,
        statement: sql.Statement,
    ) -> bool:
        """Run one statement in a transaction with the count of committed statements. False
        when it turned out that it cannot run in a transaction (nothing was done)."""
        step = at.step

        digest = statements_digest(at.digest, text)

        def attempt() -> None:
            with self.guard.deferred(cancellable=True), atomic(self.using):
                execute(text, params)
                self.retry.aside.check(committing=True)  # not without it, if cancelled
                self.guard.protect()
                self._count_statement(step, at.seq, inflight=None, digest=digest)

        try:
            self.retry.call(attempt, what=self._statement_name(at))
        except DatabaseError as exc:
            if sqlstate(exc) == CANNOT_RUN_IN_TRANSACTION:  # nothing was done
                return False
            raise
        at.committed, at.digest = at.seq, digest
        self.guard.checkpoint()
        return True

    def _execute_alone(
        self,
        at: _Position,
        execute: Callable[..., Any],
        text: str,
        params: Any,
        statement: sql.Statement,
    ) -> None:
        """Run one statement outside a transaction. It is marked in flight first, so that a
        later attempt knows an index of its name is its own (``concurrent.prepare``)."""
        step = at.step
        marker = sql.digest(text)
        resumed = at.inflight == marker and (at.mode is Mode.AUTOCOMMIT or at.seq == at.skip + 1)
        counted = at.seq - 1 if at.mode is Mode.STATEMENTS else 0
        with self.guard.deferred(cancellable=False):
            self._count_statement(step, counted, inflight=marker, digest=at.digest)
        attempts = 0

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            # The clean-up of an earlier attempt (``DROP INDEX CONCURRENTLY``) is part of the
            # attempt: its lock timeout counts as the attempt's, not as a statement retried
            # on its own inside it.
            with self._without_statement_timeout(statement), self.retry.suspended():
                if (resumed or attempts > 1) and concurrent.prepare(self.connection, statement):
                    return  # an earlier attempt did it
                if (
                    resumed
                    and attempts == 1
                    and self._undoing
                    and at.mode is Mode.STATEMENTS
                    and at.skip == 0
                    and concurrent.untouched(self.connection, statement)
                ):
                    raise _Untouched  # to be unapplied: nothing of the operation was done
                execute(text, params)

        try:
            with self.guard.deferred(cancellable=True):
                if statement.kind is sql.Kind.TRANSACTION_CONTROL:
                    attempt()  # it may commit part of its work: once, as Django runs it
                else:
                    self.retry.call(attempt, what=self._statement_name(at))
        except _Untouched:
            raise
        except BaseException as exc:
            # Not cut short by the signal that may have stopped the statement.
            with self.guard.deferred(cancellable=False):
                if (
                    attempts == 1
                    and not resumed
                    and statement.kind is sql.Kind.CREATE_INDEX_CONCURRENTLY
                    and statement.index
                    and sqlstate(exc) == DUPLICATE_TABLE
                ):
                    # An index of its name existed before it ran: not its own, so the next
                    # run must not count it as done (nor drop it) as if it were.
                    self._count_statement(step, counted, inflight=None, digest=at.digest)
                    at.leftover = (
                        f"it built nothing: a relation named {statement.index} existed "
                        "before it ran, and is left as it is"
                    )
                else:
                    at.leftover = self._leftover(statement)
            raise
        by_statement = at.mode is Mode.STATEMENTS
        digest = statements_digest(at.digest, text) if by_statement else None
        try:
            with self.guard.deferred(cancellable=False):
                self._count_statement(step, at.seq if by_statement else 0, None, digest=digest)
        except BaseException:
            # The statement did its work; the progress still says it is in flight.
            at.unrecorded = True
            at.leftover = concurrent.completed(statement, at.seq)
            raise
        at.committed, at.digest = at.seq, digest
        at.inflight = None
        self.guard.checkpoint()

    def _leftover(self, statement: sql.Statement) -> str | None:
        """What a failed non-transactional statement left, in words."""
        try:
            return concurrent.leftovers(self.connection, statement)
        except Exception:  # the connection is gone: say what it may have left
            if statement.concurrent_index and statement.index:
                return (
                    f"it may have left an INVALID index {statement.index}; the next migrate "
                    "drops and rebuilds it"
                )
            return None

    def _count_statement(
        self, step: Step, statements: int, inflight: str | None, *, digest: str | None
    ) -> None:
        migration = step.migration
        direction = FORWARDS if step.forwards else BACKWARDS
        progress = self.progress.start(migration, _done_before(step), direction)
        self.progress.save(
            migration,
            replace(
                progress,
                statements=statements,
                inflight=inflight,
                statements_digest=digest if statements else None,
            ),
        )

    def _statement_name(self, at: _Position) -> str:
        return f"statement {at.seq} of operation {at.step.number} of {label(at.step.migration)}"

    # Statement timeout exemptions -------------------------------------------------------

    @contextlib.contextmanager
    def _exempt(self, step: Step) -> Iterator[None]:
        """Run ``step`` without the statement timeout if its operation is exempt."""
        exempt = self.options.statement_timeout and is_exempt(
            step.operation, self.options.statement_timeout_exempt, step.forwards
        )
        if not exempt:
            yield
            return
        aside = self.retry.aside
        previous, aside.statement_timeout = aside.statement_timeout, None
        try:
            with pgactivity.timeout(None, using=self.using):
                yield
        finally:
            aside.statement_timeout = previous

    @contextlib.contextmanager
    def _without_statement_timeout(self, statement: sql.Statement) -> Iterator[None]:
        if self.options.statement_timeout and statement.concurrent_index:
            with pgactivity.timeout(None, using=self.using):
                yield
        else:
            yield

    # Failures ---------------------------------------------------------------------------

    def _failure(
        self, migration: Migration, forwards: bool, exc: BaseException
    ) -> PartialMigrationError:
        """The report of a step that failed (or of a run stopped between steps), from what is
        committed in ``pgmigrate_progress``."""
        at, self._at = self._at, None
        in_transaction = at is not None and at.mode is Mode.TRANSACTION
        saved = self.progress.get(migration.app_label, migration.name)
        done = saved.done if saved is not None else 0
        return PartialMigrationError(
            migration,
            forwards=forwards,
            done=done,
            failed_index=None if at is None else at.step.index,
            detail=None if at is None else _detail(at, exc),
            shared_from=self._unit_first if in_transaction else None,
            statements=at.committed if at is not None and at.mode is Mode.STATEMENTS else 0,
        )


def _by_hand(migration: Migration, undo: str) -> str:
    """The way out when a check of what an earlier run applied fails although the file is as
    it was: ``--fake`` records a migration without running it, and ``--pgmigrate-restart``
    forgets the progress (both drop the row in ``pgmigrate_progress``)."""
    return (
        "If the file is as it was, finish by hand: apply the rest of the migration yourself "
        f"and record it with `migrate {migration.app_label} {migration.name} --fake`, or undo "
        f"{undo} and run `migrate --pgmigrate-restart` (it forgets the progress of every "
        "half-applied migration) to run it again from its first operation."
    )


def _detail(at: _Position, exc: BaseException) -> str:
    """What happened to the operation at ``at`` when it failed with ``exc``."""
    if at.committing and sqlstate(exc) is None:  # no answer from the server
        return (
            "the connection failed while its transaction committed, so whether it is applied "
            "is unknown here; the next migrate reads it from pgmigrate_progress"
        )
    if at.mode is Mode.TRANSACTION:
        return ROLLED_BACK
    parts = []
    if at.mode is Mode.STATEMENTS:
        if at.committed:
            parts.append(
                f"statements 1 to {at.committed} of it committed and are recorded; the next "
                f"migrate resumes at statement {at.committed + 1}"
                if at.committed > 1
                else "its statement 1 committed and is recorded; the next migrate resumes at "
                "statement 2"
            )
        elif not at.unrecorded:
            parts.append("nothing of it committed")
    else:
        parts.append(
            "it runs outside a transaction, as in Django: what it did before it failed "
            "stays, and the next migrate runs it again from its start"
        )
    if at.leftover:
        parts.append(at.leftover)
    return "; ".join(parts)


def _run_deferred_sql(
    schema_editor: BaseDatabaseSchemaEditor,
    renames: Sequence[Rename] = (),
    early_fks: set[str] | None = None,
) -> None:
    """Run the schema editor's deferred statements now, each once, named as at the end of
    the migration after ``renames`` (``steps.later_renames``); the names of the foreign keys
    made before later operations rename them go to ``early_fks``."""
    while schema_editor.deferred_sql:
        statement = schema_editor.deferred_sql.pop(0)
        if renames:
            name_as_renamed(statement, renames)
            if (
                early_fks is not None
                and isinstance(statement, Statement)
                and statement.template == schema_editor.sql_create_fk
            ):
                early_fks.add(str(statement.parts["name"]))
        schema_editor.execute(statement, None)


class _RunOutside(Exception):
    """Internal: run the current step again, outside a transaction."""


class _Untouched(Exception):
    """Internal: the operation being finished only to be unapplied was cut short before its
    first statement changed anything (``Run._finish_to_unapply``)."""


class _Lazy(Sequence[Step]):
    """Positions ``start`` to ``stop`` of ``ForwardSteps``, as a sequence from 0."""

    def __init__(self, steps: ForwardSteps, start: int, stop: int | None = None) -> None:
        self.steps = steps
        self.migration = steps.migration
        self.start = start
        self.stop = len(steps) if stop is None else stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, position: Any) -> Any:
        return self.steps[self.start + cast(int, position)]

    def forget_before(self, position: int) -> None:
        self.steps.forget_before(self.start + position)

    def release(self, first: int, current: int) -> None:
        self.steps.release(self.start + first, self.start + current)
