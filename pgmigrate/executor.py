"""The migration executor pgmigrate gives Django's ``migrate``.

Django runs each migration through ``MigrationExecutor.apply_migration`` (or
``unapply_migration``), which opens a schema editor with ``atomic=migration.atomic`` and calls
``migration.apply`` (``unapply``), then records the migration (django/db/migrations/
executor.py). pgmigrate hands it a copy of the migration whose ``apply``/``unapply`` are
``Run.apply_operations``/``unapply_operations`` (``pgmigrate.run``) and whose ``atomic`` is
False, so that each operation gets a transaction of its own; it records a migration (and
forgets its progress) in one transaction; and before Django's plan runs, it settles the
migrations an earlier run left half applied (``settle_half_applied``).
"""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING, Any, cast

import django
from django.core.management.base import CommandError
from django.db import transaction
from django.db.migrations.exceptions import IrreversibleError, NodeNotFoundError
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader

from pgmigrate import planned, steps
from pgmigrate.db import atomic
from pgmigrate.errors import PartialMigrationError, migrate_error
from pgmigrate.progress import BACKWARDS, FORWARDS, Key

if TYPE_CHECKING:
    from django.db.migrations import Migration
    from django.db.migrations.state import ProjectState

    from pgmigrate.run import Run


def _label(key: Key) -> str:
    return f"{key[0]}.{key[1]}"


def _unknown_progress(key: Key) -> str:
    return (
        f"pgmigrate: pgmigrate_progress says {_label(key)} is half applied, but no migration of "
        "that name exists: restore its file (deploy the code that has it) to finish or roll it "
        "back"
    )


