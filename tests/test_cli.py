"""``manage.py`` in a child process: exit status and messages, as a user sees them."""

import pytest

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
