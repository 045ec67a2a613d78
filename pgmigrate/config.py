"""Settings of pgmigrate: one validated accessor per setting.

Each accessor reads its ``PGMIGRATE_*`` setting, applies the default and raises
``ImproperlyConfigured`` with a clear message when the value is unusable. The system
checks in ``pgmigrate.checks`` call them to turn bad values into check errors.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from pgmigrate import actions, protection

if TYPE_CHECKING:
    from pgmigrate.lockplan.rules import Override

#: Default for ``PGMIGRATE_BLOCKING_ACTION_INTERVAL``, in seconds.
DEFAULT_BLOCKING_ACTION_INTERVAL = 0.005
#: The watcher's first look at a statement comes this fraction of an interval after it starts.
FIRST_LOOK = 0.2
#: Time the watcher needs to act once a statement waits, beyond its first look (measured in
#: milliseconds by ``make bench``; this leaves a wide margin), in seconds.
ACT_MARGIN = 0.05
#: Bounds accepted for ``PGMIGRATE_BLOCKING_ACTION_INTERVAL``, in seconds.
MIN_INTERVAL, MAX_INTERVAL = 0.001, 60.0
#: Smallest lock timeout PostgreSQL can express (it counts milliseconds).
MIN_LOCK_TIMEOUT = 0.001
#: Largest lock or statement timeout PostgreSQL accepts, in seconds: 2147483647 milliseconds
#: (its integer range), about 24.8 days.
MAX_TIMEOUT = 2147483.647
#: Largest ``PGMIGRATE_LOCK_RETRIES`` (and ``--lock-retries``): 2**63 - 1, PostgreSQL's
#: bigint range and ``sys.maxsize`` on 64-bit Pythons; retried without end, for all purposes.
MAX_LOCK_RETRIES = 2**63 - 1
#: Largest delay between lock-timeout retries, in seconds (one hour).
MAX_RETRY_DELAY = 3600.0
#: Default of ``PGMIGRATE_LOCK_PLAN_THRESHOLD``, in bytes (10 MiB).
DEFAULT_LOCK_PLAN_THRESHOLD = 10 * 1024**2

_UNSET: Any = object()


def time_to_act(interval: float) -> float:
    """Seconds a lock timeout must leave the watcher to act on blockers, with
    ``PGMIGRATE_BLOCKING_ACTION_INTERVAL`` ``interval`` (seconds): its first look, plus
    ``ACT_MARGIN`` (``pgmigrate.W002``)."""
    return interval * FIRST_LOOK + ACT_MARGIN


def _shown(value: object) -> str:
    """``repr(value)`` for a message, shortened (an int of 10,000 digits has no repr)."""
    try:
        text = repr(value)
    except ValueError:
        kind = type(value).__name__
        return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind} too large to show"
    return text if len(text) <= 80 else text[:77] + "..."


def _seconds(name: str, value: object) -> float:
    """Convert a number of seconds or a ``timedelta`` to float seconds, or fail clearly.

    NaN stays NaN and an int too large for a float becomes infinity: callers check the
    range, which neither is in."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.inf
    raise ImproperlyConfigured(
        f"{name} must be a number of seconds or a datetime.timedelta, not {_shown(value)}."
    )


def _seconds_between(name: str, value: object, low: float, high: float, bounds: str) -> float:
    """``_seconds``, failing with ``"{name} must be {bounds}, not {value}"`` unless the
    result is from ``low`` to ``high`` (never for NaN or infinity)."""
    seconds = _seconds(name, value)
    if not low <= seconds <= high:
        raise ImproperlyConfigured(f"{name} must be {bounds}, not {_shown(value)}.")
    return seconds


def _bool(name: str, default: bool) -> bool:
    value = getattr(settings, name, default)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"{name} must be True or False, not {value!r}.")
    return value


#: Short names of the built-in actions, accepted by ``PGMIGRATE_BLOCKING_ACTION`` and
#: ``--blocking-action`` alike (in any case).
ACTION_NAMES: dict[str, str | None] = {
    "terminate": "pgmigrate.Terminate",
    "cancel": "pgmigrate.Cancel",
    "show": "pgmigrate.Show",
    "none": None,
}


