"""``manage.py pgmigrate --lock-plan [app_label] [migration_name]`` (and ``migrate``, when
patched): print the lock plan of the pending migrations instead of applying them.

It applies nothing, takes no advisory lock, creates no table (not even Django's
``django_migrations``) and starts no watcher: it reads the migration files, Django's
``django_migrations``, pgmigrate's ``pgmigrate_progress`` (if it exists) and the catalog.
``--json`` prints the plan as JSON on stdout (notices go to stderr); ``--ci`` fails (exit
status 1) when a rule at error level is broken.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, OperationalError, connections
from django.db.migrations.executor import MigrationExecutor

from pgmigrate import config
from pgmigrate.errors import first_line, is_lock_timeout
from pgmigrate.lockplan import holders, render, rules
from pgmigrate.lockplan.locks import classify
from pgmigrate.lockplan.plan import Planner, pending
from pgmigrate.options import RunOptions
from pgmigrate.text import printable

#: How long the plan waits for a lock on a table it reads (s): ``django_migrations`` and
#: ``pgmigrate_progress`` under another session's ACCESS EXCLUSIVE (maintenance, a schema
#: change) would keep it waiting without end. The sizes have a shorter one of their own.
LOCK_WAIT = 10.0

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


@contextlib.contextmanager
def _lock_wait(connection: Any, seconds: float, in_force: list[str]) -> Iterator[None]:
    """Give the session of ``connection`` a ``lock_timeout`` of ``seconds`` unless it has
    one already, and put it back after; the one in force (as PostgreSQL shows it) goes to
    ``in_force``. Connecting may raise ``OperationalError``."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout')")
        (before,) = cursor.fetchone()
        if before == "0":
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, false)", [f"{round(seconds * 1000)}ms"]
            )
        in_force.append(cursor.fetchone()[0] if before == "0" else before)
    try:
        yield
    finally:
        # In a transaction that failed, its end puts the setting back.
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, false)", [before])


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    """Print the lock plan for ``migrate``'s ``options`` on ``command``'s stdout; raise
    ``CommandError`` (exit status 1) for bad options or settings, a database that is not
    PostgreSQL, cannot be reached or ends a read with an error, and with ``--ci`` when a
    rule at error level is broken (one line per rule)."""
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
    in_force: list[str] = []
    try:
        with _lock_wait(connection, LOCK_WAIT, in_force):
            executor = MigrationExecutor(connection)
            executor.loader.check_consistent_history(connection)
            migrations = pending(executor, options.get("app_label"), options.get("migration_name"))
            planner = Planner(using, classify, policy=policy, settings=settings, allowed=allowed)
            plan = planner.plan(executor, migrations)
    except OperationalError as exc:
        if is_lock_timeout(exc):
            raise CommandError(
                f"pgmigrate: --lock-plan gave up waiting for a lock on a table it reads "
                f"(django_migrations, pgmigrate_progress) after lock_timeout = {in_force[0]}: "
                "another session holds it. Nothing was planned; run it again once that "
                "session is done."
            ) from exc
        if connection.connection is None:
            raise CommandError(
                f"pgmigrate: cannot connect to database {using!r}: "
                f"{printable(first_line(exc))}. Nothing was planned."
            ) from exc
        # The server ended a read (a statement_timeout shorter than the sizes' lock
        # timeout, a cancel, a deadlock): one line, not a traceback.
        raise CommandError(
            f"pgmigrate: --lock-plan stopped on database {using!r}: "
            f"{printable(first_line(exc))}. Nothing was planned."
        ) from exc
    known = {f"{app}.{name}" for app, name in executor.loader.disk_migrations or {}}
    for label in sorted(set(allowed) - known):
        command.stderr.write(
            f"pgmigrate: PGMIGRATE_LOCK_PLAN_ALLOW names {printable(label)!r}, which is not a "
            "migration of this project (a typo, or a migration since removed?)."
        )
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
