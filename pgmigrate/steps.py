"""The steps of a migration: each operation, in one direction, with the project states around
it, and how pgmigrate runs it (``Mode``).

Django's ``Migration.apply``/``unapply`` (django/db/migrations/migration.py) compute the same
states; pgmigrate keeps them per step so that a step can be run again (a lock-timeout retry)
and so that it can look ahead at what later steps change (see ``tables_changed``).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from django.db.migrations.operations import (
    AddField,
    AlterField,
    AlterModelTable,
    CreateModel,
    DeleteModel,
    RemoveField,
    RenameField,
    RenameModel,
    RunPython,
    RunSQL,
    SeparateDatabaseAndState,
)

from pgmigrate import sql

if TYPE_CHECKING:
    from django.db.backends.base.schema import BaseDatabaseSchemaEditor
    from django.db.migrations import Migration
    from django.db.migrations.operations.base import Operation
    from django.db.migrations.state import ProjectState


class Mode(enum.Enum):
    """How a step runs."""

    #: In a transaction of its own, with its deferred SQL and its progress record.
    TRANSACTION = "transaction"
    #: Outside a transaction, statement by statement: each statement that can run in a
    #: transaction commits together with its progress record; the others (``CREATE INDEX
    #: CONCURRENTLY``...) run on their own and are made idempotent on resume.
    STATEMENTS = "statements"
    #: Outside a transaction, as Django runs it (``RunPython`` of an ``atomic = False``
    #: migration): progress is recorded when the operation ends.
    AUTOCOMMIT = "autocommit"


@dataclass
class Step:
    """One operation run in one direction."""

    migration: Migration
    index: int
    from_state: ProjectState
    to_state: ProjectState
    forwards: bool

    @property
    def operation(self) -> Operation:
        return self.migration.operations[self.index]

    @property
    def number(self) -> int:
        """The operation's 1-based number in its migration."""
        return self.index + 1

    @functools.cached_property
    def tables_changed(self) -> set[str]:
        """``tables_changed(self)``, computed once."""
        return tables_changed(self)

    def run(self, schema_editor: BaseDatabaseSchemaEditor) -> None:
        # Django's RenameModel and RenameIndex swap their names for database_backwards and
        # swap them back only when it succeeds: restore them after a failure, so that a
        # retry (and a later run in this process) sees the operation as written.
        saved = [(leaf, dict(vars(leaf))) for leaf in leaves(self.operation)]
        try:
            self._run(schema_editor)
        except BaseException:
            for leaf, attributes in saved:
                vars(leaf).clear()
                vars(leaf).update(attributes)
            raise

    def _run(self, schema_editor: BaseDatabaseSchemaEditor) -> None:
        app_label = self.migration.app_label
        if self.forwards:
            self.operation.database_forwards(
                app_label, schema_editor, self.from_state, self.to_state
            )
        else:
            self.operation.database_backwards(
                app_label, schema_editor, self.from_state, self.to_state
            )


class ForwardSteps:
    """The steps of ``migration`` forwards from operation ``start`` (0-based), computed on
    demand: the state before operation ``start`` is ``state`` moved forward by the operations
    before it; each later step gets a state of its own (a clone, as Django's ``apply``)."""

    def __init__(self, migration: Migration, state: ProjectState, start: int) -> None:
        self.migration = migration
        for operation in migration.operations[:start]:
            operation.state_forwards(migration.app_label, state)
        self._state = state
        self._steps: dict[int, Step] = {}
        self._next = start

    def __len__(self) -> int:
        return len(self.migration.operations)

    def __getitem__(self, index: int) -> Step:
        if index < self._next and index not in self._steps:
            # Released: compute it again from the nearest step kept before it.
            start = max(key for key in self._steps if key < index)
            for later in [key for key in self._steps if key > start]:
                del self._steps[later]
            self._state, self._next = self._steps[start].to_state, start + 1
        while self._next <= index:
            to_state = self._state.clone()
            self.migration.operations[self._next].state_forwards(
                self.migration.app_label, to_state
            )
            self._steps[self._next] = Step(
                self.migration, self._next, self._state, to_state, forwards=True
            )
            self._state, self._next = to_state, self._next + 1
        return self._steps[index]

    def forget_before(self, index: int) -> None:
        """Release the states of steps before ``index`` (they are done)."""
        for done in [key for key in self._steps if key < index]:
            del self._steps[done]

    def release(self, first: int, current: int) -> None:
        """Release the states of the steps after ``first`` and before ``current``: a
        transaction of many operations keeps only what a retry from ``first`` needs (as
        Django's ``Migration.apply`` keeps one pair of states at a time)."""
        for index in [key for key in self._steps if first < key < current]:
            del self._steps[index]

    @property
    def final_state(self) -> ProjectState:
        """The state after the last operation."""
        while self._next < len(self):
            self[self._next]
        return self._state


