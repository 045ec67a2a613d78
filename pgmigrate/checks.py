"""Django system checks for pgmigrate's settings and set-up."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
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
    ("pgmigrate.E008", config.protected),
    ("pgmigrate.E009", config.concurrent_migrate),
    ("pgmigrate.E010", config.lock_retries),
    ("pgmigrate.E011", config.lock_retry_delay),
    ("pgmigrate.E011", config.lock_retry_max_delay),
    ("pgmigrate.E012", config.statement_timeout),
    ("pgmigrate.E013", config.statement_timeout_exempt),
    ("pgmigrate.E014", config.log_queries),
    ("pgmigrate.E015", config.step_aside),
    ("pgmigrate.E016", config.lock_plan_threshold),
    ("pgmigrate.E017", config.lock_plan_rules),
    ("pgmigrate.E018", config.lock_plan_allow),
]


def _while_installed(check: Callable[..., list[checks.CheckMessage]]) -> Any:
    """``check``, silent while pgmigrate is not in ``INSTALLED_APPS`` (Django's check
    registry outlives an ``override_settings(INSTALLED_APPS=...)`` that removes it)."""

    @functools.wraps(check)
    def wrapper(*args: Any, **kwargs: Any) -> list[checks.CheckMessage]:
        return check(*args, **kwargs) if apps.is_installed("pgmigrate") else []

    return wrapper


def _dependencies_installed() -> bool:
    """Whether pgactivity and pglock are installed: reading the blocking action imports
    their models, which fails without them (pgmigrate.E001/E002 report that instead)."""
    return apps.is_installed("pgactivity") and apps.is_installed("pglock")


@_while_installed
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


@_while_installed
def check_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    """pgmigrate.E003 to E018: each PGMIGRATE_* setting has a usable value."""
    if not _dependencies_installed():
        return []  # validating actions needs pglock's models
    errors: list[checks.CheckMessage] = []
    for check_id, accessor in SETTING_CHECKS:
        try:
            accessor()
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(str(exc), id=check_id))
    return errors


@_while_installed
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


@_while_installed
def check_lock_timeout_leaves_time_to_act(**kwargs: Any) -> list[checks.CheckMessage]:
    """pgmigrate.W002: a lock timeout so short that blockers are never ended in time."""
    if not _dependencies_installed():
        return []
    try:
        timeout, action = config.lock_timeout(), config.blocking_action()
        interval = config.blocking_action_interval()
    except ImproperlyConfigured:
        return []  # reported by check_settings
    needed = config.time_to_act(interval)
    if timeout is None or action is None or timeout >= needed:
        return []
    return [
        checks.Warning(
            f"PGMIGRATE_LOCK_TIMEOUT ({timeout:g} s) is shorter than the watcher needs to act "
            f"on blockers (about {needed:g} s: a fifth of PGMIGRATE_BLOCKING_ACTION_INTERVAL plus "
            f"{config.ACT_MARGIN:g} s), so statements will time out before {action!r} can help.",
            hint=f"Use a lock timeout of at least {needed:g} s, or a shorter interval.",
            id="pgmigrate.W002",
        )
    ]


@_while_installed
def check_retries_need_a_lock_timeout(**kwargs: Any) -> list[checks.CheckMessage]:
    """pgmigrate.W004: lock retries without a lock timeout never happen."""
    try:
        retries, timeout = config.lock_retries(), config.lock_timeout()
    except ImproperlyConfigured:
        return []  # reported by check_settings
    if not retries or timeout is not None:
        return []
    return [
        checks.Warning(
            f"PGMIGRATE_LOCK_RETRIES = {retries} has no effect while PGMIGRATE_LOCK_TIMEOUT is "
            "None: only a statement that hits the lock timeout is retried, and without one a "
            "statement waits for its lock as long as it takes.",
            hint="Set PGMIGRATE_LOCK_TIMEOUT (e.g. 5 seconds), or PGMIGRATE_LOCK_RETRIES = 0. "
            "If the server sets lock_timeout for the migrating role or database, retries use "
            "it: add 'pgmigrate.W004' to SILENCED_SYSTEM_CHECKS.",
            id="pgmigrate.W004",
        )
    ]


@_while_installed
def check_retry_delays_in_order(**kwargs: Any) -> list[checks.CheckMessage]:
    """pgmigrate.W006: the first retry delay is above the cap of the delays."""
    try:
        delay, cap = config.lock_retry_delay(), config.lock_retry_max_delay()
    except ImproperlyConfigured:
        return []  # reported by check_settings
    if delay <= cap:
        return []
    return [
        checks.Warning(
            f"PGMIGRATE_LOCK_RETRY_DELAY ({delay:g} s) is above "
            f"PGMIGRATE_LOCK_RETRY_MAX_DELAY ({cap:g} s), which caps every delay: each retry "
            f"waits up to {cap:g} s, never {delay:g} s.",
            hint="Set PGMIGRATE_LOCK_RETRY_DELAY to at most PGMIGRATE_LOCK_RETRY_MAX_DELAY, or "
            "raise the cap.",
            id="pgmigrate.W006",
        )
    ]


def _ask_each_postgresql(databases: list[str] | None, sql: str) -> Iterator[tuple[str, Any]]:
    """``(alias, row)``: the one row ``sql`` returns on each PostgreSQL database of
    ``databases`` that can be asked (one that cannot has nothing to say)."""
    from django.db import Error, connections

    for using in databases or []:
        connection = connections[using]
        if connection.vendor != "postgresql":
            continue
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                row = cursor.fetchone()
        except Error:
            continue
        yield using, row


@_while_installed
def check_signal_privilege(
    databases: list[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """pgmigrate.W003: the migrating role cannot end other roles' sessions."""
    found: list[checks.CheckMessage] = []
    for using, (role, allowed) in _ask_each_postgresql(
        databases,
        "SELECT current_user, rolsuper OR pg_has_role(current_user, 'pg_signal_backend', "
        "'MEMBER') FROM pg_roles WHERE rolname = current_user",
    ):
        if not allowed:
            found.append(
                checks.Warning(
                    f"The role {role!r} of database {using!r} can only end sessions of roles "
                    "it is a member of: pgmigrate will not be able to end other blockers.",
                    hint=f'GRANT pg_signal_backend TO "{role}"; (as a superuser). Sessions '
                    "of superusers can only be ended by a superuser.",
                    id="pgmigrate.W003",
                )
            )
    return found


