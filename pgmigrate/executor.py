"""Statement-by-statement migrations.

Django runs a migration inside one transaction, so a lock taken by an early statement is held
until the last statement commits, while later statements wait for other locks. pgmigrate runs
schema statements in autocommit instead, each committing on its own. Operations that ask for a
transaction by Django's own rule (``RunPython`` and ``RunSQL`` in an atomic migration, or with
``atomic=True``) keep one of their own. Deferred SQL (indexes, foreign keys) runs right after
the operation that produced it, so that the operation is complete before the next one starts.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.migrations.executor import MigrationExecutor

from pgmigrate.errors import PartialMigrationError

if TYPE_CHECKING:
    from django.db.backends.base.schema import BaseDatabaseSchemaEditor
    from django.db.migrations import Migration
    from django.db.migrations.operations.base import Operation
    from django.db.migrations.state import ProjectState


def wants_transaction(migration: Migration, operation: Operation) -> bool:
    """Django's rule for an operation that must run in a transaction of its own."""
    return bool(operation.atomic or (migration.atomic and operation.atomic is not False))


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


def apply_statement_by_statement(
    migration: Migration,
    project_state: ProjectState,
    schema_editor: BaseDatabaseSchemaEditor,
    collect_sql: bool = False,
) -> ProjectState:
    """Apply ``migration``'s operations one by one outside a migration-wide transaction.

    Raises ``PartialMigrationError`` (caused by the original error) when an operation fails.
    """
    if collect_sql:  # sqlmigrate: nothing runs, so keep Django's behaviour
        return migration.apply(project_state, schema_editor, collect_sql=True)
    connection = schema_editor.connection
    for index, operation in enumerate(migration.operations):
        old_state = project_state.clone()
        operation.state_forwards(migration.app_label, project_state)
        in_transaction = wants_transaction(migration, operation)
        counter = _StatementCounter()
        try:
            with connection.execute_wrapper(counter):
                with (
                    transaction.atomic(connection.alias)
                    if in_transaction
                    else contextlib.nullcontext()
                ):
                    operation.database_forwards(
                        migration.app_label, schema_editor, old_state, project_state
                    )
                _run_deferred_sql(schema_editor)
        except Exception as exc:
            schema_editor.deferred_sql.clear()
            raise PartialMigrationError(
                migration,
                index,
                statements_committed=0 if in_transaction else counter.completed,
                in_transaction=in_transaction,
            ) from exc
    return project_state


class PGMigrateExecutor(MigrationExecutor):
    """A ``MigrationExecutor`` that applies migrations statement by statement."""

    statement_by_statement = True

    def apply_migration(
        self,
        state: ProjectState,
        migration: Migration,
        fake: bool = False,
        fake_initial: bool = False,
    ) -> ProjectState:
        if not self.statement_by_statement:
            return super().apply_migration(state, migration, fake=fake, fake_initial=fake_initial)
        # Django opens the schema editor with ``atomic=migration.atomic`` and then calls
        # ``migration.apply``: hand it a copy without the migration-wide transaction whose
        # ``apply`` runs operations one by one.
        runner = copy.copy(migration)
        runner.atomic = False
        runner.apply = functools.partial(apply_statement_by_statement, migration)  # type: ignore[method-assign]
        return super().apply_migration(state, runner, fake=fake, fake_initial=fake_initial)