def resolve_action(value: object, *, name: str) -> actions.BlockingAction | None:
    """The action that ``value`` names: a short name (``ACTION_NAMES``), a dotted path, a
    ``BlockingAction`` subclass or instance, or ``None``. ``name`` (the setting or option)
    is named in the ``ImproperlyConfigured`` raised for anything else."""
    if isinstance(value, str):
        short = value.strip().lower()
        if short in ACTION_NAMES:
            value = ACTION_NAMES[short]
        elif "." not in value:
            raise ImproperlyConfigured(
                f"{name}: {_shown(value)} is not an action: use one of "
                f"{', '.join(ACTION_NAMES)}, or a dotted path such as 'pgmigrate.Show'."
            )
    try:
        return actions.resolve(value, setting=name)
    except ImproperlyConfigured as exc:
        if not isinstance(value, str):
            raise
        raise ImproperlyConfigured(
            f"{str(exc).rstrip('.')}. Use one of {', '.join(ACTION_NAMES)}, or a dotted path "
            "such as 'pgmigrate.Show'."
        ) from exc


def blocking_action() -> actions.BlockingAction | None:
    """``PGMIGRATE_BLOCKING_ACTION``: what to do with sessions that block a migration.

    A ``BlockingAction`` subclass, an instance of one, a dotted path to either, one of the
    short names ``"terminate"``, ``"cancel"``, ``"show"`` and ``"none"``, or ``None``.
    Defaults to ``pgmigrate.Terminate``.
    """
    name = "PGMIGRATE_BLOCKING_ACTION"
    return resolve_action(getattr(settings, name, actions.Terminate), name=name)


def blocking_action_interval() -> float:
    """``PGMIGRATE_BLOCKING_ACTION_INTERVAL``: seconds between looks at the migrating backend.

    The watcher first looks a fifth of an interval after a statement starts, then at growing gaps
    while the statement runs; once the backend waits on a lock it acts at once.
    """
    name = "PGMIGRATE_BLOCKING_ACTION_INTERVAL"
    value = getattr(settings, name, DEFAULT_BLOCKING_ACTION_INTERVAL)
    bounds = f"between {MIN_INTERVAL} and {MAX_INTERVAL:g} seconds"
    return _seconds_between(name, value, MIN_INTERVAL, MAX_INTERVAL, bounds)


#: What a lock or statement timeout may be, as the error messages say it.
TIMEOUT_BOUNDS = (
    "at least 1 millisecond and at most 2147483.647 seconds (PostgreSQL's limit, about 24.8 "
    "days), or None for no {what}"
)


def lock_timeout() -> float | None:
    """``PGMIGRATE_LOCK_TIMEOUT``: PostgreSQL ``lock_timeout`` of the migrating connection.

    Seconds (float) or a ``timedelta``, from 0.001 to ``MAX_TIMEOUT`` (2147483.647); ``None``
    (the default) leaves the server's setting alone.
    """
    name = "PGMIGRATE_LOCK_TIMEOUT"
    value = getattr(settings, name, None)
    if value is None:
        return None
    bounds = TIMEOUT_BOUNDS.format(what="lock timeout")
    return _seconds_between(name, value, MIN_LOCK_TIMEOUT, MAX_TIMEOUT, bounds)


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


