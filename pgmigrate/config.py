"""Settings of pgmigrate: one validated accessor per setting.

Each accessor reads its ``PGMIGRATE_*`` setting, applies the default and raises
``ImproperlyConfigured`` with a clear message when the value is unusable. The system
checks in ``pgmigrate.checks`` call them to turn bad values into check errors.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from pgmigrate import actions, protection

#: Default for ``PGMIGRATE_BLOCKING_ACTION_INTERVAL``, in seconds.
DEFAULT_BLOCKING_ACTION_INTERVAL = 0.005
#: Bounds accepted for ``PGMIGRATE_BLOCKING_ACTION_INTERVAL``, in seconds.
MIN_INTERVAL, MAX_INTERVAL = 0.001, 60.0
#: Smallest lock timeout PostgreSQL can express (it counts milliseconds).
MIN_LOCK_TIMEOUT = 0.001

_UNSET: Any = object()


def _seconds(name: str, value: object) -> float:
    """Convert a number of seconds or a ``timedelta`` to float seconds, or fail clearly."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ImproperlyConfigured(
        f"{name} must be a number of seconds or a datetime.timedelta, not {value!r}."
    )


def _bool(name: str, default: bool) -> bool:
    value = getattr(settings, name, default)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"{name} must be True or False, not {value!r}.")
    return value


def blocking_action() -> actions.BlockingAction | None:
    """``PGMIGRATE_BLOCKING_ACTION``: what to do with sessions that block a migration.

    A ``BlockingAction`` subclass, an instance of one, a dotted path to either, or ``None``.
    Defaults to ``pgmigrate.Terminate``.
    """
    value = getattr(settings, "PGMIGRATE_BLOCKING_ACTION", actions.Terminate)
    return actions.resolve(value, setting="PGMIGRATE_BLOCKING_ACTION")


def blocking_action_interval() -> float:
    """``PGMIGRATE_BLOCKING_ACTION_INTERVAL``: seconds between looks at the migrating backend.

    The watcher first looks half an interval after a statement starts, then at growing gaps
    while the statement runs; once the backend waits on a lock it acts at once.
    """
    name = "PGMIGRATE_BLOCKING_ACTION_INTERVAL"
    value = getattr(settings, name, DEFAULT_BLOCKING_ACTION_INTERVAL)
    seconds = _seconds(name, value)
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise ImproperlyConfigured(
            f"{name} must be between {MIN_INTERVAL} and {MAX_INTERVAL:g} seconds, not {value!r}."
        )
    return seconds


def lock_timeout() -> float | None:
    """``PGMIGRATE_LOCK_TIMEOUT``: PostgreSQL ``lock_timeout`` of the migrating connection.

    Seconds or a ``timedelta``; ``None`` (the default) leaves the server's setting alone.
    """
    name = "PGMIGRATE_LOCK_TIMEOUT"
    value = getattr(settings, name, None)
    if value is None:
        return None
    seconds = _seconds(name, value)
    if seconds < MIN_LOCK_TIMEOUT:
        raise ImproperlyConfigured(
            f"{name} must be at least 1 millisecond, or None for no lock timeout, not {value!r}."
        )
    return seconds


def patch_migrate() -> bool:
    """``PGMIGRATE_PATCH_MIGRATE``: make ``manage.py migrate`` run pgmigrate (default True)."""
    return _bool("PGMIGRATE_PATCH_MIGRATE", True)


def atomic() -> bool:
    """``PGMIGRATE_ATOMIC``: run each atomic migration in one transaction, as Django does.

    Defaults to False: pgmigrate runs each operation in a transaction of its own, with its
    progress record, so that no lock is held longer than its operation needs and a migration
    that stops part of the way through resumes exactly (``pgmigrate.run``).
    """
    return _bool("PGMIGRATE_ATOMIC", False)


def protected() -> dict[str, list[str]]:
    """``PGMIGRATE_PROTECTED``: sessions never to be ended, as ``pg_stat_activity`` column
    names mapped to lists of shell-style patterns, e.g. ``{"application_name": ["pg_dump"]}``.

    Replication senders and autovacuum are always protected. A protected blocker is shown
    instead, and the lock timeout (if set) decides.
    """
    name = "PGMIGRATE_PROTECTED"
    value = getattr(settings, name, {})
    if not isinstance(value, dict):
        raise ImproperlyConfigured(
            f"{name} must be a dict of pg_stat_activity column names to lists of patterns, "
            f"not {value!r}."
        )
    rules: dict[str, list[str]] = {}
    for column, patterns in value.items():
        if column not in protection.ACTIVITY_COLUMNS:
            raise ImproperlyConfigured(
                f"{name}: {column!r} is not a column of pg_stat_activity (use one of "
                f"{', '.join(sorted(protection.ACTIVITY_COLUMNS))})."
            )
        if isinstance(patterns, str) or not isinstance(patterns, (list, tuple)):
            raise ImproperlyConfigured(
                f"{name}[{column!r}] must be a list of patterns, not {patterns!r}."
            )
        if not all(isinstance(pattern, str) for pattern in patterns):
            raise ImproperlyConfigured(f"{name}[{column!r}] must hold strings only.")
        rules[column] = list(patterns)
    return rules


