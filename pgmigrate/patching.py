"""Swapping pgmigrate's command in for Django's ``migrate``."""

from __future__ import annotations

from django.core.management import get_commands
from django.core.management.commands import migrate as django_migrate

from pgmigrate import config
from pgmigrate.command import DjangoMigrateCommand, MigrateCommand

DJANGO_CORE = "django.core"


def migrate_command_owner() -> str:
    """The app whose ``migrate`` command ``manage.py migrate`` runs (``"django.core"`` if
    no installed app overrides it)."""
    return get_commands().get("migrate", DJANGO_CORE)


def is_patched() -> bool:
    """True when Django's ``migrate`` command is pgmigrate's."""
    return issubclass(django_migrate.Command, MigrateCommand)


def patch() -> None:
    """Make ``manage.py migrate`` (and ``call_command("migrate")``) run pgmigrate."""
    if not is_patched():
        django_migrate.Command = MigrateCommand  # type: ignore[misc]


def unpatch() -> None:
    """Restore Django's own ``migrate`` command."""
    django_migrate.Command = DjangoMigrateCommand  # type: ignore[misc]


def apply_setting() -> None:
    """Patch or unpatch ``migrate`` as ``PGMIGRATE_PATCH_MIGRATE`` says.

    When another installed app provides ``migrate``, Django runs that app's command and the
    patch would have no effect; the system check ``pgmigrate.W001`` says so.
    """
    if config.patch_migrate():
        patch()
    else:
        unpatch()
