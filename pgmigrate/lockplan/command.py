"""``manage.py pgmigrate --lock-plan [app_label] [migration_name]`` (and ``migrate``, when
patched): print the lock plan of the pending migrations instead of applying them.

It applies nothing, takes no advisory lock, creates no table (not even Django's
``django_migrations``) and starts no watcher: it reads the migration files, Django's
``django_migrations``, pgmigrate's ``pgmigrate_progress`` (if it exists) and the catalog.
``--json`` prints the plan as JSON on stdout (notices go to stderr); ``--ci`` fails (exit
status 1) when a rule at error level is broken.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, connections
from django.db.migrations.executor import MigrationExecutor

from pgmigrate import config
from pgmigrate.errors import first_line
from pgmigrate.lockplan import holders, render, rules
from pgmigrate.lockplan.locks import classify
from pgmigrate.lockplan.plan import Planner, pending
from pgmigrate.options import RunOptions
from pgmigrate.text import printable

#: The options of ``migrate`` that apply something, or do something else than plan:
#: refused with ``--lock-plan``.
INCOMPATIBLE = (
    ("fake", "--fake"),
    ("fake_initial", "--fake-initial"),
    ("plan", "--plan"),
    ("check_unapplied", "--check"),
    ("prune", "--prune"),
    ("run_syncdb", "--run-syncdb"),
    ("pgmigrate_restart", "--pgmigrate-restart"),
    ("pgmigrate_report", "--pgmigrate-report"),
)


def wanted(options: dict[str, Any]) -> bool:
    """Whether the command line asks for the lock plan (or one of its options)."""
    return bool(options.get("lock_plan") or options.get("ci") or options.get("json"))


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    """Print the lock plan for ``migrate``'s ``options`` on ``command``'s stdout; raise
    ``CommandError`` (exit status 1) for bad options or settings, a database that is not
    PostgreSQL or cannot be reached, and with ``--ci`` when a rule at error level is broken
    (one line per rule)."""
    if not options.get("lock_plan"):
        given = "--ci" if options.get("ci") else "--json"
        raise CommandError(f"pgmigrate: {given} works with --lock-plan only.")
    for key, flag in INCOMPATIBLE:
        if options.get(key):
            raise CommandError(f"pgmigrate: --lock-plan applies nothing: drop {flag}.")
    using = options["database"]
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise CommandError(
            f"pgmigrate: --lock-plan needs PostgreSQL; database {using!r} is {connection.vendor}."
        )
    if not command.requires_system_checks and not options.get("skip_checks"):
        # Django 4.2's migrate runs the checks in handle (5.0+: before it, in execute).
        command.check(databases=[using])
    # The settings with --blocking-action and --step-aside on top, as migrate reads them.
    run_options = RunOptions.from_command(options)
    policy = holders.Policy(run_options.action, run_options.protected, run_options.step_aside)
    try:
        settings = rules.resolve(config.lock_plan_rules(), config.lock_plan_threshold())
        allowed = config.lock_plan_allow()
    except ImproperlyConfigured as exc:  # the checks were skipped (--skip-checks)
        raise CommandError(f"pgmigrate: {printable(exc)}") from exc
    try:
        executor = MigrationExecutor(connection)
        executor.loader.check_consistent_history(connection)
    except OperationalError as exc:
        if connection.connection is not None:
            raise
        raise CommandError(
            f"pgmigrate: cannot connect to database {using!r}: {printable(first_line(exc))}. "
            "Nothing was planned."
        ) from exc
    migrations = pending(executor, options.get("app_label"), options.get("migration_name"))
    planner = Planner(using, classify, policy=policy, settings=settings, allowed=allowed)
    plan = planner.plan(executor, migrations)
    if options.get("json"):
        command.stdout.write(render.as_json(plan))
    else:
        command.stdout.write(render.text(plan, verbosity=options.get("verbosity", 1)), ending="")
    if options.get("ci") and plan.failed:
        reasons = render.failures(plan)
        raise CommandError(
            f"pgmigrate: the lock plan breaks {len(reasons)} rule(s) at error level:\n"
            + "\n".join(reasons)
        )
