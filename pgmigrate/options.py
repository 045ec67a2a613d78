"""What one ``migrate`` run uses: the settings, overridden by command-line options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from pgmigrate import actions, config

#: Short names accepted by ``--blocking-action``.
ACTION_NAMES = {
    "terminate": "pgmigrate.Terminate",
    "cancel": "pgmigrate.Cancel",
    "show": "pgmigrate.Show",
    "none": None,
}


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
        )

    @classmethod
    def from_command(cls, options: dict[str, Any]) -> RunOptions:
        """The settings, with the command line's ``--blocking-action`` etc. on top."""
        overrides: dict[str, Any] = {}
        if options.get("blocking_action") is not None:
            overrides["action"] = parse_action(options["blocking_action"])
        if options.get("lock_timeout") is not None:
            overrides["lock_timeout"] = options["lock_timeout"] or None
        if options.get("lock_retries") is not None:
            overrides["lock_retries"] = options["lock_retries"]
        if options.get("statement_timeout") is not None:
            overrides["statement_timeout"] = options["statement_timeout"] or None
        return replace(
            cls.from_settings(),
            restart=bool(options.get("pgmigrate_restart")),
            fake=bool(options.get("fake")),
            report_path=options.get("pgmigrate_report"),
            overrides=overrides,
            **overrides,
        )


def parse_action(value: str) -> actions.BlockingAction | None:
    """``--blocking-action``: terminate, cancel, show, none, or a dotted path."""
    path = ACTION_NAMES.get(value.lower(), value)
    try:
        return actions.resolve(path, setting="--blocking-action")
    except ImproperlyConfigured as exc:
        raise CommandError(
            f"{str(exc).rstrip('.')}. Use one of {', '.join(ACTION_NAMES)} or a dotted path to "
            "an action."
        ) from exc


#: What ``seconds_or_none`` returns for "no timeout" (None would mean "not given").
NO_TIMEOUT = 0.0


def seconds_or_none(text: str) -> float:
    """argparse type: seconds (``0.5``), or ``none``/``0`` for no timeout (``NO_TIMEOUT``)."""
    if text.lower() in ("none", "0", "off"):
        return NO_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < config.MIN_LOCK_TIMEOUT:
        raise argparse.ArgumentTypeError(f"must be at least 0.001 seconds, not {text!r}")
    return value


def whole_number(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a whole number >= 0: {text!r}")
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
        help="lock_timeout of the migrating connection; 'none' for none "
        "(default: PGMIGRATE_LOCK_TIMEOUT).",
    )
    group.add_argument(
        "--lock-retries",
        type=whole_number,
        metavar="N",
        help="Retries of a statement that hit the lock timeout (default: PGMIGRATE_LOCK_RETRIES).",
    )
    group.add_argument(
        "--statement-timeout",
        type=seconds_or_none,
        metavar="SECONDS",
        help="statement_timeout of the migrating connection; 'none' for none "
        "(default: PGMIGRATE_STATEMENT_TIMEOUT).",
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