#: Values accepted by ``PGMIGRATE_CONCURRENT_MIGRATE``.
CONCURRENT_MIGRATE_CHOICES = ("wait", "fail")


def concurrent_migrate() -> str:
    """``PGMIGRATE_CONCURRENT_MIGRATE``: what a ``migrate`` does while another one runs on
    the same database: ``"wait"`` for it (the default) or ``"fail"`` at once."""
    name = "PGMIGRATE_CONCURRENT_MIGRATE"
    value = getattr(settings, name, "wait")
    if value not in CONCURRENT_MIGRATE_CHOICES:
        raise ImproperlyConfigured(f'{name} must be "wait" or "fail", not {value!r}.')
    return value


def _count(name: str, default: int) -> int:
    value = getattr(settings, name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ImproperlyConfigured(f"{name} must be a whole number >= 0, not {value!r}.")
    return value


def _positive_seconds(name: str, default: float | None) -> float | None:
    value = getattr(settings, name, default)
    if value is None:
        return None
    seconds = _seconds(name, value)
    if seconds < MIN_LOCK_TIMEOUT:
        raise ImproperlyConfigured(f"{name} must be at least 1 millisecond, not {value!r}.")
    return seconds


def lock_retries() -> int:
    """``PGMIGRATE_LOCK_RETRIES``: how often what hit the lock timeout is retried (default 0):
    the operation's transaction (a statement alone when it runs outside a transaction, in an
    ``atomic = False`` migration); with ``PGMIGRATE_ATOMIC`` the whole migration."""
    return _count("PGMIGRATE_LOCK_RETRIES", 0)


#: Default first delay between lock-timeout retries, and the cap of the growing delay.
DEFAULT_LOCK_RETRY_DELAY, DEFAULT_LOCK_RETRY_MAX_DELAY = 0.5, 30.0


def lock_retry_delay() -> float:
    """``PGMIGRATE_LOCK_RETRY_DELAY``: the delay before the first retry (default 0.5 s); it
    doubles with each attempt, with random jitter, up to ``PGMIGRATE_LOCK_RETRY_MAX_DELAY``."""
    value = _positive_seconds("PGMIGRATE_LOCK_RETRY_DELAY", DEFAULT_LOCK_RETRY_DELAY)
    assert value is not None
    return value


def lock_retry_max_delay() -> float:
    """``PGMIGRATE_LOCK_RETRY_MAX_DELAY``: cap of the delay between retries (default 30 s)."""
    value = _positive_seconds("PGMIGRATE_LOCK_RETRY_MAX_DELAY", DEFAULT_LOCK_RETRY_MAX_DELAY)
    assert value is not None
    return value


def statement_timeout() -> float | None:
    """``PGMIGRATE_STATEMENT_TIMEOUT``: PostgreSQL ``statement_timeout`` of the migrating
    connection (seconds or ``timedelta``; default None: the server's setting). Operations in
    ``PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT`` run without it."""
    return _positive_seconds("PGMIGRATE_STATEMENT_TIMEOUT", None)


#: Operations that must not be cut short by ``PGMIGRATE_STATEMENT_TIMEOUT`` by default.
DEFAULT_STATEMENT_TIMEOUT_EXEMPT = (
    "django.db.migrations.operations.RunPython",
    "django.contrib.postgres.operations.AddIndexConcurrently",
    "django.contrib.postgres.operations.RemoveIndexConcurrently",
    "django.contrib.postgres.operations.ValidateConstraint",
)


def statement_timeout_exempt() -> tuple[type, ...]:
    """``PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT``: operation classes (or dotted paths) that run
    without the statement timeout. Defaults to ``RunPython``, the ``CONCURRENTLY`` index
    operations and ``ValidateConstraint``; ``RunSQL`` whose SQL says ``CONCURRENTLY`` is
    exempt too."""
    name = "PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT"
    value = getattr(settings, name, DEFAULT_STATEMENT_TIMEOUT_EXEMPT)
    if isinstance(value, (str, type)) or not isinstance(value, (list, tuple)):
        raise ImproperlyConfigured(f"{name} must be a list of operation classes or paths.")
    classes: list[type] = []
    for item in value:
        if isinstance(item, str):
            try:
                item = import_string(item)
            except ImportError as exc:
                if item in DEFAULT_STATEMENT_TIMEOUT_EXEMPT:
                    continue  # e.g. django.contrib.postgres is not importable
                raise ImproperlyConfigured(f"{name}: cannot import {item!r}: {exc}") from exc
        if not isinstance(item, type):
            raise ImproperlyConfigured(f"{name}: {item!r} is not an operation class.")
        classes.append(item)
    return tuple(classes)


def log_queries() -> bool:
    """``PGMIGRATE_LOG_QUERIES``: include blockers' SQL text in log events and signals
    (default False: it can hold personal data)."""
    return _bool("PGMIGRATE_LOG_QUERIES", False)