class PGMigrateExecutor(MigrationExecutor):
    """A ``MigrationExecutor`` that applies migrations through a pgmigrate ``Run``."""

    run: Run | None = None
    _targets: Any = None
    _fake = False

    # The plan ---------------------------------------------------------------------------

    def migrate(
        self,
        targets: Any,
        plan: Any = None,
        state: Any = None,
        fake: bool = False,
        fake_initial: bool = False,
    ) -> Any:
        # Django's migrate runs the plan through _migrate_all_forwards/backwards, then
        # check_replacements: pgmigrate sets up in those, so that a test that mocks
        # MigrationExecutor.migrate runs nothing of pgmigrate's either.
        self._targets, self._fake = targets, fake
        return super().migrate(
            targets, plan=plan, state=state, fake=fake, fake_initial=fake_initial
        )

    def _migrate_all_forwards(
        self, state: Any, plan: Any, full_plan: Any, fake: bool, fake_initial: bool
    ) -> Any:
        if self.run is not None:
            replanned = self._start(plan)
            if replanned is not None:
                if any(backwards for _, backwards in replanned):
                    self._changed_direction()
                plan, full_plan = replanned, self._full_plan()
                state = self._create_project_state(with_applied_migrations=True)
            if not plan:
                return state
        return super()._migrate_all_forwards(
            state, plan, full_plan, fake=fake, fake_initial=fake_initial
        )

    def _migrate_all_backwards(self, plan: Any, full_plan: Any, fake: bool) -> Any:
        replanned = self._start(plan) if self.run is not None else None
        if replanned is not None:
            if any(not backwards for _, backwards in replanned):
                self._changed_direction()
            if not replanned:
                return self._create_project_state(with_applied_migrations=True)
            plan, full_plan = replanned, self._full_plan()
        return super()._migrate_all_backwards(plan, full_plan, fake=fake)

    def _full_plan(self) -> Any:
        """Every migration of the graph in order, as Django's ``migrate`` makes it before
        the plan runs (it walks this list to apply the plan's migrations and to build the
        states to unapply them): made again with the plan."""
        return self.migration_plan(self.loader.graph.leaf_nodes(), clean_start=True)

    def check_replacements(self) -> None:
        run = self.run
        if run is not None and not run.started:
            if run.options.restart or self._may_be_half_applied():
                self._start([])  # nothing to apply, but a half-applied migration to settle
            elif run.from_command_line:
                self._warn_of_unknown_progress()
        super().check_replacements()

    def _warn_of_unknown_progress(self) -> None:
        """A ``migrate`` with nothing to apply, run from the command line (a deploy): say
        which half-applied migrations no migration file names (the code was rolled back
        after an interrupted run; Django would have rolled the migration back whole). Django's
        own tests and other ``call_command`` callers get Django's queries only."""
        run = self.run
        assert run is not None
        for key in run.progress.known:
            if key not in self.loader.graph.nodes and not self._replacing(key):
                run.notice(_unknown_progress(key), warning=True)

    def _replacing(self, key: Key) -> list[Key]:
        """The squashed migrations of the graph that replace ``key``."""
        return [
            (migration.app_label, migration.name)
            for migration in self.loader.graph.nodes.values()
            if key in migration.replaces
        ]

    def _start(self, plan: Any) -> Any:
        """Set pgmigrate up and settle half-applied migrations before ``plan`` runs. Return
        the plan made again if another ``migrate`` changed the applied migrations since
        Django planned, else None."""
        run = self.run
        assert run is not None
        run.start()
        replanned = None
        if self._applied_changed():
            run.notice(
                "pgmigrate: another migrate changed the applied migrations before this one "
                "started; planning again"
            )
            plan = replanned = self._replan()
        # Django passes fake=False when the plan is empty.
        self.settle_half_applied(self._targets, plan, fake=self._fake or run.options.fake)
        return replanned

    def _replan(self) -> Any:
        """The plan for the targets, made again on the migrations as applied now. The
        migrations are those loaded before where the new graph has them (what Django's
        ``pre_migrate`` receivers made of them stays), and contenttypes'
        ``RenameContentType`` operations are those Django would give the new plan
        (``planned``).

        Raises:
            CommandError: A target is no migration of the graph now (a squashed migration
                replaces it, the applied migrations having changed).
        """
        loaded = dict(self.loader.graph.nodes)
        self.loader.build_graph()
        planned.keep_loaded(loaded, self.loader.graph.nodes)
        try:
            replanned = self.migration_plan(self._targets)
        except NodeNotFoundError as exc:
            raise CommandError(
                "pgmigrate: another migrate changed the applied migrations before this one "
                f"started, and the plan cannot be made again: {exc}. Nothing was applied; "
                "name the squashed migration that replaces it, or run migrate again."
            ) from exc
        planned.rename_content_types(
            replanned,
            lambda: self._create_project_state(with_applied_migrations=True).apps,
            self.connection.alias,
        )
        return replanned

    def _changed_direction(self) -> None:
        raise CommandError(
            "pgmigrate: another migrate changed the applied migrations before this one "
            "started, so that this one would now migrate in the other direction; nothing was "
            "applied. Run migrate again."
        )

    def _may_be_half_applied(self) -> bool:
        """Whether ``pgmigrate_progress`` may describe a migration to settle: some migration
        of the graph is unapplied (so a ``migrate`` with nothing to do, the usual deploy,
        reads nothing more than Django), and progress is recorded."""
        applied = self.loader.applied_migrations or {}
        assert self.run is not None
        return any(key not in applied for key in self.loader.graph.nodes) and bool(
            self.run.progress.known
        )

    def _applied_changed(self) -> bool:
        """Whether another ``migrate`` changed the applied migrations between Django's
        planning and this run taking the one-migrate-at-a-time lock."""
        before = set(cast("dict[Key, Any]", self.loader.applied_migrations))
        return set(self.recorder.applied_migrations()) != before

    def settle_half_applied(self, targets: Any, plan: Any, *, fake: bool) -> None:
        """Before the plan runs: forget progress that describes migrations recorded as
        applied, and roll back the half-applied migrations the targets leave out or whose
        dependencies the plan unapplies (with ``--fake``, leave them as they are)."""
        run = self.run
        assert run is not None
        known = run.progress.known
        if not known:
            return
        applied = cast("dict[Key, Any]", self.loader.applied_migrations)
        stale = [key for key in known if key in applied]
        if stale:
            run.progress.forget(stale)
        forwards = {(migration.app_label, migration.name) for migration, back in plan if not back}
        backwards = {(migration.app_label, migration.name) for migration, back in plan if back}
        excluded = [
            key
            for key in self._in_graph_order(known)
            if key not in applied and self._excluded(key, targets, forwards, backwards)
        ]
        for key in reversed(excluded):  # dependents first
            if fake:
                self._leave_half_applied(key)
            else:
                self.roll_back_half_applied(key)

    def _leave_half_applied(self, key: Key) -> None:
        """``--fake``: leave a half-applied migration the plan would roll back as it is.
        Like Django's ``--fake``, which only changes ``django_migrations`` and never the
        schema: the migration is not recorded as applied already, and its progress says
        which of its operations are in the database (forgetting it would make the next run
        apply them again, failing with "already exists")."""
        run = self.run
        assert run is not None
        what = run.progress.known[key].describe()
        run.notice(
            f"pgmigrate: --fake: {_label(key)} is half applied ({what}); left as it is, and "
            "not recorded as applied. Migrate forwards to finish it, or backwards without "
            "--fake to unapply it; if you undid it by hand, forget its progress with "
            "--pgmigrate-restart",
            warning=True,
        )

    def _in_graph_order(self, keys: Any) -> list[Key]:
        order = {key: position for position, key in enumerate(self._full_order())}
        return sorted(keys, key=lambda key: order.get(key, len(order)))

    def _full_order(self) -> list[Key]:
        graph = self.loader.graph
        order: list[Key] = []
        for leaf in graph.leaf_nodes():
            order.extend(key for key in graph.forwards_plan(leaf) if key not in order)
        return order

    def _excluded(self, key: Key, targets: Any, forwards: set[Key], backwards: set[Key]) -> bool:
        """Whether the half-applied migration ``key`` must be rolled back before the plan
        runs: the plan unapplies a migration it depends on, the target of its app comes
        before it, or a squashed migration that replaces it is about to be applied."""
        graph = self.loader.graph
        if key not in graph.nodes:
            replaced_by = self._replacing(key)
            if not replaced_by and self.run is not None:
                self.run.notice(_unknown_progress(key), warning=True)
            return bool(set(replaced_by) & forwards)
        if set(graph.forwards_plan(key)) & backwards:
            return True
        for app_label, name in targets:
            if app_label == key[0] and (
                name is None or key not in graph.forwards_plan((app_label, name))
            ):
                return True
        return False

    def roll_back_half_applied(self, key: Key) -> None:
        """Unapply the operations a failed or interrupted run applied of ``key``."""
        run = self.run
        assert run is not None
        saved = run.progress.known[key]
        executor: MigrationExecutor = self
        if key not in self.loader.graph.nodes:  # replaced by a squashed migration
            executor = MigrationExecutor(self.connection)
            executor.loader = MigrationLoader(self.connection, replace_migrations=False)
        migration = executor.loader.graph.nodes[key]
        # In no plan, it has its file's operations; it takes those the earlier run had.
        run.saved(migration)
        # The state before it, as Django builds it to unapply a migration: every applied
        # migration (not only its ancestors: a RunPython may use other apps' models).
        state = executor._create_project_state(with_applied_migrations=True)
        what = saved.describe()
        try:
            part_way = saved.mid_operation and saved.direction == FORWARDS
            run.check_reversible(migration, saved.done + part_way)
        except IrreversibleError as exc:
            raise migrate_error(
                f"pgmigrate: {_label(key)} is half applied ({what}) and must be rolled back "
                f"before this plan runs, but {exc}. Migrate forwards to finish it instead.",
                exc,
            ) from exc
        run.notice(f"pgmigrate: rolling back half-applied {_label(key)} ({what})")
        run.prepare(progress_table=True)
        runner = self._runner(migration, run.unapply_operations, atomic=False)
        with (
            run.guard.deferred(cancellable=True),
            self.connection.schema_editor(atomic=False) as schema_editor,
        ):
            runner.unapply(state, schema_editor)

    # Applying ---------------------------------------------------------------------------

    def _runner(self, migration: Migration, method: Any, *, atomic: bool) -> Migration:
        runner = copy.copy(migration)
        name = "apply" if method.__name__ == "apply_operations" else "unapply"
        setattr(runner, name, functools.partial(method, migration))
        runner.atomic = atomic
        return runner

    def _one_transaction(self, migration: Migration, *, forwards: bool) -> bool:
        """Whether ``migration`` runs in Django's one transaction (``steps.
        in_one_transaction``)."""
        run = self.run
        return run is not None and steps.in_one_transaction(
            migration,
            forwards,
            atomic_setting=run.options.atomic,
            half_applied=run.progress.get(migration.app_label, migration.name) is not None,
        )

    def apply_migration(
        self,
        state: ProjectState,
        migration: Migration,
        fake: bool = False,
        fake_initial: bool = False,
    ) -> ProjectState:
        run = self.run
        if run is None:
            return cast(
                "ProjectState",
                super().apply_migration(state, migration, fake=fake, fake_initial=fake_initial),
            )
        one_transaction = self._one_transaction(migration, forwards=True)
        runner = self._runner(migration, run.apply_operations, atomic=one_transaction)
        if run.progress.get(migration.app_label, migration.name) is not None:
            # Half applied by an earlier run: Django's --fake-initial would see its tables
            # and fake it; it resumes instead.
            fake_initial = False
        if not one_transaction:
            runner.apply = functools.partial(  # type: ignore[method-assign]
                run.apply_operations, migration, record=lambda: self._record_now(migration)
            )
        if not fake:
            run.prepare(progress_table=not one_transaction)
        apply: Any = super().apply_migration
        with run.guard.deferred(cancellable=True):
            if one_transaction:
                # One transaction for the whole migration: on a lock timeout, retry all of it.
                return run.retry.call(
                    lambda: cast(
                        "ProjectState",
                        apply(state.clone(), runner, fake=fake, fake_initial=fake_initial),
                    ),
                    what=f"migration {_label((migration.app_label, migration.name))}",
                )
            return cast("ProjectState", apply(state, runner, fake=fake, fake_initial=fake_initial))

    def _record_now(self, migration: Migration) -> None:
        """Record ``migration`` applied in the current transaction (its last operation's)."""
        key = (migration.app_label, migration.name)
        if django.VERSION[0] >= 6:
            self.record_migration(*key)
        else:
            self.record_migration(migration)
        transaction.on_commit(lambda: self._recorded.add(key), using=self.connection.alias)

    @functools.cached_property
    def _recorded(self) -> set[Key]:
        """Migrations recorded in the transaction of their last operation."""
        return set()

    def record_migration(self, *args: Any, **kwargs: Any) -> None:
        """Record a migration applied (or unapplied, Django 6.0) and forget its progress, in
        one transaction."""
        run = self.run
        if run is None:
            return super().record_migration(*args, **kwargs)
        if hasattr(args[0], "app_label"):  # Django < 6.0: record_migration(migration)
            migration = args[0]
            keys = [*migration.replaces, (migration.app_label, migration.name)]
            forward = True
        else:  # Django 6.0: record_migration(app_label, name, forward=True)
            keys = [(args[0], args[1])]
            forward = kwargs.get("forward", args[2] if len(args) > 2 else True)
        if forward and keys[-1] in self._recorded:
            return  # recorded with its last operation
        if self.connection.in_atomic_block:  # in pgmigrate's or the migration's transaction
            run.retry.aside.check(committing=True)  # not without a statement cancelled
            super().record_migration(*args, **kwargs)
            if forward:
                run.progress.forget(keys)
            return

        def attempt() -> None:
            with atomic(self.connection.alias):
                super(PGMigrateExecutor, self).record_migration(*args, **kwargs)
                if forward:
                    run.progress.forget(keys)

        with run.guard.deferred(cancellable=False):
            try:
                run.retry.call(attempt, what=f"recording {_label(keys[-1])}")
            except Exception as exc:
                migration = self.loader.graph.nodes.get(keys[-1])
                saved = run.progress.get(*keys[-1])
                if migration is None or saved is None:
                    raise
                raise PartialMigrationError(migration, done=saved.done, failed_index=None) from exc

    # Unapplying -------------------------------------------------------------------------

    def _record_unapplied(self, migration: Migration) -> None:
        """Django's record of an unapplied migration (and of the ones it replaces)."""
        if django.VERSION[0] >= 6:
            record: Any = super().record_migration
            record(migration.app_label, migration.name, forward=False)
            return
        for app_label, name in migration.replaces:
            self.recorder.record_unapplied(app_label, name)
        self.recorder.record_unapplied(migration.app_label, migration.name)

    def unapply_migration(
        self, state: ProjectState, migration: Migration, fake: bool = False
    ) -> ProjectState:
        run = self.run
        if run is None:
            return super().unapply_migration(state, migration, fake=fake)
        key = (migration.app_label, migration.name)
        if self.progress_callback:
            self.progress_callback("unapply_start", migration, fake)
        if not fake:  # as Django's Migration.unapply, before anything changes
            run.check_reversible(migration, len(migration.operations))
        # No operation to count down: unrecorded in one transaction, without progress.
        one_transaction = (
            self._one_transaction(migration, forwards=False) or not migration.operations
        )
        runner = self._runner(migration, run.unapply_operations, atomic=one_transaction)
        if not fake:
            run.wait_for_watcher()  # not while an interrupt would wait
        with run.guard.deferred(cancellable=True):
            if fake:
                with run.guard.deferred(cancellable=False), atomic(self.using):
                    self._record_unapplied(migration)
                    run.progress.forget([key])
            elif one_transaction:

                def attempt() -> None:
                    with self.connection.schema_editor(atomic=True) as schema_editor:
                        runner.unapply(state, schema_editor)
                        self._record_unapplied(migration)

                run.prepare(progress_table=False)
                run.retry.call(attempt, what=f"migration {_label(key)}")
            else:
                run.prepare(progress_table=True)
                # From here on the migration is not recorded as applied, and
                # pgmigrate_progress counts how many of its operations still are.
                with run.guard.deferred(cancellable=False), atomic(self.using):
                    self._record_unapplied(migration)
                    total = len(migration.operations)
                    run.progress.save(migration, run.progress.start(migration, total, BACKWARDS))
                with self.connection.schema_editor(atomic=False) as schema_editor:
                    runner.unapply(state, schema_editor)
        if self.progress_callback:
            self.progress_callback("unapply_success", migration, fake)
        return state

    @property
    def using(self) -> str:
        return self.connection.alias