def _count(name: str, default: int, maximum: int | None = None) -> int:
    value = getattr(settings, name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ImproperlyConfigured(f"{name} must be a whole number >= 0, not {_shown(value)}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(
            f"{name} must be a whole number from 0 to {maximum}, not {_shown(value)}."
        )
    return value


def _retry_delay(name: str, default: float) -> float:
    value = getattr(settings, name, default)
    bounds = "at least 1 millisecond and at most 3600 seconds (one hour)"
    return _seconds_between(name, value, MIN_LOCK_TIMEOUT, MAX_RETRY_DELAY, bounds)


def lock_retries() -> int:
    """``PGMIGRATE_LOCK_RETRIES``: how often what hit the lock timeout is retried (default 0):
    the operation's transaction (a statement alone when it runs outside a transaction, in an
    ``atomic = False`` migration); with ``PGMIGRATE_ATOMIC`` the whole migration."""
    return _count("PGMIGRATE_LOCK_RETRIES", 0, MAX_LOCK_RETRIES)


#: Default first delay between lock-timeout retries, and the cap of the growing delay.
DEFAULT_LOCK_RETRY_DELAY, DEFAULT_LOCK_RETRY_MAX_DELAY = 0.5, 30.0


def lock_retry_delay() -> float:
    """``PGMIGRATE_LOCK_RETRY_DELAY``: the delay before the first retry, in seconds (float;
    default 0.5, at most ``MAX_RETRY_DELAY``); it doubles with each attempt, with random
    jitter, up to ``PGMIGRATE_LOCK_RETRY_MAX_DELAY``."""
    return _retry_delay("PGMIGRATE_LOCK_RETRY_DELAY", DEFAULT_LOCK_RETRY_DELAY)


def lock_retry_max_delay() -> float:
    """``PGMIGRATE_LOCK_RETRY_MAX_DELAY``: cap of the delay between retries, in seconds
    (float; default 30, at most ``MAX_RETRY_DELAY``)."""
    return _retry_delay("PGMIGRATE_LOCK_RETRY_MAX_DELAY", DEFAULT_LOCK_RETRY_MAX_DELAY)


def statement_timeout() -> float | None:
    """``PGMIGRATE_STATEMENT_TIMEOUT``: PostgreSQL ``statement_timeout`` of the migrating
    connection, in seconds (float; from 0.001 to ``MAX_TIMEOUT``) or a ``timedelta``;
    default None: the server's setting. Operations in ``PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT``
    run without it."""
    name = "PGMIGRATE_STATEMENT_TIMEOUT"
    value = getattr(settings, name, None)
    if value is None:
        return None
    bounds = TIMEOUT_BOUNDS.format(what="statement timeout")
    return _seconds_between(name, value, MIN_LOCK_TIMEOUT, MAX_TIMEOUT, bounds)


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
    from django.db.migrations.operations.base import Operation

    classes: list[type] = []
    for item in value:
        if isinstance(item, str):
            try:
                item = actions.import_path(item, setting=name)
            except ImproperlyConfigured:
                if item in DEFAULT_STATEMENT_TIMEOUT_EXEMPT:
                    continue  # e.g. django.contrib.postgres is not importable
                raise
        if not isinstance(item, type) or not issubclass(item, Operation):
            raise ImproperlyConfigured(
                f"{name}: {_shown(item)} is not an operation class (a subclass of "
                "django.db.migrations.operations.base.Operation, such as RunPython)."
            )
        classes.append(item)
    return tuple(classes)


def log_queries() -> bool:
    """``PGMIGRATE_LOG_QUERIES``: include blockers' SQL text in log events and signals
    (default False: it can hold personal data)."""
    return _bool("PGMIGRATE_LOG_QUERIES", False)


def step_aside() -> bool:
    """``PGMIGRATE_STEP_ASIDE``: leave the lock queue while the sessions blocking the
    migration are ones pgmigrate will not end, and run the statement again once they are gone
    (default True; see ``pgmigrate.aside``). False queues behind them, as PostgreSQL does."""
    return _bool("PGMIGRATE_STEP_ASIDE", True)


def lock_plan_threshold() -> int:
    """``PGMIGRATE_LOCK_PLAN_THRESHOLD``: the table size, in bytes (a whole number >= 0),
    over which the lock plan's sized rules (``pgmigrate.L001`` to ``L003``) report a
    rewrite, a full scan or an index build. Defaults to 10 MiB (10485760)."""
    return _count("PGMIGRATE_LOCK_PLAN_THRESHOLD", DEFAULT_LOCK_PLAN_THRESHOLD)


def lock_plan_rules() -> dict[str, Override]:
    """``PGMIGRATE_LOCK_PLAN_RULES``: the lock plan's rules to change, as a dict of rule IDs
    (``"pgmigrate.L001"``) to a level (``"off"``, ``"warning"`` or ``"error"``) or to a dict
    with ``"level"`` and/or ``"threshold"`` (bytes, a whole number >= 0). Returns
    ``pgmigrate.lockplan.rules.Override`` by rule ID; default: no change."""
    name = "PGMIGRATE_LOCK_PLAN_RULES"
    value = getattr(settings, name, {})
    if not isinstance(value, dict):
        raise ImproperlyConfigured(
            f"{name} must be a dict of rule IDs to a level or a dict, not {_shown(value)}."
        )
    if not value:
        return {}
    from pgmigrate.lockplan import rules as plan_rules  # only --lock-plan needs the rules

    overrides: dict[str, Override] = {}
    for rule_id, setting in value.items():
        if rule_id not in plan_rules.RULES:
            raise ImproperlyConfigured(
                f"{name}: {_shown(rule_id)} is not a rule of the lock plan (use one of "
                f"{', '.join(plan_rules.RULES)})."
            )
        if isinstance(setting, str):
            setting = {"level": setting}
        if not isinstance(setting, dict) or not set(setting) <= {"level", "threshold"}:
            raise ImproperlyConfigured(
                f"{name}[{rule_id!r}] must be a level ({', '.join(plan_rules.LEVELS)}) or a dict "
                f'with "level" and/or "threshold", not {_shown(setting)}.'
            )
        level = setting.get("level")
        if level is not None and level not in plan_rules.LEVELS:
            raise ImproperlyConfigured(
                f"{name}[{rule_id!r}]: the level must be one of {', '.join(plan_rules.LEVELS)}, "
                f"not {_shown(level)}."
            )
        threshold = setting.get("threshold")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0
        ):
            raise ImproperlyConfigured(
                f"{name}[{rule_id!r}]: the threshold must be a whole number of bytes >= 0, "
                f"not {_shown(threshold)}."
            )
        if threshold is not None and not plan_rules.RULES[rule_id].sized:
            raise ImproperlyConfigured(
                f"{name}[{rule_id!r}]: this rule has no threshold (it does not depend on a "
                "table's size); give only its level."
            )
        overrides[rule_id] = plan_rules.Override(level=level, threshold=threshold)
    return overrides


