"""The migration executor pgmigrate gives Django's ``migrate``.

Django runs each migration through ``MigrationExecutor.apply_migration``, which opens a schema
editor with ``atomic=migration.atomic`` and calls ``migration.apply``. pgmigrate hands it a
copy of the migration whose ``apply`` is ``Run.apply_operations`` (see ``pgmigrate.run``) and,
in statement-by-statement mode, whose ``atomic`` is False, so that there is no
migration-wide transaction.
"""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING, Any, cast

from django.db.migrations.executor import MigrationExecutor

if TYPE_CHECKING:
    from django.db.migrations import Migration
    from django.db.migrations.state import ProjectState

    from pgmigrate.run import Run


class PGMigrateExecutor(MigrationExecutor):
    """A ``MigrationExecutor`` that applies migrations through a pgmigrate ``Run``."""

    run: Run | None = None

    def apply_migration(
        self,
        state: ProjectState,
        migration: Migration,
        fake: bool = False,
        fake_initial: bool = False,
    ) -> ProjectState:
        run = self.run
        if run is None:
            applied = super().apply_migration(
                state, migration, fake=fake, fake_initial=fake_initial
            )
            return cast("ProjectState", applied)
        runner = copy.copy(migration)
        runner.apply = functools.partial(run.apply_operations, migration)  # type: ignore[method-assign]
        if not run.options.atomic:
            runner.atomic = False
        apply: Any = super().apply_migration
        if run.options.atomic and migration.atomic:
            # One transaction for the whole migration: on a lock timeout, retry all of it.
            return run.retry.call(
                lambda: apply(state.clone(), runner, fake=fake, fake_initial=fake_initial),
                what=f"migration {migration.app_label}.{migration.name}",
            )
        return apply(state, runner, fake=fake, fake_initial=fake_initial)
