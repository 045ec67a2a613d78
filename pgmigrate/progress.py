"""Per-operation progress of migrations, written in the same transaction as the work it counts.

The table ``pgmigrate_progress`` holds one row per migration that is *not* recorded in
``django_migrations`` but has some of its operations applied: how many (``done``: operations
1 to ``done`` are applied), a fingerprint of the migration's operations, and, for an operation
whose statements commit one by one (outside a transaction), how many of its statements
committed (``statements``) and the digest of a statement that may have committed without
being counted (``inflight``, e.g. a ``CREATE INDEX CONCURRENTLY`` cut short).

A migration is thus always in one of two states: recorded in ``django_migrations`` (no row
here), or not recorded with ``done`` of its operations applied (no row: none). The
fingerprint covers the operations that are applied, and ``statements_digest`` the statements
of a part-way operation that committed: editing what has not run yet is allowed.
"""

from __future__ import annotations

import functools
import hashlib
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.management.base import CommandError
from django.db import ProgrammingError, transaction
from django.db.migrations.operations.base import Operation

from pgmigrate import planned
from pgmigrate.db import atomic

TABLE = "pgmigrate_progress"
FORWARDS, BACKWARDS = "forwards", "backwards"

#: The schema of ``TABLE`` (quoted) as the search path finds it when a run starts, else the
#: schema a table would be created in; both NULL when the search path names no schema.
WHERE = (
    "SELECT quote_ident(coalesce(("
    "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.oid = to_regclass(%s)), current_schema())), to_regclass(%s) IS NOT NULL"
)


def create_table(table: str = TABLE) -> str:
    """The ``CREATE TABLE`` of ``table`` (``TABLE``, schema-qualified or not)."""
    return _CREATE_TABLE.format(table=table)


_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS {table} ("
    " app varchar(255) NOT NULL,"
    " name varchar(255) NOT NULL,"
    " done integer NOT NULL,"
    " total integer NOT NULL,"
    " fingerprint varchar(64) NOT NULL,"
    " direction varchar(9) NOT NULL DEFAULT 'forwards',"
    " statements integer NOT NULL DEFAULT 0,"
    " inflight varchar(64),"
    " statements_digest varchar(64),"
    " updated timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (app, name))"
)
_COLUMNS = (
    "app, name, done, total, fingerprint, direction, statements, inflight, statements_digest"
)
CREATE_TABLE = create_table()
_UPSERT = (
    f"INSERT INTO {{table}} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (app, name) DO UPDATE SET done = EXCLUDED.done, total = EXCLUDED.total,"
    " fingerprint = EXCLUDED.fingerprint, direction = EXCLUDED.direction,"
    " statements = EXCLUDED.statements, inflight = EXCLUDED.inflight,"
    " statements_digest = EXCLUDED.statements_digest, updated = now()"
)

Key = tuple[str, str]