@_while_installed
def check_protected_columns_visible(
    databases: list[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """pgmigrate.W005: PGMIGRATE_PROTECTED names columns the migrating role cannot see."""
    from pgmigrate import protection

    try:
        hidden = protection.hidden_columns(config.protected())
    except ImproperlyConfigured:
        return []  # reported by check_settings
    if not hidden:
        return []
    found: list[checks.CheckMessage] = []
    for using, (role, sees_all) in _ask_each_postgresql(
        databases, "SELECT quote_ident(current_user), pg_has_role('pg_read_all_stats', 'USAGE')"
    ):
        if sees_all:
            continue
        role = role if role.startswith('"') else f'"{role}"'
        found.append(
            checks.Warning(
                f"PGMIGRATE_PROTECTED names {', '.join(hidden)}, which PostgreSQL hides of "
                f"other roles' sessions from the role {role} of database {using!r} (neither a "
                "superuser nor a member of pg_read_all_stats): pgmigrate cannot tell whether "
                "such a session is protected, so it never ends it; it shows it and the "
                "migration waits for it (or for the lock timeout).",
                hint=f"GRANT pg_read_all_stats TO {role}; (as a superuser), or protect "
                "sessions by the columns every role sees: "
                f"{', '.join(sorted(protection.VISIBLE_TO_ALL))}.",
                id="pgmigrate.W005",
            )
        )
    return found


@_while_installed
def check_action_filters_run(
    databases: list[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """pgmigrate.E019: the blocking action's filters fail when PostgreSQL runs them."""
    from django.db import connections

    from pgmigrate import actions

    if not databases or not _dependencies_installed():
        return []
    try:
        action = config.blocking_action()
    except ImproperlyConfigured:
        return []  # reported by check_settings
    if action is None or not getattr(action, "filters", None):
        return []
    found: list[checks.CheckMessage] = []
    for using in databases:
        if connections[using].vendor != "postgresql":
            continue
        error = actions.filters_error(action, using)
        if error is None:
            continue
        found.append(
            checks.Error(
                f"PGMIGRATE_BLOCKING_ACTION {action!r}: its filters fail on database "
                f"{using!r}: {error}. pgmigrate runs them only once a session blocks the "
                "migration: the blocker would be left alone.",
                hint="Give each filter a value of its field's type (a datetime.timedelta "
                "for a duration such as blocking_activity__duration, a datetime for "
                "backend_start) and a valid PostgreSQL regular expression to __regex.",
                id="pgmigrate.E019",
            )
        )
    return found


@_while_installed
def check_own_backend_visible(
    databases: list[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """pgmigrate.W007: the migrating role cannot see its own connection's backend in
    ``pg_stat_activity`` (a connection that switches roles as it connects)."""
    found: list[checks.CheckMessage] = []
    for using, (role, login, sees) in _ask_each_postgresql(
        databases,
        "SELECT quote_ident(current_user), session_user, "
        "pg_has_role(current_user, session_user, 'USAGE') "
        "OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')",
    ):
        if sees:
            continue
        role = role if role.startswith('"') else f'"{role}"'
        found.append(
            checks.Warning(
                f"The connection of database {using!r} logs in as {login!r} and then runs as "
                f"the role {role}, which has the privileges neither of {login!r} nor of "
                "pg_read_all_stats: PostgreSQL hides the state of the migrating backend from "
                "it, so pgmigrate cannot tell when the migration waits on a lock and ends, "
                "shows and steps aside from no blocker.",
                hint=f"GRANT pg_read_all_stats TO {role}; (as a superuser), or log in as "
                f"{role} instead of switching to it (DATABASES OPTIONS assume_role, or "
                "-c role=...).",
                id="pgmigrate.W007",
            )
        )
    return found


def register() -> None:
    for check in (
        check_required_apps,
        check_settings,
        check_migrate_owner,
        check_lock_timeout_leaves_time_to_act,
        check_retries_need_a_lock_timeout,
        check_retry_delays_in_order,
    ):
        checks.register(check)
    checks.register(check_signal_privilege, checks.Tags.database)
    checks.register(check_protected_columns_visible, checks.Tags.database)
    checks.register(check_action_filters_run, checks.Tags.database)
    checks.register(check_own_backend_visible, checks.Tags.database)