def backward_steps(migration: Migration, state: ProjectState, done: int) -> list[Step]:
    """The steps that unapply operations ``done`` to 1, in that order, from ``state`` (the
    state before the migration): Django's ``Migration.unapply`` phase 1."""
    steps = []
    after = state
    for index, operation in enumerate(migration.operations[:done]):
        before, after = after.clone(), after.clone()
        operation.state_forwards(migration.app_label, after)
        steps.append(Step(migration, index, after, before, forwards=False))
    steps.reverse()
    return steps


def leaves(operation: Operation) -> Iterator[Operation]:
    """``operation``, or the database operations a ``SeparateDatabaseAndState`` runs."""
    if isinstance(operation, SeparateDatabaseAndState):
        for inner in operation.database_operations:
            yield from leaves(inner)
    else:
        yield operation


#: A table rename ``("table", old, new)`` or a column rename ``("column", table, old, new)``.
Rename = tuple[str, ...]

#: Operations whose schema editor call renames what deferred SQL refers to (Django's
#: ``alter_field`` and ``alter_db_table`` update the references of pending deferred SQL).
_RENAMING = (RenameField, AlterField, RenameModel, AlterModelTable)


def later_renames(step: Step) -> list[Rename]:
    """The table and column renames that the operations after ``step`` make in the
    database, in order (forwards only). Deferred SQL that runs after ``step`` takes the names
    these give, as it would at the end of the migration in Django."""
    migration = step.migration
    later = migration.operations[step.index + 1 :]
    app_label = migration.app_label
    if not step.forwards or not any(
        _may_rename(leaf, step.to_state, app_label)
        for operation in later
        for leaf in leaves(operation)
    ):
        return []
    renames: list[Rename] = []
    state = step.to_state.clone()
    for operation in later:
        before = state
        for leaf in leaves(operation):
            after = before.clone()
            leaf.state_forwards(app_label, after)
            if isinstance(leaf, _RENAMING):
                renames.extend(_renames(leaf, app_label, before, after))
            before = after
        operation.state_forwards(app_label, state)
    return renames


def _may_rename(leaf: Operation, state: ProjectState, app_label: str) -> bool:
    """Whether ``leaf`` can rename a table or column (``later_renames`` then works out
    which, rendering the models; this is decided on the model states, without). An
    ``AlterField`` changes a column's name only through ``db_column`` or by making a field a
    relation or not (``name`` vs ``name_id``): one that has neither, before or after, in
    ``state``, does not."""
    if not isinstance(leaf, _RENAMING):
        return False
    if not isinstance(leaf, AlterField):
        return True
    model = state.models.get((app_label, leaf.model_name_lower))
    old = model.fields.get(leaf.name) if model is not None else None
    if old is None:
        return True
    fields = [field for field in (leaf.field, old) if field is not None]
    return any(field.db_column or field.is_relation for field in fields)


