"""What one ``migrate`` run uses: the settings, overridden by command-line options."""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import os
from dataclasses import dataclass, field, replace
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from pgmigrate import actions, config, events
from pgmigrate.text import printable

#: Short names accepted by ``--blocking-action`` (and ``PGMIGRATE_BLOCKING_ACTION``).
ACTION_NAMES = config.ACTION_NAMES


@dataclass(frozen=True)
class RunOptions:
    """The resolved options of one run."""

    action: actions.BlockingAction | None
    interval: float
    lock_timeout: float | None
    lock_retries: int
    lock_retry_delay: float
    lock_retry_max_delay: float
    statement_timeout: float | None
    statement_timeout_exempt: tuple[type, ...]
    atomic: bool
    protected: dict[str, list[str]]
    wait_for_other_migrate: bool
    log_queries: bool
    step_aside: bool = True
    restart: bool = False
    #: ``--fake``: record (un)applied migrations without running them.
    fake: bool = False
    report_path: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls) -> RunOptions:
        return cls(
            action=config.blocking_action(),
            interval=config.blocking_action_interval(),
            lock_timeout=config.lock_timeout(),
            lock_retries=config.lock_retries(),
            lock_retry_delay=config.lock_retry_delay(),
            lock_retry_max_delay=config.lock_retry_max_delay(),
            statement_timeout=config.statement_timeout(),
            statement_timeout_exempt=config.statement_timeout_exempt(),
            atomic=config.atomic(),
            protected=config.protected(),
            wait_for_other_migrate=config.concurrent_migrate() == "wait",
            log_queries=config.log_queries(),
            step_aside=config.step_aside(),
        )

    @classmethod
    def from_command(cls, options: dict[str, Any]) -> RunOptions:
        """The settings, with the command line's ``--blocking-action`` etc. on top.

        The options are checked again here: ``call_command`` passes keyword values as they
        are, without the command line's parser. Anything unusable is a ``CommandError``."""
        overrides: dict[str, Any] = {}
        if options.get("blocking_action") is not None:
            overrides["action"] = parse_action(options["blocking_action"])
        if options.get("lock_timeout") is not None:
            overrides["lock_timeout"] = _timeout("--lock-timeout", options["lock_timeout"])
        if options.get("lock_retries") is not None:
            overrides["lock_retries"] = _retries(options["lock_retries"])
        if options.get("step_aside") is not None:
            overrides["step_aside"] = _flag("--step-aside", options["step_aside"])
        if options.get("statement_timeout") is not None:
            timeout = _timeout("--statement-timeout", options["statement_timeout"])
            overrides["statement_timeout"] = timeout
        restart = _flag("--pgmigrate-restart", options.get("pgmigrate_restart"))
        report_path = _report_path(options.get("pgmigrate_report"))
        if report_path is not None:
            events.check_report_path(report_path)
        try:
            settings = cls.from_settings()
        except ImproperlyConfigured as exc:  # the checks were skipped (--skip-checks)
            raise CommandError(f"pgmigrate: {printable(exc)}") from exc
        if options.get("database") and ("action" in overrides or options.get("skip_checks")):
            # pgmigrate.E019, which the checks see for the setting only, or skipped.
            _check_filters(overrides.get("action", settings.action), options["database"])
        return replace(
            settings,
            restart=restart,
            fake=bool(options.get("fake")),
            report_path=report_path,
            overrides=overrides,
            **overrides,
        )


def _timeout(option: str, value: object) -> float | None:
    """A timeout option's seconds (float), or None for no timeout (0, ``"none"``)."""
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    try:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}")
        return seconds_or_none(value if isinstance(value, str) else repr(float(value))) or None
    except (argparse.ArgumentTypeError, OverflowError) as exc:
        raise CommandError(f"{option}: {printable(exc)}") from None


def _flag(option: str, value: object) -> bool:
    """A yes/no option's value: True or False (None, not given: False). ``call_command``
    passes any value as it is: ``step_aside="no"`` would be true."""
    if value is None or isinstance(value, bool):
        return bool(value)
    raise CommandError(f"{option}: must be True or False, not {printable(repr(value))}")


