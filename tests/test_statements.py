"""Statement-by-statement execution, PGMIGRATE_ATOMIC, RunPython and partial failures."""

import pytest
from django.core.management.base import CommandError
from django.test import override_settings

from tests.helpers import (
    Session,
    applied,
    blocked_migrate,
    columns,
    locked_tables,
    migrate,
    query,
)
from tests.scenarios import RUNPYTHON_SEEN as SEEN

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


def _first_table_while_blocked_on_second(sessions):
    """Run 0002 (alpha, then beta) with beta blocked; return what is locked meanwhile."""
    blocker, run = blocked_migrate(sessions)
    pid = run.backend_pid
    held = locked_tables(pid)
    # Another session (the app) can read tests_alpha at once.
    reader = Session()
    sessions.append(reader)
    reader.execute("SET lock_timeout = '100ms'")
    try:
        reader.execute("SELECT count(*) FROM tests_alpha")
        readable = True
    except Exception:
        readable = False
    alpha_columns = columns("tests_alpha")
    blocker.release()
    run.finish()
    return held, readable, alpha_columns


@override_settings(PGMIGRATE_BLOCKING_ACTION=None)
def test_first_table_is_not_locked_while_the_second_waits(scenario, sessions):
    held, readable, alpha_columns = _first_table_while_blocked_on_second(sessions)
    assert "tests_alpha" not in held
    assert readable
    assert "flag" in alpha_columns  # committed before the second statement began
    assert applied() == ["0001_initial", "0002_add_fields"]


@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_ATOMIC=True)
def test_atomic_setting_restores_one_transaction_per_migration(scenario, sessions):
    held, readable, alpha_columns = _first_table_while_blocked_on_second(sessions)
    assert "tests_alpha" in held
    assert not readable
    assert "flag" not in alpha_columns  # not committed yet
    assert applied() == ["0001_initial", "0002_add_fields"]


@pytest.mark.scenario("runpython")
def test_runpython_runs_in_a_transaction_of_its_own(scenario):
    SEEN.clear()
    with pytest.raises(CommandError) as raised:
        migrate("tests")

    assert SEEN["in_atomic_block"] is True
    assert SEEN["rows_before_failure"] == 1
    # Operation 1 (AddField) and 2 (RunPython) committed; 3 rolled back as a whole.
    assert "flag" in columns("tests_alpha")
    assert query("SELECT name FROM tests_alpha ORDER BY name") == [("kept",)]
    assert "note" not in columns("tests_alpha")
    assert applied() == ["0001_initial"]
    assert "3. Raw Python operation (rolled back)" in str(raised.value)


@pytest.mark.scenario("runpython")
@override_settings(PGMIGRATE_ATOMIC=True)
def test_atomic_setting_rolls_back_the_whole_migration(scenario):
    SEEN.clear()
    with pytest.raises(RuntimeError):
        migrate("tests")
    assert "flag" not in columns("tests_alpha")
    assert query("SELECT name FROM tests_alpha") == []


@pytest.mark.scenario("partial")
def test_partial_failure_reports_each_operation(scenario):
    with pytest.raises(CommandError) as raised:
        migrate("tests")

    report = str(raised.value)
    assert "Migration tests.0002_partial stopped at operation 4 of 5" in report
    assert "it is not recorded as applied" in report
    assert "applied     1. Add field flag to Alpha" in report
    assert "applied     2. Add field flag to Beta" in report
    assert "applied     3. Add field other to Gamma" in report
    # RunSQL has no transaction of its own by Django's rule (only RunPython has one).
    assert "FAILED      4. Raw SQL operation (nothing of it committed)" in report
    assert "not applied 5. Add field note to Alpha" in report
    assert "division by zero" in report
    # What the report says is what the database holds.
    assert "flag" in columns("tests_alpha") and "flag" in columns("tests_beta")
    assert "other_id" in columns("tests_gamma")
    fks = query(
        "SELECT 1 FROM pg_constraint WHERE conrelid = 'tests_gamma'::regclass AND contype = 'f'"
    )
    assert fks, "deferred SQL of operation 3 ran right after it"
    assert "note" not in columns("tests_alpha")
    assert applied() == ["0001_initial"]


def test_migrations_apply_and_unapply(scenario):
    migrate("tests")
    assert applied() == ["0001_initial", "0002_add_fields", "0003_alpha_note"]
    migrate("tests", "0001")
    assert applied() == ["0001_initial"]
    assert "flag" not in columns("tests_alpha")


@pytest.mark.scenario("partly")
def test_an_operation_can_be_partly_applied(scenario):
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    report = str(raised.value)
    assert "FAILED      1. Raw SQL operation (partly applied: 1 statement committed)" in report
    assert "it resumes at operation 1" in report
    assert query("SELECT to_regclass('tests_partly') IS NOT NULL") == [(True,)]
    error = raised.value.__cause__
    assert error.applied == [] and error.not_applied == []
    assert error.failed is error.migration.operations[0]


@pytest.mark.scenario("partial")
def test_partial_error_lists_operations(scenario):
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    error = raised.value.__cause__
    assert [op.describe() for op in error.applied] == [
        "Add field flag to Alpha",
        "Add field flag to Beta",
        "Add field other to Gamma",
    ]
    assert error.failed.describe() == "Raw SQL operation"
    assert [op.describe() for op in error.not_applied] == ["Add field note to Alpha"]


def test_executor_without_a_run_is_djangos(scenario):
    from django.db import connection

    from pgmigrate.executor import PGMigrateExecutor

    executor = PGMigrateExecutor(connection)
    executor.migrate([("tests", "0001_initial")])
    assert applied() == ["0001_initial"]