def _renames(operation: Operation, app_label: str, before: Any, after: Any) -> list[Rename]:
    if isinstance(operation, (RenameField, AlterField)):
        old_name = operation.old_name if isinstance(operation, RenameField) else operation.name
        new_name = operation.new_name if isinstance(operation, RenameField) else operation.name
        old_model = before.apps.get_model(app_label, operation.model_name)
        new_model = after.apps.get_model(app_label, operation.model_name)
        old_column = old_model._meta.get_field(old_name).column
        new_column = new_model._meta.get_field(new_name).column
        if old_column != new_column:
            return [("column", old_model._meta.db_table, old_column, new_column)]
        return []
    if isinstance(operation, RenameModel):
        old_table = before.apps.get_model(app_label, operation.old_name)._meta.db_table
        new_table = after.apps.get_model(app_label, operation.new_name)._meta.db_table
    else:
        name = cast(AlterModelTable, operation).name
        old_table = before.apps.get_model(app_label, name)._meta.db_table
        new_table = after.apps.get_model(app_label, name)._meta.db_table
    return [("table", old_table, new_table)] if old_table != new_table else []


def acts_only_through_sql(step: Step, using: str) -> bool:
    """Whether everything ``step`` does to the world goes through SQL on its connection:
    Django's own operations, and a ``RunPython`` that the database router keeps away from
    ``using`` (Django then does not call its code). So a step that ran no statement there
    changed nothing, and running it again is harmless."""
    from django.db import router

    for leaf in leaves(step.operation):
        if isinstance(leaf, RunPython):
            if router.allow_migrate(using, step.migration.app_label, **leaf.hints):
                return False
        elif not type(leaf).__module__.startswith(_DJANGO_OPERATIONS):
            return False
    return True


#: Modules of Django's own operations (a subclass elsewhere may do anything).
_DJANGO_OPERATIONS = ("django.db.migrations.operations.", "django.contrib.postgres.operations")


def _concurrent_index_operations() -> tuple[type, ...]:
    try:
        from django.contrib.postgres.operations import (
            AddIndexConcurrently,
            RemoveIndexConcurrently,
        )
    except ImportError:  # pragma: no cover (no PostgreSQL driver: not a PostgreSQL run)
        return ()
    return (AddIndexConcurrently, RemoveIndexConcurrently)


def _sql_texts(operation: RunSQL, forwards: bool) -> list[str]:
    statements = operation.sql if forwards else operation.reverse_sql
    if statements is None or statements == RunSQL.noop:
        return []
    if isinstance(statements, str):
        return [statements]
    return [item[0] if isinstance(item, (list, tuple)) else item for item in statements]


def _statements(operation: Operation, forwards: bool) -> list[sql.Statement]:
    """The parsed statements of the ``RunSQL`` operations that ``operation`` runs."""
    return [
        statement
        for leaf in leaves(operation)
        if isinstance(leaf, RunSQL)
        for text in _sql_texts(leaf, forwards)
        for statement in sql.parse(text)
    ]


def leaves_session_state(migration: Migration, forwards: bool) -> bool:
    """Whether an operation of ``migration`` leaves state in the session for the operations
    that run after it (``RunSQL("SET search_path = ...")``, a temporary table): resumed in a
    new session, those would run without it. Django runs such an atomic migration in one
    transaction, so pgmigrate does too (``in_one_transaction``)."""
    operations = migration.operations[:-1] if forwards else migration.operations[1:]
    return any(
        statement.keeps_session_state
        for operation in operations
        for statement in _statements(operation, forwards)
    )


def in_one_transaction(
    migration: Migration, forwards: bool, *, atomic_setting: bool, half_applied: bool
) -> bool:
    """Whether ``migration`` runs in Django's one transaction: an atomic migration with
    ``PGMIGRATE_ATOMIC`` (``atomic_setting``) or whose operations leave session state for
    later ones (``leaves_session_state``), unless an earlier run left it half applied
    (``half_applied``: it resumes)."""
    return bool(
        migration.atomic
        and (atomic_setting or leaves_session_state(migration, forwards))
        and not half_applied
    )