def _report_path(value: object) -> str | None:
    """``--pgmigrate-report``: the report's path as a string (None: no report)."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise CommandError(
            "pgmigrate: --pgmigrate-report: the report's path must be a string or a path "
            f"(pathlib.Path), not {printable(repr(value))}. Nothing was migrated."
        )
    if not value:
        raise CommandError(
            "pgmigrate: --pgmigrate-report: the path is empty: give the file to write the "
            "report to, or leave the option out for no report. Nothing was migrated."
        )
    return value


def _check_filters(action: actions.BlockingAction | None, using: str) -> None:
    """Raise ``CommandError`` if the filters of ``action`` fail on database ``using``
    (``actions.filters_error``): the blockers would be left alone."""
    if action is None:
        return
    error = actions.filters_error(action, using)
    if error is not None:
        raise CommandError(
            f"pgmigrate: the filters of the blocking action {printable(repr(action))} fail on "
            f"database {using!r}: {error}. Nothing was migrated."
        )


def _retries(value: object) -> int:
    """``--lock-retries``: a whole number >= 0 (an int, or its digits)."""
    if isinstance(value, str):
        try:
            return whole_number(value)
        except argparse.ArgumentTypeError as exc:
            raise CommandError(f"--lock-retries: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CommandError(f"--lock-retries: not a whole number >= 0: {value!r}")
    if value > config.MAX_LOCK_RETRIES:
        raise CommandError(f"--lock-retries: must be at most {config.MAX_LOCK_RETRIES}")
    return value


def parse_action(value: object) -> actions.BlockingAction | None:
    """``--blocking-action``: terminate, cancel, show, none, or a dotted path (resolved as
    ``PGMIGRATE_BLOCKING_ACTION`` is, by ``config.resolve_action``)."""
    try:
        return config.resolve_action(value, name="--blocking-action")
    except ImproperlyConfigured as exc:
        raise CommandError(printable(exc)) from exc


#: What ``seconds_or_none`` returns for "no timeout" (None would mean "not given").
NO_TIMEOUT = 0.0
#: Words of ``--lock-timeout``/``--statement-timeout`` for no timeout (as is any zero).
NO_TIMEOUT_WORDS = ("none", "off")


def seconds_or_none(text: str) -> float:
    """argparse type of ``--lock-timeout``/``--statement-timeout``: seconds (float, from
    0.001 to ``config.MAX_TIMEOUT``), or ``0``/``none``/``off`` for no timeout
    (``NO_TIMEOUT``). A positive value below 1 ms is refused, also one that only rounds to a
    float zero (``1e-400``): PostgreSQL counts whole milliseconds, 0 meaning no timeout."""
    if text.strip().lower() in NO_TIMEOUT_WORDS:
        return NO_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value == 0 and _is_zero(text):
        return NO_TIMEOUT
    if not config.MIN_LOCK_TIMEOUT <= value <= config.MAX_TIMEOUT:  # NaN and inf too
        raise argparse.ArgumentTypeError(
            "must be at least 0.001 and at most 2147483.647 seconds (PostgreSQL's limit, "
            f"about 24.8 days), or 0 or none for no timeout, not {text!r}"
        )
    return value


def _is_zero(text: str) -> bool:
    """Whether the number ``text`` is zero as written (``1e-400`` is not: it only rounds to
    a float zero, and a positive timeout must not become no timeout)."""
    try:
        return decimal.Decimal(text.strip().replace("_", "")) == 0
    except decimal.InvalidOperation:
        return False


def whole_number(text: str) -> int:
    """argparse type: a whole number >= 0 (``--lock-retries``: at most
    ``config.MAX_LOCK_RETRIES``)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a whole number >= 0: {text!r}")
    if value > config.MAX_LOCK_RETRIES:
        raise argparse.ArgumentTypeError(f"must be at most {config.MAX_LOCK_RETRIES}: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """pgmigrate's options of ``migrate`` and ``pgmigrate``."""
    group = parser.add_argument_group("pgmigrate (PostgreSQL only)")
    group.add_argument(
        "--blocking-action",
        metavar="ACTION",
        help="What to do with sessions blocking the migration, for this run: terminate, "
        "cancel, show, none, or a dotted path (default: PGMIGRATE_BLOCKING_ACTION).",
    )
    group.add_argument(
        "--lock-timeout",
        type=seconds_or_none,
        metavar="SECONDS",
        help="lock_timeout of the migrating connection, in seconds; 0 or 'none' for none "
        "(default: PGMIGRATE_LOCK_TIMEOUT).",
    )
    group.add_argument(
        "--lock-retries",
        type=whole_number,
        metavar="N",
        help="Retries of a statement that hit the lock timeout (default: PGMIGRATE_LOCK_RETRIES).",
    )
    group.add_argument(
        "--step-aside",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Leave the lock queue while the blocking sessions are ones pgmigrate will not "
        "end, and run the statement again once they are gone (default: PGMIGRATE_STEP_ASIDE).",
    )
    group.add_argument(
        "--statement-timeout",
        type=seconds_or_none,
        metavar="SECONDS",
        help="statement_timeout of the migrating connection, in seconds; 0 or 'none' for "
        "none (default: PGMIGRATE_STATEMENT_TIMEOUT).",
    )
    group.add_argument(
        "--pgmigrate-restart",
        action="store_true",
        help="Forget the recorded progress of half-applied migrations (after repairing them "
        "by hand) instead of resuming them.",
    )
    group.add_argument(
        "--pgmigrate-report",
        metavar="FILE",
        help="Write a JSON report of the run (per migration: duration, lock wait, blockers).",
    )
    group.add_argument(
        "--lock-plan",
        action="store_true",
        help="Apply nothing: print what each statement of the pending migrations will lock, "
        "for how long on the tables as they are now, who is in its way, and the rules it "
        "breaks.",
    )
    group.add_argument(
        "--ci",
        action="store_true",
        help="With --lock-plan: exit with status 1 when a rule at error level is broken.",
    )
    group.add_argument(
        "--json",
        action="store_true",
        help="With --lock-plan: print the plan as JSON on stdout.",
    )


def effective_lock_timeout(run_options: RunOptions, connection: Any) -> float | None:
    """The lock timeout that bounds the migration's lock waits, in seconds (None: none):
    pgmigrate's, else the server's ``lock_timeout`` (role, database, ...), read from the
    migrating ``connection`` only then. It also bounds a wait out of the lock queue
    (``pgmigrate.aside``), where no server timeout runs."""
    if run_options.lock_timeout is not None:
        return run_options.lock_timeout
    return _server_timeout(connection, "lock_timeout")


def effective_statement_timeout(run_options: RunOptions, connection: Any) -> float | None:
    """The statement timeout of the migration's statements, in seconds (None: none):
    pgmigrate's, else the server's ``statement_timeout``, read from ``connection`` then."""
    if run_options.statement_timeout is not None:
        return run_options.statement_timeout
    return _server_timeout(connection, "statement_timeout")


def _server_timeout(connection: Any, name: str) -> float | None:
    """The server's setting ``name`` (``lock_timeout``, ``statement_timeout``) on Django
    ``connection``, in seconds; None for 0 (no timeout)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)::interval", [name])
        timeout: dt.timedelta = cursor.fetchone()[0]
    return timeout.total_seconds() or None


def too_short_to_act(run_options: RunOptions, lock_timeout: float | None) -> str | None:
    """What to tell the user when the lock timeout leaves the watcher no time to act on
    blockers (``pgmigrate.W002`` at run time): for ``--lock-timeout`` and for the server's
    ``lock_timeout``, which the check does not see; None otherwise (the setting: W002 said
    it). ``lock_timeout`` is ``effective_lock_timeout``'s (seconds; None: none)."""
    action = run_options.action
    needed = config.time_to_act(run_options.interval)
    if lock_timeout is None or action is None or lock_timeout >= needed:
        return None
    if "lock_timeout" in run_options.overrides:
        source = f"--lock-timeout {lock_timeout:g}"
    elif run_options.lock_timeout is None:
        source = f"the server's lock_timeout ({lock_timeout:g} s)"
    else:
        return None
    return (
        f"pgmigrate: {source} is shorter than the watcher needs to act on blockers (about "
        f"{needed:g} s: a fifth of the blocking action's interval plus {config.ACT_MARGIN:g} s), "
        f"so a blocked statement times out before {action!r} can help, and a blocker it ends "
        f"is ended for nothing. Use a lock timeout of at least {needed:g} s."
    )


def retries_without_timeout(run_options: RunOptions, lock_timeout: float | None) -> str | None:
    """What to tell the user when lock retries are asked for but no lock timeout can make a
    statement give up (none set by pgmigrate, and the server's ``lock_timeout`` is 0):
    nothing would ever be retried. None when retries can happen, or none are asked for.

    ``lock_timeout`` is ``effective_lock_timeout``'s (seconds; None: none)."""
    if not run_options.lock_retries or lock_timeout is not None:
        return None
    retries = (
        f"--lock-retries {run_options.lock_retries}"
        if "lock_retries" in run_options.overrides
        else f"PGMIGRATE_LOCK_RETRIES = {run_options.lock_retries}"
    )
    timeout = (
        "--lock-timeout none"
        if "lock_timeout" in run_options.overrides
        else "PGMIGRATE_LOCK_TIMEOUT is None"
    )
    return (
        f"pgmigrate: {retries} has no effect: no lock timeout is set ({timeout}, and the "
        "server's lock_timeout is 0), so no statement gives up waiting for a lock and none is "
        "retried. Set PGMIGRATE_LOCK_TIMEOUT or --lock-timeout."
    )
