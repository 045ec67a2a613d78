"""The lock plan of the pending migrations: each operation's statements, what they lock on the
live database, for how long, who is in their way now, and the rules they break.

The migrations are those ``migrate`` would apply (``MigrationExecutor.migration_plan``, the
targets worked out as Django's ``migrate`` does). Each operation's SQL is collected as
``sqlmigrate`` collects it (a schema editor with ``collect_sql=True``: nothing runs; Django's
``Migration.apply``), operation by operation, and its deferred SQL (foreign keys, indexes) is
shown under it, as pgmigrate runs it with the operation that deferred it (``pgmigrate.run``).
``RunPython`` is shown as Python code, its locks unknown. Nothing is applied; only the catalog
is read.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.management.base import CommandError
from django.db import connections
from django.db.migrations.exceptions import AmbiguityError
from django.db.migrations.operations import RunPython

from pgmigrate import config, steps
from pgmigrate.deferred import name_as_renamed
from pgmigrate.errors import first_line
from pgmigrate.lockplan import holders as holders_module
from pgmigrate.lockplan import rules, sizes
from pgmigrate.lockplan.catalog import Catalog
from pgmigrate.lockplan.locks import search_path_after
from pgmigrate.lockplan.model import StatementEffect
from pgmigrate.progress import FORWARDS, Progress, ProgressRecorder

if TYPE_CHECKING:
    from django.db.migrations import Migration
    from django.db.migrations.state import ProjectState

#: ``classify(sql, catalog)``: the statements of ``sql`` and what each does.
Classifier = Callable[[str, Catalog], list[StatementEffect]]

#: How pgmigrate runs an operation (``steps.Mode``), in words for the plan.
TRANSACTION_WORDS = {
    steps.Mode.TRANSACTION: "its own transaction",
    steps.Mode.STATEMENTS: "no transaction: statement by statement",
    steps.Mode.AUTOCOMMIT: "no transaction, as Django runs it",
}


@dataclass
class PlannedStatement:
    """One statement of an operation, or its Python code (``effect`` None)."""

    sql: str
    effect: StatementEffect | None
    #: Deferred SQL of the operation (Django runs it at the end of the migration, pgmigrate
    #: with the operation).
    deferred: bool = False
    sizes: dict[str, sizes.RelationSize] = field(default_factory=dict)
    estimate: sizes.Estimate | None = None
    holders: list[holders_module.Holder] = field(default_factory=list)
    verdicts: list[rules.Verdict] = field(default_factory=list)


@dataclass
class PlannedOperation:
    """One operation of a pending migration."""

    number: int
    description: str
    #: ``"sql"``, ``"python"`` (RunPython) or ``"none"`` (state only: no SQL).
    kind: str
    transaction: str
    statements: list[PlannedStatement] = field(default_factory=list)
    #: Applied by an earlier run that stopped part of the way (``pgmigrate_progress``).
    applied: bool = False
    #: Its first statements an earlier run committed one by one before it stopped: not run
    #: again (``pgmigrate.run``: the statements that commit one by one).
    committed: int = 0
    #: The dotted name of RunPython's code.
    code: str | None = None
    #: The numbers of the first and last operations of the transaction it shares with
    #: others (None: a transaction of its own, or none).
    shares: tuple[int, int] | None = None


@dataclass
class PlannedMigration:
    app_label: str
    name: str
    atomic: bool
    operations: list[PlannedOperation] = field(default_factory=list)
    #: What an earlier run left of it (``Progress.describe``), if anything.
    progress: str | None = None

    @property
    def label(self) -> str:
        return f"{self.app_label}.{self.name}"


@dataclass
class LockPlan:
    """The lock plan of database ``database`` (an alias)."""

    database: str
    server_version: str
    migrations: list[PlannedMigration]
    #: The rules in force (``rules.Setting`` by ID).
    settings: dict[str, rules.Setting]

    def statements(self) -> Iterator[tuple[PlannedMigration, PlannedOperation, PlannedStatement]]:
        for migration in self.migrations:
            for operation in migration.operations:
                for statement in operation.statements:
                    yield migration, operation, statement

    @property
    def broken(self) -> list[tuple[PlannedMigration, PlannedOperation, rules.Verdict]]:
        """Every rule broken, in plan order."""
        return [
            (migration, operation, verdict)
            for migration, operation, statement in self.statements()
            for verdict in statement.verdicts
        ]

    @property
    def failed(self) -> bool:
        """Whether a rule at error level is broken (and not allowed)."""
        return any(verdict.fails for _, _, verdict in self.broken)


def pending(executor: Any, app_label: str | None, migration_name: str | None) -> list[Any]:
    """The plan ``migrate [app_label] [migration_name]`` would run: ``(migration,
    backwards)`` pairs, the targets worked out as Django's ``migrate`` does (its
    ``handle``). Raises ``CommandError`` as ``migrate`` does for an unknown app or
    migration, and for a plan that unapplies migrations (the lock plan is forwards only)."""
    loader = executor.loader
    conflicts = loader.detect_conflicts()
    if conflicts:
        names = "; ".join(f"{', '.join(found)} in {app}" for app, found in conflicts.items())
        raise CommandError(
            f"Conflicting migrations detected; multiple leaf nodes in the migration graph: "
            f"({names}).\nTo fix them run 'python manage.py makemigrations --merge'"
        )
    if app_label is not None:
        try:
            apps.get_app_config(app_label)
        except LookupError as exc:
            raise CommandError(str(exc)) from exc
        if app_label not in loader.migrated_apps:
            raise CommandError(f"App '{app_label}' does not have migrations.")
    if app_label is not None and migration_name is not None:
        if migration_name == "zero":
            targets = [(app_label, None)]
        else:
            try:
                migration = loader.get_migration_by_prefix(app_label, migration_name)
            except AmbiguityError as exc:
                raise CommandError(
                    f"More than one migration matches '{migration_name}' in app "
                    f"'{app_label}'. Please be more specific."
                ) from exc
            except KeyError as exc:
                raise CommandError(
                    f"Cannot find a migration matching '{migration_name}' from app '{app_label}'."
                ) from exc
            target = (app_label, migration.name)
            if target not in loader.graph.nodes and target in loader.replacements:
                target = loader.replacements[target].replaces[-1]
            targets = [target]
    elif app_label is not None:
        targets = [key for key in loader.graph.leaf_nodes() if key[0] == app_label]
    else:
        targets = loader.graph.leaf_nodes()
    plan = executor.migration_plan(targets)
    backwards = [migration for migration, backwards in plan if backwards]
    if backwards:
        names = ", ".join(f"{m.app_label}.{m.name}" for m in backwards)
        raise CommandError(
            f"pgmigrate: --lock-plan plans migrations forwards only; this target unapplies "
            f"{names}. Plan the forward migrations (no target, or a later one)."
        )
    return plan


class Planner:
    """Builds the ``LockPlan`` of database ``using`` with ``classify``."""

    def __init__(
        self,
        using: str,
        classify: Classifier,
        *,
        policy: holders_module.Policy,
        settings: dict[str, rules.Setting],
        allowed: dict[str, frozenset[str]],
    ) -> None:
        self.using = using
        self.classify = classify
        self.policy = policy
        self.settings = settings
        self.allowed = allowed
        self.catalog = Catalog(using)
        #: The catalog the next statement resolves names with: ``search_path`` as the
        #: statements before it leave it on the migrating connection.
        self.path = self.catalog
        #: Relations created earlier in the plan (schema-qualified).
        self.created: set[str] = set()
        #: Existing relations renamed earlier in the plan: new name -> name in the catalog.
        self.renamed: dict[str, str] = {}
        #: Columns added, dropped, renamed or changed earlier in the plan
        #: (``StatementEffect.alters``).
        self.altered: set[str] = set()

    def plan(self, executor: Any, migrations: Sequence[Any]) -> LockPlan:
        """The lock plan of ``migrations`` (``pending``'s pairs), from ``executor``'s
        project state with the applied migrations."""
        connection = connections[self.using]
        progress = ProgressRecorder(connection)
        progress.load()  # reads pgmigrate_progress if it exists; creates nothing
        # The state migrate starts from (Django's MigrationExecutor.migrate, 4.2 to 6.0).
        state = executor._create_project_state(with_applied_migrations=True)
        planned: list[PlannedMigration] = []
        for migration, _ in migrations:
            saved = self._saved(progress, migration)
            # As migrate runs it (``PGMigrateExecutor._one_transaction``).
            one = steps.in_one_transaction(
                migration,
                True,
                atomic_setting=config.atomic(),
                half_applied=progress.get(migration.app_label, migration.name) is not None,
            )
            item, state = self._migration(migration, state, saved, one_transaction=one)
            planned.append(item)
        result = LockPlan(
            database=self.using,
            server_version=_server_version(connection),
            migrations=planned,
            settings=self.settings,
        )
        self._measure(result)
        return result

    @staticmethod
    def _saved(progress: ProgressRecorder, migration: Migration) -> Progress | None:
        saved = progress.get(migration.app_label, migration.name)
        if saved is None or saved.direction != FORWARDS:
            return None
        if not progress.matches(migration, saved):
            return None  # migrate reports it; the plan shows every operation
        return saved

    def _migration(
        self,
        migration: Migration,
        state: ProjectState,
        saved: Progress | None,
        *,
        one_transaction: bool = False,
    ) -> tuple[PlannedMigration, ProjectState]:
        """Plan ``migration`` from ``state``; return it and the state after it."""
        item = PlannedMigration(
            migration.app_label,
            migration.name,
            migration.atomic,
            progress=saved.describe() if saved is not None else None,
        )
        done = saved.done if saved is not None else 0
        committed = saved.statements if saved is not None and saved.mid_operation else 0
        forward = steps.ForwardSteps(migration, state, 0)
        connection = connections[self.using]
        #: The operations that share the open transaction (pgmigrate.run), and the
        #: position its last operation can be at least (a step that destroys data keeps it
        #: open up to the next step that runs outside a transaction).
        unit: list[PlannedOperation] = []
        until = len(migration.operations) if one_transaction else 0
        with connection.schema_editor(collect_sql=True, atomic=False) as editor:
            for index in range(len(migration.operations)):
                step = forward[index]
                planned = self._operation(
                    step,
                    editor,
                    applied=index < done,
                    committed=committed if index == done else 0,
                    one_transaction=one_transaction,
                )
                item.operations.append(planned)
                forward.forget_before(index)  # one pair of states at a time, as Django
                if planned.applied or _mode(step) is not steps.Mode.TRANSACTION:
                    self._deferred(step, editor, planned)  # run with the operation
                    continue
                unit.append(planned)
                if steps.destroys_data(step, editor.connection):
                    until = max(until, _transactions_end(migration, index))
                pending = editor.deferred_sql
                if index + 1 < until or steps.deferred_needs(forward, index + 1, pending, _mode):
                    continue
                self._deferred(step, editor, planned)
                _share(unit, words=not one_transaction)
                unit = []
                self.path = self.path.transaction_ended()
            editor.deferred_sql.clear()
        return item, forward.final_state

    def _operation(
        self,
        step: steps.Step,
        editor: Any,
        *,
        applied: bool,
        committed: int = 0,
        one_transaction: bool = False,
    ) -> PlannedOperation:
        operation = step.operation
        mode = steps.mode(step.migration, operation, forwards=True)
        transaction = TRANSACTION_WORDS[mode]
        if one_transaction:
            transaction = "the migration's transaction (PGMIGRATE_ATOMIC)"
        python = [leaf for leaf in steps.leaves(operation) if isinstance(leaf, RunPython)]
        planned = PlannedOperation(
            number=step.number,
            description=operation.describe(),
            kind="python" if python else "sql",
            transaction=transaction,
            applied=applied,
            committed=committed,
        )
        if python:
            code = python[0].code
            name = getattr(code, "__qualname__", None) or type(code).__name__
            planned.code = f"{getattr(code, '__module__', '?')}.{name}"
        if applied:
            return planned
        if python:
            # Python code is never run to collect SQL (it would change data).
            planned.statements.append(PlannedStatement(f"RunPython {planned.code}", None))
            return planned
        if not operation.reduces_to_sql:
            planned.statements.append(_not_sql(operation.describe()))
            return planned
        before, pending = len(editor.collected_sql), len(editor.deferred_sql)
        try:
            step.run(editor)
        except Exception as exc:  # SQL that Django writes from the database as it is then
            del editor.deferred_sql[pending:]
            planned.statements.append(_unwritable(operation.describe(), exc))
            return planned
        # One text per statement pgmigrate counts (each schema editor execute).
        texts = [text for text in editor.collected_sql[before + committed :] if text.strip()]
        alone = mode is not steps.Mode.TRANSACTION
        for text in texts:
            planned.statements.extend(self._classified(text, deferred=False, alone=alone))
        if not planned.statements and len(editor.deferred_sql) == pending:
            planned.kind = "none"
        return planned

    def _deferred(self, step: steps.Step, editor: Any, planned: PlannedOperation) -> None:
        """Plan the pending deferred SQL under ``planned`` (``step``'s operation), where
        pgmigrate runs it: named as at the end of the migration (``pgmigrate.run``)."""
        deferred = list(editor.deferred_sql)
        editor.deferred_sql.clear()
        if not deferred:
            return
        renames = steps.later_renames(step)
        alone = _mode(step) is not steps.Mode.TRANSACTION
        for statement in deferred:
            name_as_renamed(statement, renames)
            planned.statements.extend(self._classified(str(statement), deferred=True, alone=alone))
        if planned.kind == "none":
            planned.kind = "sql"

    def _classified(self, text: str, *, deferred: bool, alone: bool) -> list[PlannedStatement]:
        """The statements of ``text``, classified with ``search_path`` as the statements
        before it leave it; ``alone``: it runs outside a transaction (it commits, unless it
        opens a transaction block)."""
        try:
            effects = self.classify(text, self.path)
        except Exception as exc:  # a statement it trips on is unknown, not the plan's end
            effects = [
                StatementEffect(
                    sql=text,
                    kind="unclassified",
                    known=False,
                    notes=(f"the classifier failed: {type(exc).__name__}: {first_line(exc)}",),
                )
            ]
        self.path = search_path_after(text, self.path)
        if alone and not self.path.in_block:
            self.path = self.path.transaction_ended()
        found = [PlannedStatement(effect.sql, effect, deferred=deferred) for effect in effects]
        for statement in found:
            effect = statement.effect
            assert effect is not None
            changed = [
                name
                for name in effect.assumes
                if name in self.created or name in self.renamed or name in self.altered
            ]
            if effect.known and changed:
                effect = statement.effect = _judged_before(effect, changed)
            self.altered.update(effect.alters)
            for name in [*effect.creates, *(lock.relation for lock in effect.locks)]:
                if name in self.created:
                    statement.sizes[name] = sizes.new_relation(name)
            self.created.update(effect.creates)
            renamed = _renamed(effect)
            if renamed is not None:
                old, new = renamed
                if old in self.created:
                    self.created.add(new)  # as new under its new name
                else:
                    self.renamed[new] = self.renamed.get(old, old)
        return found

    def _measure(self, plan: LockPlan) -> None:
        """Sizes, estimates, holders and verdicts of every statement, from one read of the
        sizes and one of ``pg_locks``."""
        oids: dict[str, int] = {}
        for _, _, statement in plan.statements():
            effect = statement.effect
            if effect is None:
                continue
            names = {lock.relation for lock in effect.locks} | {*effect.rewrites, *effect.scans}
            for name in names - statement.sizes.keys():
                relation = self._relation(name)
                if relation is not None:
                    oids[name] = relation.oid
        measured = sizes.read(self.using, oids.values())
        live = holders_module.read(self.using, oids.values())
        for migration, _, statement in plan.statements():
            effect = statement.effect
            if effect is not None:
                for name, oid in oids.items():
                    if name not in statement.sizes and oid in measured and _touches(effect, name):
                        statement.sizes[name] = measured[oid]
                statement.holders = self._holders(statement, effect, live, oids)
            statement.estimate = sizes.estimate(effect, statement.sizes)
            allowed = self.allowed.get(migration.label, frozenset())
            statement.verdicts = rules.judge(effect, statement.sizes, self.settings, allowed)
        for migration in plan.migrations:
            shared: dict[tuple[int, int], list[PlannedStatement]] = {}
            for operation in migration.operations:
                if operation.shares is not None:
                    shared.setdefault(operation.shares, []).extend(operation.statements)
            for statements in shared.values():
                held_until_commit(statements)

    def _holders(
        self,
        statement: PlannedStatement,
        effect: StatementEffect,
        live: list[dict[str, Any]],
        oids: dict[str, int],
    ) -> list[holders_module.Holder]:
        """Who holds or awaits a lock that conflicts with one of ``effect``'s, once per
        session (on the table, not again on its indexes); none on relations the plan
        creates before ``statement``."""
        found: list[holders_module.Holder] = []
        seen: set[tuple[int | None, str | None]] = set()
        for lock in effect.locks:
            oid = oids.get(lock.relation)
            size = statement.sizes.get(lock.relation)
            if oid is None or (size is not None and size.new):
                continue
            for holder in holders_module.conflicting(
                live, oid, lock.relation, lock.mode, self.policy
            ):
                if (holder.pid, holder.gid) not in seen:
                    seen.add((holder.pid, holder.gid))
                    found.append(holder)
        return found

    def _relation(self, name: str) -> Any:
        """The catalog's relation ``name`` (schema-qualified) is, or will be once renamed
        earlier in the plan (None: none)."""
        schema, _, relname = self.renamed.get(name, name).rpartition(".")
        return self.catalog.relation(relname, schema or None)


def _unwritable(description: str, exc: Exception) -> PlannedStatement:
    """The stand-in for an operation whose SQL Django could not write now: Django reads the
    catalog for some of it (constraint and index names), which an earlier pending migration
    changes first. ``sqlmigrate`` has the same limit."""
    reason = f"{type(exc).__name__}: {first_line(exc)}"
    text = f"-- {description}: SQL unknown until the migrations before it run ({reason})"
    effect = StatementEffect(
        sql=text,
        kind="unwritten SQL",
        known=False,
        notes=(f"Django could not write its SQL before the earlier migrations run: {reason}",),
    )
    return PlannedStatement(text, effect)


def _judged_before(effect: StatementEffect, changed: list[str]) -> StatementEffect:
    """``effect`` made unknown: it was judged on ``changed`` (relations, columns) as the
    catalog shows them now, but an earlier statement of the plan creates, renames or
    changes them first. A ``DROP INDEX CONCURRENTLY`` of an index the plan creates waits
    for older transactions, as for any index."""
    return dataclasses.replace(
        effect,
        known=False,
        locks=(),
        creates=(),
        rewrites=(),
        scans=(),
        changes=frozenset(),
        waits_for_snapshots=effect.kind == "DROP INDEX CONCURRENTLY",
        notes=(
            f"an earlier statement of the plan creates, renames or changes {', '.join(changed)}:"
            " the catalog shows it as it is before, what this statement does then is unknown",
        ),
    )


def _not_sql(description: str) -> PlannedStatement:
    """The stand-in for an operation that says it cannot be written as SQL
    (``Operation.reduces_to_sql = False``; ``sqlmigrate`` prints "MIGRATION NOW PERFORMS
    OPERATION THAT CANNOT BE WRITTEN AS SQL"): it acts on the database all the same, with
    locks unknown. It is not run to find out."""
    text = f"-- {description}: an operation that cannot be written as SQL"
    effect = StatementEffect(
        sql=text,
        kind="operation that cannot be written as SQL",
        known=False,
        notes=("reduces_to_sql = False: it acts on the database in ways SQL cannot show",),
    )
    return PlannedStatement(text, effect)


def _mode(step: steps.Step) -> steps.Mode:
    return steps.mode(step.migration, step.operation, forwards=True)


def _transactions_end(migration: Migration, index: int) -> int:
    """As far as a transaction opened for operation ``index`` can last (``pgmigrate.run``);
    by operation: no project state is made ahead."""
    operations = migration.operations
    return steps.transaction_end(
        len(operations),
        index,
        lambda later: steps.mode(migration, operations[later], forwards=True),
    )


def _share(unit: list[PlannedOperation], *, words: bool) -> None:
    """Mark the operations of ``unit`` (more than one) as sharing a transaction, and with
    ``words`` say so: the locks each takes are held until the last one's commit."""
    if len(unit) < 2:
        return
    for operation in unit:
        operation.shares = (unit[0].number, unit[-1].number)
        if words:
            operation.transaction = (
                f"one transaction with operations {unit[0].number} to {unit[-1].number}: "
                "locks held until it commits"
            )


def held_until_commit(statements: Sequence[PlannedStatement]) -> None:
    """Give each estimate of ``statements`` (those of one transaction, in order) the time
    the transaction goes on after it: its locks are held through the later statements'
    work (None once one of them takes an unknown time)."""
    after: float | None = 0.0
    for statement in reversed(statements):
        estimate = statement.estimate
        if estimate is None:
            continue
        statement.estimate = dataclasses.replace(estimate, after=after)
        if after is not None:
            after = None if estimate.seconds is None else after + estimate.seconds


#: ``RenameStmt.renameType`` of the statements that rename a relation (``ALTER TABLE``,
#: ``ALTER INDEX``, ``ALTER SEQUENCE``, ``ALTER VIEW`` ... ``RENAME TO``).
_RELATION_RENAMES = frozenset(
    {"OBJECT_TABLE", "OBJECT_INDEX", "OBJECT_SEQUENCE", "OBJECT_VIEW", "OBJECT_MATVIEW"}
)


def _renamed(effect: StatementEffect) -> tuple[str, str] | None:
    """The relation ``effect``'s statement renames and its new name, both schema-qualified
    (``ALTER TABLE ... RENAME TO``, as ``RenameModel`` writes it), or None."""
    if not effect.known:
        return None
    from pglast import parser  # as pgmigrate.sql: imported when needed

    try:
        (raw,) = json.loads(parser.parse_sql_json(effect.sql)).get("stmts", [])
    except (parser.ParseError, ValueError):
        return None
    body = raw["stmt"].get("RenameStmt")
    if body is None or body.get("renameType") not in _RELATION_RENAMES or "newname" not in body:
        return None
    relname = body.get("relation", {}).get("relname")
    # The classifier's lock on it names it with its schema.
    named = {lock.relation for lock in effect.locks if lock.relation.rpartition(".")[2] == relname}
    if len(named) != 1:
        return None
    old = named.pop()
    schema, _, _ = old.rpartition(".")
    return old, f"{schema}.{body['newname']}" if schema else body["newname"]


def _touches(effect: StatementEffect, name: str) -> bool:
    return (
        name in effect.rewrites
        or name in effect.scans
        or any(lock.relation == name for lock in effect.locks)
    )


def _server_version(connection: Any) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0]
