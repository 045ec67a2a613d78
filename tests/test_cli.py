"""``manage.py`` in a child process: exit status and messages, as a user sees them."""

import pytest
from django.test import override_settings

from tests.helpers import Session, applied, manage, migrate

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


def test_lock_timeout_exits_1_without_traceback(scenario, sessions):
    migrate("tests", "0001")
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)

    result = manage("migrate", "tests", PGMIGRATE_LOCK_TIMEOUT="0.2", PGMIGRATE_TEST_ACTION="")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "CommandError: pgmigrate: migration tests.0002_add_fields stopped" in result.stderr
    assert "lock timeout (PGMIGRATE_LOCK_TIMEOUT = 0.2 s)" in result.stderr
    assert "backend pid" in result.stderr  # a status line: stdout stays Django's
    assert applied() == ["0001_initial"]


@pytest.mark.scenario("partial")
def test_partial_failure_exits_1_with_report(scenario):
    result = manage("migrate", "tests", PGMIGRATE_TEST_SCENARIO="partial")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "CommandError: pgmigrate: migration tests.0002_partial failed." in result.stderr
    assert "is not recorded as applied: operation 4 of 5 failed" in result.stderr


@pytest.mark.scenario("partial")
def test_a_half_applied_migration_without_its_file_is_named_on_a_deploy(scenario):
    """The code rolled back after an interrupted deploy: its ``migrate`` has nothing to
    apply, yet the database holds part of a migration the code does not know (Django would
    have rolled it back whole). ``manage.py migrate`` says so; ``call_command`` callers
    (Django's own tests) get Django's queries and output only."""
    assert manage("migrate", "tests", PGMIGRATE_TEST_SCENARIO="partial").returncode == 1
    result = manage("migrate", "tests", PGMIGRATE_TEST_SCENARIO="initial_only")
    assert result.returncode == 0, result.stderr
    assert (
        "pgmigrate_progress says tests.0002_partial is half applied, but no migration of that "
        "name exists" in result.stdout
    )
    assert "No migrations to apply." in result.stdout
    with override_settings(MIGRATION_MODULES={"tests": "tests.scenarios.initial_only"}):
        assert "pgmigrate" not in migrate("tests")


def test_manage_migrate_ends_blocker(scenario, sessions):
    migrate("tests", "0001")
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    result = manage("migrate", "tests", PGMIGRATE_LOCK_TIMEOUT="30")
    assert result.returncode == 0, result.stderr
    assert f"terminated 1 session blocking the migration: pid {blocker.pid}" in result.stdout


def test_patch_off_leaves_migrate_alone(scenario):
    result = manage("migrate", "tests", PGMIGRATE_TEST_PATCH="off")
    assert result.returncode == 0, result.stderr
    assert "pgmigrate" not in result.stdout
    result = manage("pgmigrate", "tests", "zero", PGMIGRATE_TEST_PATCH="off")
    assert result.returncode == 0, result.stderr
    assert "backend pid" in result.stderr