def lock_plan_allow() -> dict[str, frozenset[str]]:
    """``PGMIGRATE_LOCK_PLAN_ALLOW``: rules accepted for a migration, as a dict of
    ``"app_label.migration_name"`` to a list of rule IDs, e.g.
    ``{"shop.0042_backfill": ["pgmigrate.L001"]}``. An accepted rule is still shown in the
    plan, marked allowed, and never fails ``--ci``. Default: none."""
    name = "PGMIGRATE_LOCK_PLAN_ALLOW"
    value = getattr(settings, name, {})
    if not isinstance(value, dict):
        raise ImproperlyConfigured(
            f'{name} must be a dict of "app_label.migration_name" to lists of rule IDs, '
            f"not {_shown(value)}."
        )
    if not value:
        return {}
    from pgmigrate.lockplan import rules as plan_rules  # only --lock-plan needs the rules

    allowed: dict[str, frozenset[str]] = {}
    for migration, rule_ids in value.items():
        if not isinstance(migration, str) or migration.count(".") != 1:
            raise ImproperlyConfigured(
                f'{name}: keys must be "app_label.migration_name", not {_shown(migration)}.'
            )
        if isinstance(rule_ids, str) or not isinstance(rule_ids, (list, tuple)):
            raise ImproperlyConfigured(
                f"{name}[{migration!r}] must be a list of rule IDs, not {_shown(rule_ids)}."
            )
        unknown = [
            rule_id
            for rule_id in rule_ids
            if not isinstance(rule_id, str) or rule_id not in plan_rules.RULES
        ]
        if unknown:
            raise ImproperlyConfigured(
                f"{name}[{migration!r}]: {_shown(unknown[0])} is not a rule of the lock plan "
                f"(use one of {', '.join(plan_rules.RULES)})."
            )
        allowed[migration] = frozenset(rule_ids)
    return allowed
