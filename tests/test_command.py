"""The patched ``migrate`` and ``pgmigrate`` commands: pid, patching, clean-up."""

import io
import re

import pgactivity
import pytest
from django.core import checks
from django.core.management import call_command, load_command_class
from django.core.management.commands import migrate as django_migrate
from django.test import override_settings

import pgmigrate
from pgmigrate import patching
from pgmigrate.command import DjangoMigrateCommand
from tests.helpers import applied, migrate, pgmigrate_sessions, wait_until, watcher_threads

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


def test_migrate_prints_the_backend_pid_before_applying(scenario):
    lines = migrate("tests").splitlines()
    pid_line = (
        f"pgmigrate: migrating with PostgreSQL backend pid {pgactivity.pid()} (database 'default')"
    )
    assert lines[lines.index("Running migrations:") + 1] == pid_line
    assert lines.index(pid_line) < min(i for i, line in enumerate(lines) if "Applying" in line)


def test_pgmigrate_command_takes_migrate_options(scenario):
    out = io.StringIO()
    call_command("pgmigrate", "tests", "0001", stdout=out, stderr=out, no_color=True)
    assert "backend pid" in out.getvalue()
    call_command("pgmigrate", "tests", "--plan", stdout=out)
    assert "tests.0002_add_fields" in out.getvalue()
    call_command("pgmigrate", "tests", "zero", fake=True, stdout=out)
    assert applied() == []


def test_migrate_is_patched_by_default():
    assert patching.is_patched()
    assert isinstance(load_command_class("django.core", "migrate"), pgmigrate.MigrateCommand)


def test_patch_can_be_switched_off(scenario):
    try:
        with override_settings(PGMIGRATE_PATCH_MIGRATE=False):
            patching.apply_setting()
            command = load_command_class("django.core", "migrate")
            assert type(command) is DjangoMigrateCommand
            assert "pgmigrate" not in migrate("tests", "0001")
            out = io.StringIO()
            call_command("pgmigrate", "tests", stdout=io.StringIO(), stderr=out)
            assert "backend pid" in out.getvalue()
    finally:
        patching.apply_setting()
    assert django_migrate.Command is pgmigrate.MigrateCommand


def test_another_migrate_owner_is_reported():
    apps = ["tests.migrate_owner", "pgactivity", "pglock", "pgmigrate", "tests"]
    with override_settings(INSTALLED_APPS=apps):
        assert patching.migrate_command_owner() == "tests.migrate_owner"
        warnings = [m for m in checks.run_checks() if m.id == "pgmigrate.W001"]
        assert len(warnings) == 1
        assert "'tests.migrate_owner' provides its own 'migrate' command" in warnings[0].msg
        with override_settings(PGMIGRATE_PATCH_MIGRATE=False):
            assert not [m for m in checks.run_checks() if m.id == "pgmigrate.W001"]
    assert not [m for m in checks.run_checks() if m.id == "pgmigrate.W001"]


def test_no_thread_or_connection_is_left(scenario):
    for _ in range(3):
        migrate("tests")
        migrate("tests", "zero")
    assert not watcher_threads()
    wait_until(lambda: not pgmigrate_sessions(), what="pgmigrate's connections are gone")


def test_watcher_connection_names_pgmigrate(scenario, sessions):
    from tests.helpers import MigrateThread, Session, is_waiting_on_lock

    migrate("tests", "0001")
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    with override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False):
        run = MigrateThread("tests", "0002")
        wait_until(lambda: is_waiting_on_lock(run.backend_pid), what="migrate waits")
        names = [name for _, name in pgmigrate_sessions()]
        blocker.release()
        run.finish()
    assert names == ["pgmigrate watcher"]


def test_watcher_ends_when_migrate_is_interrupted(scenario, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(DjangoMigrateCommand, "sync_apps", interrupt)
    with pytest.raises(KeyboardInterrupt):
        migrate(run_syncdb=True)
    assert not watcher_threads()
    wait_until(lambda: not pgmigrate_sessions(), what="pgmigrate's connections are gone")


def test_verbosity_zero_prints_nothing(scenario):
    out = migrate("tests", verbosity=0)
    assert not re.search(r"pgmigrate", out)