def mode(migration: Migration, operation: Operation, forwards: bool) -> Mode:
    """How pgmigrate runs ``operation`` of ``migration``.

    An atomic migration (Django's default) runs each operation in a transaction of its own.
    In a migration with ``atomic = False``, Django runs operations outside a transaction
    unless they say ``atomic=True`` (``RunPython(atomic=True)``); pgmigrate keeps that for
    ``RunPython``, runs ``RunSQL`` and the ``CONCURRENTLY`` index operations statement by
    statement (their statements are the same in every run, so a resume can skip the ones
    that committed), and gives other operations (schema changes) a transaction of their own.
    An operation that mixes both kinds runs as Django runs it.
    """
    if migration.atomic or operation.atomic:
        if any(
            statement.kind is sql.Kind.TRANSACTION_CONTROL
            for statement in _statements(operation, forwards)
        ):
            # Its COMMIT would end the transaction it runs in (Django's, or pgmigrate's
            # with its progress record): as Django without one, run again on the next run.
            return Mode.AUTOCOMMIT
        return Mode.TRANSACTION
    found = list(leaves(operation))
    if any(isinstance(leaf, RunPython) and not leaf.atomic for leaf in found):
        return Mode.AUTOCOMMIT
    by_statement = (RunSQL, *_concurrent_index_operations())
    if not any(isinstance(leaf, by_statement) for leaf in found):
        return Mode.TRANSACTION
    if not all(isinstance(leaf, by_statement) for leaf in found):
        return Mode.AUTOCOMMIT  # mixed with operations whose SQL depends on the database
    statements = _statements(operation, forwards)
    if any(statement.kind is sql.Kind.TRANSACTION_CONTROL for statement in statements):
        return Mode.AUTOCOMMIT  # the statements manage transactions themselves
    if any(statement.sets_for_transaction for statement in statements):
        # Outside a transaction (Django) a SET LOCAL changes nothing, or, in a string of
        # statements, the rest of the string; in pgmigrate's transaction it would also
        # apply to the progress record (a search_path without its table, a read-only one).
        return Mode.AUTOCOMMIT
    if any(statement.keeps_session_state for statement in statements):
        # A resume in a new session would lose it: one transaction when all can run in
        # one, else as Django.
        if all(statement.transactional for statement in statements):
            return Mode.TRANSACTION
        return Mode.AUTOCOMMIT
    return Mode.STATEMENTS


#: Operations whose effect undoing them cannot bring back (forwards, backwards).
_DESTRUCTIVE_OPERATIONS = ((RemoveField, DeleteModel), (AddField, CreateModel))


def destroys_data(step: Step, connection: Any) -> bool:
    """Whether ``step`` deletes data that undoing it cannot bring back: it is irreversible,
    removes a field or a model (adds one, backwards), alters a field's column lossily
    (``alters_lossily``), or runs SQL that drops a table or a column, deletes or truncates.
    ``connection``: the database's (column types depend on it)."""
    operation = step.operation
    if step.forwards and not operation.reversible:
        return True
    destructive = _DESTRUCTIVE_OPERATIONS[0 if step.forwards else 1]
    if any(isinstance(leaf, destructive) for leaf in leaves(operation)):
        return True
    if alters_lossily(step, connection):
        return True
    return any(statement.destroys_data for statement in _statements(operation, step.forwards))


def alters_lossily(step: Step, connection: Any) -> bool:
    """Whether an ``AlterField`` of ``step`` changes its column so that undoing it cannot
    bring the data back: to another type (the cast back does not restore what the cast
    lost: 1.25 as an integer is 1, as a float again 1.0), or to ``NOT NULL`` (Django fills
    its NULLs with the default first, and undoing keeps the values). The step's states are
    rendered (running it rendered them)."""
    app_label = step.migration.app_label
    for leaf in leaves(step.operation):
        if not isinstance(leaf, AlterField):
            continue
        try:
            old, new = (
                cast(Any, state)
                .apps.get_model(app_label, leaf.model_name)
                ._meta.get_field(leaf.name)
                for state in (step.from_state, step.to_state)
            )
        except LookupError:
            return True  # not found in a state: cannot tell
        if old.db_type(connection) != new.db_type(connection) or (old.null and not new.null):
            return True
    return False


