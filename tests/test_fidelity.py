"""``migrate`` modes that apply nothing are Django's own; pgmigrate sets up only when there
is something to apply or settle."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pglock
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from pgmigrate import progress
from pgmigrate.command import DjangoMigrateCommand, MigrateCommand
from pgmigrate.migrate_lock import LOCK_NAME
from tests.helpers import Session, applied, migrate, pgmigrate_sessions

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


@pytest.fixture
def hold_migrate_lock(sessions: list[Session]) -> Iterator[Callable[[], None]]:
    """Makes another session hold the one-migrate-at-a-time lock (as a deploy's ``migrate``
    would). With ``PGMIGRATE_CONCURRENT_MIGRATE = "fail"``, a command that tries to take it
    fails at once instead of waiting."""

    def hold() -> None:
        holder = Session(application_name="other-migrate")
        sessions.append(holder)
        holder.execute("SELECT pg_advisory_lock(%s)", [pglock.advisory(LOCK_NAME).int_lock_id])

    with override_settings(PGMIGRATE_CONCURRENT_MIGRATE="fail"):
        yield hold


@contextlib.contextmanager
def statements() -> Iterator[list[str]]:
    """The statements run on the default connection in the block."""
    seen: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield seen


def run(command: type, *args: Any, **options: Any) -> tuple[str, list[str], int | None]:
    """Run ``command`` (a migrate command class): its output, its statements on the default
    connection, and the exit status it asked for (``None`` if it returned)."""
    out = io.StringIO()
    status = None
    with statements() as seen:
        try:
            call_command(command(), *args, stdout=out, stderr=out, no_color=True, **options)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
    return out.getvalue(), seen, status


@pytest.mark.parametrize(
    ("args", "options"),
    [
        (("tests",), {"plan": True}),
        (("tests", "zero"), {"plan": True}),
        ((), {"check_unapplied": True}),
        (("tests",), {"check_unapplied": True}),
        (("tests",), {"prune": True}),
    ],
    ids=["plan", "plan-backwards", "check", "check-app", "prune"],
)
def test_modes_that_apply_nothing_are_djangos(scenario, hold_migrate_lock, args, options):
    migrate("tests", "0001")
    hold_migrate_lock()
    ours = run(MigrateCommand, *args, **options)
    djangos = run(DjangoMigrateCommand, *args, **options)
    assert ours == djangos  # output, queries, exit status: no pid line, no lock, no set-up
    assert "pgmigrate" not in ours[0]
    assert applied() == ["0001_initial"]


@pytest.mark.parametrize("args", [(), ("tests",), ("tests", "0003")], ids=["all", "app", "target"])
def test_a_migrate_with_nothing_to_do_is_djangos(scenario, hold_migrate_lock, args):
    migrate("tests")
    hold_migrate_lock()
    ours = run(MigrateCommand, *args)
    assert ours == run(DjangoMigrateCommand, *args)
    assert "pgmigrate" not in ours[0]


def test_a_migrate_with_nothing_to_do_settles_what_the_target_leaves_out(scenario):
    """An unapplied migration that the target leaves out may be half applied: that is read
    from pgmigrate_progress, and settled, although the plan is empty."""
    migrate("tests", "0001")
    out, seen, _ = run(MigrateCommand, "tests", "0001")
    django_out, django_seen, _ = run(DjangoMigrateCommand, "tests", "0001")
    assert out == django_out
    extra = [sql for sql in seen if sql not in django_seen]
    assert extra[0] == progress.WHERE
    assert all("pgmigrate_progress" in sql for sql in extra[1:]), extra
    assert len(extra) <= 2


def test_bad_arguments_fail_before_pgmigrate_queries(scenario, hold_migrate_lock):
    hold_migrate_lock()
    with pytest.raises(CommandError) as ours, statements() as seen:
        call_command(MigrateCommand(), "nonexistent_app", verbosity=0)
    with pytest.raises(CommandError) as djangos, statements() as expected:
        call_command(DjangoMigrateCommand(), "nonexistent_app", verbosity=0)
    assert str(ours.value) == str(djangos.value)
    assert str(ours.value) == "No installed app with label 'nonexistent_app'."
    assert seen == expected


def test_something_to_apply_takes_the_migrate_lock(scenario, hold_migrate_lock):
    hold_migrate_lock()
    with pytest.raises(CommandError, match="another migrate is running on this database"):
        migrate("tests")
    assert applied() == []


def test_a_mocked_executor_migrate_runs_nothing_of_pgmigrates(scenario):
    """Django's own tests mock ``MigrationExecutor.migrate``: pgmigrate's set-up lives inside
    it, so nothing of pgmigrate runs (no pid query, no lock, no watcher connection)."""
    target = "django.db.migrations.executor.MigrationExecutor.migrate"
    with mock.patch(target) as mocked:
        ours = run(MigrateCommand, "tests")
        djangos = run(DjangoMigrateCommand, "tests")
    assert mocked.call_count == 2
    assert ours == djangos
    assert "pgmigrate" not in ours[0]
    assert not pgmigrate_sessions()


@pytest.mark.parametrize(
    ("before", "args", "options"),
    [
        ({"args": ("tests", "zero")}, ("tests",), {}),
        ({"args": ("tests",)}, ("tests", "0001"), {}),
        ({"args": ("tests",), "fake": True}, ("tests", "zero"), {"fake": True}),
    ],
    ids=["apply", "unapply", "fake"],
)
def test_stdout_of_a_run_without_incident_is_djangos(scenario, before, args, options):
    """pgmigrate's backend pid line goes to stderr, and a run without incident has no
    summary: stdout is Django's, line for line (Django's own tests assert it)."""

    def stdout_of(command: type) -> str:
        migrate(*before["args"], fake=before.get("fake", False))
        out = io.StringIO()
        call_command(command(), *args, stdout=out, stderr=io.StringIO(), no_color=True, **options)
        return re.sub(r"\(\d+\.\d+s\)", "(...s)", out.getvalue())

    assert stdout_of(MigrateCommand) == stdout_of(DjangoMigrateCommand)
