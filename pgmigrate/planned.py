"""The operations a plan gives a migration.

Django's ``migrate`` sends ``pre_migrate`` with its plan before it runs anything, and
django.contrib.contenttypes' receiver (``inject_rename_contenttypes_operations``, in
django/contrib/contenttypes/management/__init__.py) inserts a ``RenameContentType`` after each
``RenameModel`` of the planned migrations, but only where its ``ContentType`` model is there:
in the state of the applied migrations, or made by contenttypes' ``0001_initial`` earlier in
the plan. So one file gives a migration other operations in runs whose plans differ
(``migrate shop`` on a new database, then ``migrate``), and its file's own in a run that rolls
it back before the plan (it is in no plan). ``pgmigrate_progress`` counts and fingerprints the
operations of the run that wrote it: a later run takes those (``ProgressRecorder.matches``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.db.migrations.operations.base import Operation

Key = tuple[str, str]


def variants(migration: Any, using: str) -> list[list[Operation]]:
    """The operation lists a run may have given ``migration``: its file's own (the class's
    ``operations``, which Django's ``Migration.__init__`` copies), and, with contenttypes
    installed, those with the operations its receiver inserts (made by the receiver itself,
    as for a plan where ``ContentType`` is there; its router check applies)."""
    own = list(type(migration).operations)
    found = [own]
    if apps.is_installed("django.contrib.contenttypes"):
        from django.contrib.contenttypes.management import (
            inject_rename_contenttypes_operations,
        )

        planned = copy.copy(migration)
        planned.operations = list(own)
        inject_rename_contenttypes_operations(plan=[(planned, False)], using=using)
        if len(planned.operations) != len(own):
            found.append(planned.operations)
    return found


def keep_loaded(loaded: dict[Key, Any], nodes: dict[Key, Any]) -> None:
    """After the migration graph is loaded again, put the migrations ``loaded`` before
    (``MigrationGraph.nodes``) back into the new graph's ``nodes``, in place of the new
    copies of their files: Django's ``pre_migrate`` receivers may have changed those of its
    plan."""
    for key, migration in loaded.items():
        if key in nodes:
            nodes[key] = migration


def rename_content_types(replanned: Any, state_apps: Callable[[], Any], using: str) -> None:
    """Give the migrations of ``replanned`` (a plan made again, after another ``migrate``
    changed the applied migrations) contenttypes' ``RenameContentType`` operations as
    Django's ``pre_migrate`` would give them on that plan: those the first plan inserted are
    taken out (the ``ContentType`` model may be gone since), and contenttypes' receiver runs
    on the new plan, with ``state_apps()`` (the apps of the applied migrations' state, as in
    Django's ``migrate``) telling whether ``ContentType`` is there now."""
    if not apps.is_installed("django.contrib.contenttypes"):
        return
    from django.contrib.contenttypes.management import (
        RenameContentType,
        inject_rename_contenttypes_operations,
    )

    for migration, _ in replanned:
        own = type(migration).operations
        migration.operations = [
            operation
            for operation in migration.operations
            if not isinstance(operation, RenameContentType)
            or any(operation is mine for mine in own)
        ]
    if replanned:
        inject_rename_contenttypes_operations(plan=replanned, apps=state_apps(), using=using)
