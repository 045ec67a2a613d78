"""One ``migrate`` run on PostgreSQL: how its migrations' operations are applied.

In statement-by-statement mode (the default) schema statements run in autocommit, each
committing on its own; operations that ask for a transaction by Django's own rule
(``RunPython``, or any operation with ``atomic=True``) keep one of their own; deferred SQL
(indexes, foreign keys) runs right after the operation that produced it. After each
operation pgmigrate records its progress, so a migration that stops part of the way
through resumes at the operation that failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import pgactivity
from django.core.management.base import CommandError
from django.db import transaction
from django.db.migrations.operations import RunSQL

from pgmigrate.errors import PartialMigrationError
from pgmigrate.progress import ProgressRecorder, fingerprint

if TYPE_CHECKING:
    from django.db.backends.base.schema import BaseDatabaseSchemaEditor
    from django.db.migrations import Migration
    from django.db.migrations.operations.base import Operation
    from django.db.migrations.state import ProjectState

    from pgmigrate.events import RunEvents
    from pgmigrate.interrupts import Guard
    from pgmigrate.options import RunOptions
    from pgmigrate.retry import LockRetry


def wants_transaction(migration: Migration, operation: Operation) -> bool:
    """Django's rule for an operation that must run in a transaction of its own."""
    return bool(operation.atomic or (migration.atomic and operation.atomic is not False))


def label(migration: Migration) -> str:
    return f"{migration.app_label}.{migration.name}"


class _StatementCounter:
    """A Django ``execute_wrapper`` counting the statements that completed."""

    def __init__(self) -> None:
        self.completed = 0

    def __call__(self, execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        self.completed += 1
        return result


def _run_deferred_sql(schema_editor: BaseDatabaseSchemaEditor) -> None:
    while schema_editor.deferred_sql:
        schema_editor.execute(schema_editor.deferred_sql.pop(0))


class Run:
    """The state of one run that the executor needs."""

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

    def is_exempt_from_statement_timeout(self, operation: Operation) -> bool:
        if isinstance(operation, self.options.statement_timeout_exempt):
            return True
        return isinstance(operation, RunSQL) and "concurrently" in str(operation.sql).lower()

    @contextlib.contextmanager
    def _statement_timeout_for(self, operation: Operation) -> Iterator[None]:
        if self.options.statement_timeout and self.is_exempt_from_statement_timeout(operation):
            with pgactivity.timeout(None, using=self.using):
                yield
        else:
            yield

    def _resume_point(self, migration: Migration) -> int:
        saved = self.progress.get(migration.app_label, migration.name)
        if saved is None:
            return 0
        total = len(migration.operations)
        if saved.fingerprint != fingerprint(migration) or saved.total != total:
            raise CommandError(
                f"pgmigrate: {label(migration)} changed since an earlier run applied "
                f"{saved.done} of its {saved.total} operations. Repair the database by hand, "
                "then run migrate with --pgmigrate-restart."
            )
        if saved.done >= total:
            return total
        self.notice(
            f"pgmigrate: resuming {label(migration)} at operation {saved.done + 1} of {total} "
            f"(operations 1 to {saved.done} were applied by an earlier run)"
        )
        self.events.emit(
            "resumed",
            f"pgmigrate: resuming {label(migration)} at operation {saved.done + 1}",
            migration=label(migration),
            operation=saved.done + 1,
        )
        return saved.done

    def apply_operations(
        self,
        migration: Migration,
        project_state: ProjectState,
        schema_editor: BaseDatabaseSchemaEditor,
        collect_sql: bool = False,
    ) -> ProjectState:
        """``Migration.apply`` for pgmigrate: resumable, retrying, one operation at a time."""
        if collect_sql:  # pragma: no cover (sqlmigrate calls Migration.apply itself)
            return migration.apply(project_state, schema_editor, collect_sql=True)
        one_by_one = not schema_editor.atomic_migration
        start = self._resume_point(migration)
        total = len(migration.operations)
        for index, operation in enumerate(migration.operations):
            old_state = project_state.clone()
            operation.state_forwards(migration.app_label, project_state)
            if index < start:
                continue
            in_transaction = one_by_one and wants_transaction(migration, operation)
            record = one_by_one and index + 1 < total  # the last one is recorded by Django
            counter = _StatementCounter()
            try:
                with (
                    self.guard.deferred(cancellable=True),
                    schema_editor.connection.execute_wrapper(counter),
                    self._statement_timeout_for(operation),
                ):
                    self._apply_operation(
                        migration,
                        index,
                        schema_editor,
                        old_state,
                        project_state,
                        in_transaction=in_transaction,
                        record=record and in_transaction,
                    )
            except BaseException as exc:
                if not one_by_one:
                    raise  # one transaction: Django's behaviour, all of it rolled back
                raise PartialMigrationError(
                    migration,
                    index,
                    statements_committed=0 if in_transaction else counter.completed,
                    in_transaction=in_transaction,
                ) from exc
            if record and not in_transaction:
                with self.guard.deferred(cancellable=False):
                    self.progress.save(migration, index + 1)
        if one_by_one:
            # Until Django has recorded the migration, a signal must not cut in.
            self.guard.enter(cancellable=False)
        return project_state

    def _apply_operation(
        self,
        migration: Migration,
        index: int,
        schema_editor: BaseDatabaseSchemaEditor,
        old_state: ProjectState,
        new_state: ProjectState,
        *,
        in_transaction: bool,
        record: bool,
    ) -> None:
        operation = migration.operations[index]

        def attempt() -> None:
            own_transaction = cast(
                contextlib.AbstractContextManager[Any], transaction.atomic(self.using)
            )
            with own_transaction if in_transaction else contextlib.nullcontext():
                operation.database_forwards(
                    migration.app_label, schema_editor, old_state, new_state
                )
                if record:  # in the operation's own transaction: recorded exactly once
                    self.progress.save(migration, index + 1)
            if not schema_editor.atomic_migration:
                _run_deferred_sql(schema_editor)

        if in_transaction:
            what = f"operation {index + 1} of {label(migration)}"
            self.retry.call(attempt, what=what)
        else:
            attempt()  # single statements are retried by the statement wrapper