def _stable(value: Any) -> str:
    """A text for ``value`` that is the same in every process: Django's migration
    serializer where it can, else a structural fallback (lambdas, local functions).

    Operations and fields are spelled by what decides the schema (``_schema_kwargs``), and
    containers item by item, so that a field inside a list or another operation is too."""
    from django.db.migrations.serializer import serializer_factory  # only when needed
    from django.db.models import Field

    if isinstance(value, Operation):
        name, args, kwargs = value.deconstruct()
        return f"{name}({_stable(list(args))}, {_stable(_schema_kwargs(value, kwargs))})"
    if isinstance(value, Field):
        _, path, args, kwargs = value.deconstruct()
        return f"{path}({_stable(list(args))}, {_stable(_schema_kwargs(value, kwargs))})"
    if isinstance(value, dict):
        items = sorted(f"{_stable(key)}: {_stable(item)}" for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_stable(item) for item in value) + "]"
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(sorted(_stable(item) for item in value)) + "}"
    try:
        serialized: Any = serializer_factory(value).serialize()
        return str(serialized[0])
    except Exception:  # not serializable: e.g. a mock.Mock standing in for an operation, as
        pass  # in Django 4.2's own postgres_tests migrations
    if isinstance(value, functools.partial):
        return f"partial({_stable(value.func)}, {_stable(value.args)}, {_stable(value.keywords)})"
    if isinstance(value, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        return f"{value.__module__}.{value.__qualname__}"
    # Any other object (a callable instance, say): its class, never its address.
    kind = type(value)
    return f"<{kind.__module__}.{kind.__qualname__}>"


def _schema_kwargs(value: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of an operation or field that decide what it does to the
    schema, without the values it only writes into rows while it runs: a migration often
    computes those when it is imported (``default=timezone.now()``, ``uuid.uuid4()``), so
    they differ in every process although its file did not change.

    - A field's ``default`` fills the existing rows while ``AddField``/``AlterField`` runs
      (Django drops the column default after; ``db_default``, which stays, is kept), and
      its ``Field.non_db_attrs`` (``choices``, ``verbose_name``...) are those Django's
      schema editor ignores (``BaseDatabaseSchemaEditor._field_should_be_altered``), except
      ``db_column``, which names the column.
    - ``RunSQL``'s statements without their parameters: the values they bind.

    An edit of one of them in an applied operation changes rows only, as the same edit of an
    applied migration would in Django; the check is for edits that make what is applied
    something else (another column, type, table or statement)."""
    from django.db.migrations import RunSQL  # only when needed
    from django.db.models import Field

    if isinstance(value, Field):
        data_only = {"default", *getattr(value, "non_db_attrs", ())} - {"db_column"}
        return {key: item for key, item in kwargs.items() if key not in data_only}
    if isinstance(value, RunSQL):
        return {
            key: _without_params(item) if key in ("sql", "reverse_sql") else item
            for key, item in kwargs.items()
        }
    return kwargs


def _without_params(sql: Any) -> Any:
    """``RunSQL``'s ``sql``/``reverse_sql`` with each ``(statement, params)`` pair (its
    ``_run_sql``) reduced to the statement."""
    if isinstance(sql, (list, tuple)):
        return [item[0] if _with_params(item) else item for item in sql]
    return sql


def _with_params(item: Any) -> bool:
    return isinstance(item, (list, tuple)) and len(item) == 2


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def fingerprint(migration: Any, done: int | None = None) -> str:
    """A digest of the migration's operations 1 to ``done`` (all by default): each one's
    deconstruction (class, arguments, keyword arguments, as Django's migration writer spells
    them, without the values it only writes into rows: ``_schema_kwargs``), in order."""
    return _fingerprint_of(migration.operations[:done])


def _fingerprint_of(operations: list[Any]) -> str:
    return _digest("\n".join(_stable(operation) for operation in operations))


def statements_digest(previous: str | None, sql: str) -> str:
    """The digest of a statement list, ``previous`` (its statements so far) and one more.

    A statement counts by its SQL text, as its in-flight marker does (``sql.digest``), not by
    its parameters: they are values it writes, which a migration may compute when it is
    imported (``[timezone.now()]``), so they differ in every process although its file did
    not change. (So a list that repeats one statement with other parameters is checked by
    the number of statements only.)"""
    return _digest(f"{previous or ''}\n{sql}")


@dataclass(frozen=True)
class Progress:
    """How far a migration that is not recorded as applied got.

    Attributes:
        done: Operations 1 to ``done`` are applied.
        total: The migration's number of operations.
        fingerprint: ``fingerprint(migration, done)`` when the row was written.
        direction: ``"forwards"`` or ``"backwards"``: the direction of the run that wrote it.
        statements: For an operation whose statements commit one by one, how many of them
            committed: of operation ``done + 1`` forwards, of operation ``done`` backwards.
        inflight: Digest of that operation's next statement when it ran outside a
            transaction and may have committed without being counted.
        statements_digest: ``statements_digest`` of the ``statements`` that committed.
    """

    done: int
    total: int
    fingerprint: str
    direction: str = FORWARDS
    statements: int = 0
    inflight: str | None = None
    statements_digest: str | None = None

    @property
    def mid_operation(self) -> bool:
        """True when an operation stopped between two of its statements."""
        return bool(self.statements or self.inflight)

    def describe(self) -> str:
        """What an earlier run left applied, in words."""
        if self.done == 0:
            applied = "an earlier run applied none of its operations"
        elif self.done == 1:
            applied = "an earlier run applied operation 1"
        else:
            applied = f"an earlier run applied operations 1 to {self.done}"
        applied += f" of {self.total}"
        if self.mid_operation:
            number = self.operation_index + 1
            how = "applying" if self.direction == FORWARDS else "unapplying"
            applied += f", and stopped {how} operation {number} part of the way"
        return applied

    @property
    def operation_index(self) -> int:
        """0-based index of the operation that is part-way (when ``mid_operation``)."""
        return self.done if self.direction == FORWARDS else self.done - 1


class ProgressRecorder:
    """Reads and writes ``pgmigrate_progress`` on one connection."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._known: dict[Key, Progress] | None = None
        self._table_exists = False
        #: Whether the role may create the table (asked once, when it does not exist).
        self._may_create: bool | None = None
        self._fingerprints: dict[tuple[int, int], str] = {}
        self._texts: dict[int, list[str]] = {}
        #: ``TABLE`` qualified by its schema, fixed by the first ``load`` (before anything
        #: is applied): a migration that changes ``search_path`` (``RunSQL("SET
        #: search_path = ...")``) must not move the records, written in its transactions.
        self.table: str | None = None

    def fingerprint(self, migration: Any, done: int) -> str:
        """``fingerprint(migration, done)``; each operation is serialized once per migration
        object (a migration of n operations records n prefixes)."""
        key = (id(migration), done)
        if key not in self._fingerprints:
            texts = self._texts.setdefault(id(migration), [])
            operations = migration.operations[:done]
            texts.extend(_stable(operation) for operation in operations[len(texts) :])
            self._fingerprints[key] = _digest("\n".join(texts[: len(operations)]))
        return self._fingerprints[key]

    def matches(self, migration: Any, saved: Progress) -> bool:
        """Whether operations 1 to ``saved.done`` of ``migration`` are those an earlier run
        applied (its fingerprint). When they are not, but are in the operations another plan
        gives the migration (``planned.variants``: with or without contenttypes'
        ``RenameContentType``), the migration takes those, in place (as the receiver
        inserts its own), so that ``done`` counts the same operations: it resumes as the
        earlier run planned it, and later operations may still have been edited."""
        done = saved.done
        if done <= len(migration.operations) and self.fingerprint(migration, done) == (
            saved.fingerprint
        ):
            return True
        for operations in planned.variants(migration, self.connection.alias):
            if done <= len(operations) and _fingerprint_of(operations[:done]) == (
                saved.fingerprint
            ):
                migration.operations[:] = operations
                self._texts.pop(id(migration), None)  # serialized from the other operations
                self._fingerprints = {
                    key: value
                    for key, value in self._fingerprints.items()
                    if key[0] != id(migration)
                }
                return True
        return False

    def load(self) -> dict[Key, Progress]:
        """All recorded progress (none if the table does not exist)."""
        known: dict[Key, Progress] = {}
        with self.connection.cursor() as cursor:
            if self.table is None:
                cursor.execute(WHERE, [TABLE, TABLE])
                schema, self._table_exists = cursor.fetchone()
                self.table = f"{schema}.{TABLE}" if schema else TABLE
            else:
                cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [self.table])
                self._table_exists = cursor.fetchone()[0]
            if self._table_exists:
                try:
                    cursor.execute(f"SELECT {_COLUMNS} FROM {self.table}")
                except ProgrammingError as exc:
                    raise CommandError(
                        f"pgmigrate: cannot read its table {TABLE}: {str(exc).strip()}. Grant "
                        "the migrating role SELECT, INSERT, UPDATE and DELETE on it (or make it "
                        "its owner)."
                    ) from exc
                for app, name, *values in cursor.fetchall():
                    known[(app, name)] = Progress(*values)
        self._known = known
        return known

    @property
    def known(self) -> dict[Key, Progress]:
        """The recorded progress as last loaded (loading it on first use)."""
        return self._known if self._known is not None else self.load()

    def get(self, app: str, name: str) -> Progress | None:
        return self.known.get((app, name))

    def ensure_table(self) -> None:
        """Before anything is applied: make sure ``pgmigrate_progress`` exists or can be
        made. It is made by the first ``save``, in the transaction of the first operation
        that needs a record, so a database where nothing is recorded never gets it (e.g. one
        that a database router keeps every operation away from).

        Raises:
            CommandError: When the migrating role may not create it (PostgreSQL 15 and
                later no longer grant ``CREATE`` on schema ``public`` to every role).
        """
        self.known  # noqa: B018 (loads, which tells whether the table exists)
        if self._table_exists or self._may_create is not None:
            return
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(has_schema_privilege(current_schema(), 'CREATE'), false)"
            )
            self._may_create = cursor.fetchone()[0]
        if not self._may_create:
            raise CommandError(self._cannot_create("permission denied to create a table"))

    def _create_table(self) -> None:
        try:
            with atomic(self.connection.alias), self.connection.cursor() as cursor:
                cursor.execute(create_table(self._table))
        except ProgrammingError as exc:
            raise CommandError(self._cannot_create(str(exc))) from exc

        def exists() -> None:
            self._table_exists = True

        transaction.on_commit(exists, using=self.connection.alias)

    def _cannot_create(self, error: str) -> str:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT current_user, current_schema()")
            role, schema = cursor.fetchone()
        reason = error.strip().splitlines()[0]
        return (
            f"pgmigrate: cannot create its table {TABLE} in schema {schema!r} ({reason}); "
            "nothing was applied. pgmigrate records in it, in the same transaction as each "
            "operation, which operations of a migration are applied. Have an administrator "
            f'create it once:\n    {CREATE_TABLE};\n    ALTER TABLE {TABLE} OWNER TO "{role}";\n'
            "or set PGMIGRATE_ATOMIC = True to run each atomic migration in one transaction, "
            "as Django does, without it."
        )

    def save(self, migration: Any, progress: Progress) -> None:
        """Write ``progress`` for ``migration`` (in the caller's transaction, if any)."""
        key = (migration.app_label, migration.name)
        if not self._table_exists:
            self._create_table()
        with self.connection.cursor() as cursor:
            cursor.execute(
                _UPSERT.format(table=self._table),
                [
                    *key,
                    progress.done,
                    progress.total,
                    progress.fingerprint,
                    progress.direction,
                    progress.statements,
                    progress.inflight,
                    progress.statements_digest,
                ],
            )
        self._on_commit(key, progress)

    def start(self, migration: Any, done: int, direction: str) -> Progress:
        """The progress of ``migration`` with ``done`` operations applied."""
        return Progress(
            done, len(migration.operations), self.fingerprint(migration, done), direction=direction
        )

    def forget(self, keys: Iterable[Key]) -> None:
        """Drop the progress of these migrations (in the caller's transaction, if any)."""
        keys = [key for key in keys if key in self.known]
        if not keys:
            return
        with self.connection.cursor() as cursor:
            for app, name in keys:
                cursor.execute(
                    f"DELETE FROM {self._table} WHERE app = %s AND name = %s", [app, name]
                )
        for key in keys:
            self._on_commit(key, None)

    def forget_all(self) -> int:
        """Drop all recorded progress (``--pgmigrate-restart``); return how many rows."""
        keys = list(self.load())
        self.forget(keys)
        return len(keys)

    @property
    def _table(self) -> str:
        """``table``, once loaded."""
        self.known  # noqa: B018 (the first load fixes it)
        assert self.table is not None
        return self.table

    def _on_commit(self, key: Key, progress: Progress | None) -> None:
        """Update the cache once the write is committed (never for a rolled-back one)."""

        def update() -> None:
            if progress is None:
                self.known.pop(key, None)
            else:
                self.known[key] = progress

        transaction.on_commit(update, using=self.connection.alias)