def is_exempt(operation: Operation, exempt: tuple[type, ...], forwards: bool) -> bool:
    """Whether ``operation`` runs without the statement timeout: it (or an operation it
    wraps) is of an exempt class, or is a ``RunSQL`` that builds or drops an index
    concurrently."""
    for leaf in leaves(operation):
        if isinstance(leaf, exempt):
            return True
        if isinstance(leaf, RunSQL) and any(
            statement.concurrent_index
            for text in _sql_texts(leaf, forwards)
            for statement in sql.parse(text)
        ):
            return True
    return False


def _tables(state: ProjectState, app_label: str, model_name: str) -> set[str]:
    """The tables of a model of ``state``: its own and its auto-created M2M tables."""
    model = cast(Any, state).apps.get_model(app_label, model_name)
    tables = {model._meta.db_table}
    for field in model._meta.local_many_to_many:
        through = field.remote_field.through  # type: ignore[union-attr]
        if through._meta.auto_created:
            tables.add(through._meta.db_table)
    return tables


def _changed_models(before: ProjectState, after: ProjectState) -> set[tuple[str, str]]:
    changed = set()
    for key in before.models.keys() | after.models.keys():
        old, new = before.models.get(key), after.models.get(key)
        if old is None or new is None or old != new:
            changed.add(key)
    return changed


def _state_pairs(step: Step) -> Iterator[tuple[ProjectState, ProjectState]]:
    """(state, state) pairs whose difference the step makes in the database."""
    yield step.from_state, step.to_state
    operation = step.operation
    if isinstance(operation, SeparateDatabaseAndState):
        state = step.to_state if not step.forwards else step.from_state
        for inner in operation.database_operations:
            after = state.clone()
            inner.state_forwards(step.migration.app_label, after)
            yield state, after
            state = after


def tables_changed(step: Step) -> set[str]:
    """The tables of the models that ``step`` creates, alters, renames or deletes, under
    their names both before and after it."""
    tables: set[str] = set()
    for before, after in _state_pairs(step):
        for app_label, model_name in _changed_models(before, after):
            for state in (before, after):
                if (app_label, model_name) in state.models:
                    tables |= _tables(state, app_label, model_name)
    return tables


def references_any(statement: Any, tables: set[str]) -> bool:
    """Whether a deferred statement (a Django ``Statement``, or plain SQL) may refer to one
    of ``tables``; plain SQL is assumed to."""
    references_table = getattr(statement, "references_table", None)
    if references_table is None:
        return True
    return any(references_table(table) for table in tables)


def transaction_end(count: int, first: int, mode_at: Callable[[int], Mode]) -> int:
    """How far a transaction opened for step ``first`` of ``count`` may last: the position
    of the first later step that runs outside a transaction (``mode_at(position)``), or
    ``count``."""
    for position in range(first + 1, count):
        if mode_at(position) is not Mode.TRANSACTION:
            return position
    return count


class Steps(Protocol):
    """Steps by position: a list, or steps made on demand (``ForwardSteps``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> Step: ...


def deferred_needs(
    steps: Steps, position: int, deferred: Sequence[Any], mode_of: Callable[[Step], Mode]
) -> bool:
    """Whether a step from ``position`` on, up to the next one that runs outside a
    transaction (``mode_of``), changes a table that pending ``deferred`` SQL refers to:
    Django's schema editor then renames or drops what it refers to, so pgmigrate runs those
    steps in the same transaction, the deferred SQL after them (``pgmigrate.run``)."""
    if not deferred:
        return False
    for later in range(position, len(steps)):
        step = steps[later]
        if mode_of(step) is not Mode.TRANSACTION:
            return False
        tables = step.tables_changed
        if tables and any(references_any(statement, tables) for statement in deferred):
            return True
    return False
