"""Django system checks for pgmigrate's settings and set-up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from pgmigrate import config, patching

#: (check id, setting accessor) for each validated setting.
SETTING_CHECKS: list[tuple[str, Callable[[], Any]]] = [
    ("pgmigrate.E003", config.blocking_action),
    ("pgmigrate.E004", config.blocking_action_interval),
    ("pgmigrate.E005", config.lock_timeout),
    ("pgmigrate.E006", config.patch_migrate),
    ("pgmigrate.E007", config.atomic),
]


def check_required_apps(**kwargs: Any) -> list[checks.CheckMessage]:
    """pgmigrate.E001/E002: pgactivity and pglock must be installed."""
    errors: list[checks.CheckMessage] = []
    for check_id, app in (("pgmigrate.E001", "pgactivity"), ("pgmigrate.E002", "pglock")):
        if not apps.is_installed(app):
            errors.append(
                checks.Error(
                    f"pgmigrate needs {app!r} in INSTALLED_APPS.",
                    hint=f'Add "{app}" to INSTALLED_APPS (before or after "pgmigrate").',
                    id=check_id,
                )
            )
    return errors


def check_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    """pgmigrate.E003 to E007: each PGMIGRATE_* setting has a usable value."""
    if not (apps.is_installed("pgactivity") and apps.is_installed("pglock")):
        return []  # validating actions needs pglock's models
    errors: list[checks.CheckMessage] = []
    for check_id, accessor in SETTING_CHECKS:
        try:
            accessor()
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(str(exc), id=check_id))
    return errors


def check_migrate_owner(**kwargs: Any) -> list[checks.CheckMessage]:
    """pgmigrate.W001: another app's ``migrate`` command would bypass pgmigrate."""
    try:
        wanted = config.patch_migrate()
    except ImproperlyConfigured:
        return []
    owner = patching.migrate_command_owner()
    if wanted and owner != patching.DJANGO_CORE:
        return [
            checks.Warning(
                f"The app {owner!r} provides its own 'migrate' command, so pgmigrate cannot "
                "patch 'migrate': it runs without pgmigrate.",
                hint="Run 'manage.py pgmigrate' instead, make that command subclass "
                "pgmigrate.MigrateCommand, or set PGMIGRATE_PATCH_MIGRATE = False to silence "
                "this warning.",
                id="pgmigrate.W001",
            )
        ]
    return []


def register() -> None:
    for check in (check_required_apps, check_settings, check_migrate_owner):
        checks.register(check)
