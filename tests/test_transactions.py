"""One transaction per operation: what it holds, what it releases, and what Django would do."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DataError, IntegrityError, ProgrammingError
from django.test import override_settings

from pgmigrate.command import DjangoMigrateCommand
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


def progress_rows():
    if not query("SELECT to_regclass('pgmigrate_progress')")[0][0]:
        return []
    return query("SELECT app, name, done, total, direction, statements FROM pgmigrate_progress")


def _first_table_while_blocked_on_second(sessions):
    """Run 0002 (alpha or gamma first, then beta) with beta blocked; return what is locked
    and readable meanwhile."""
    blocker, run = blocked_migrate(sessions)
    held = locked_tables(run.backend_pid)
    reader = Session()
    sessions.append(reader)
    reader.execute("SET lock_timeout = '100ms'")
    try:
        reader.execute("SELECT count(*) FROM tests_alpha")
        reader.execute("SELECT count(*) FROM tests_gamma")
        readable = True
    except Exception:
        readable = False
    committed = progress_rows()
    blocker.release()
    run.finish()
    return held, readable, committed


@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False)
def test_an_operation_commits_before_the_next_one_waits(scenario, sessions):
    held, readable, committed = _first_table_while_blocked_on_second(sessions)
    assert "tests_alpha" not in held
    assert readable
    # Operation 1 committed together with its progress record.
    assert committed == [("tests", "0002_add_fields", 1, 2, "forwards", 0)]
    assert applied() == ["0001_initial", "0002_add_fields"]
    assert progress_rows() == []


@pytest.mark.scenario("fk_units")
@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False)
def test_deferred_sql_commits_with_its_operation(scenario, sessions):
    held, readable, committed = _first_table_while_blocked_on_second(sessions)
    # The foreign key of operation 1 (deferred SQL) was created in its transaction, which
    # committed before operation 2 began to wait.
    assert not held & {"tests_gamma", "tests_alpha"}
    assert readable
    assert committed == [("tests", "0002_fk", 1, 2, "forwards", 0)]
    assert query(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'tests_gamma'::regclass"
        " AND contype = 'f'"
    ) == [(1,)]


@override_settings(
    PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_ATOMIC=True, PGMIGRATE_STEP_ASIDE=False
)
def test_atomic_setting_restores_one_transaction_per_migration(scenario, sessions):
    held, readable, committed = _first_table_while_blocked_on_second(sessions)
    assert "tests_alpha" in held
    assert not readable
    assert committed == []
    assert applied() == ["0001_initial", "0002_add_fields"]


@pytest.mark.scenario("runpython")
def test_a_failed_operation_is_rolled_back_and_the_report_says_so(scenario):
    SEEN.clear()
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    assert SEEN["in_atomic_block"] is True
    assert SEEN["rows_before_failure"] == 1
    # Operations 1 (AddField) and 2 (RunPython) committed; 3 rolled back as a whole.
    assert "flag" in columns("tests_alpha")
    assert query("SELECT name FROM tests_alpha ORDER BY name") == [("kept",)]
    assert "note" not in columns("tests_alpha")
    assert applied() == ["0001_initial"]
    assert progress_rows() == [("tests", "0002_runpython", 2, 4, "forwards", 0)]
    report = str(raised.value)
    assert "FAILED      3. Raw Python operation (rolled back)" in report
    assert "operations 1 to 2 are applied, and it resumes at operation 3" in report
    assert isinstance(raised.value, RuntimeError)  # the error's own class, too


@pytest.mark.scenario("runpython")
@override_settings(PGMIGRATE_ATOMIC=True)
def test_atomic_setting_rolls_back_the_whole_migration(scenario):
    SEEN.clear()
    with pytest.raises(RuntimeError) as raised:
        migrate("tests")
    assert "It ran in one transaction, which was rolled back" in str(raised.value)
    assert "flag" not in columns("tests_alpha")
    assert query("SELECT name FROM tests_alpha") == []


@pytest.mark.scenario("partial")
def test_report_lists_each_operation(scenario):
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    report = str(raised.value)
    assert report.startswith("pgmigrate: migration tests.0002_partial failed.\n")
    assert "Migration tests.0002_partial is not recorded as applied: operation 4 of 5" in report
    assert "applied     1. Add field flag to Alpha" in report
    assert "applied     3. Add field other to Gamma" in report
    assert "FAILED      4. Raw SQL operation (rolled back)" in report
    assert "not applied 5. Add field note to Alpha" in report
    assert "Error: DataError: division by zero" in report
    # What the report says is what the database holds.
    assert "other_id" in columns("tests_gamma")
    assert "note" not in columns("tests_alpha")
    error = raised.value.__cause__
    assert [op.describe() for op in error.applied] == [
        "Add field flag to Alpha",
        "Add field flag to Beta",
        "Add field other to Gamma",
    ]
    assert error.failed.describe() == "Raw SQL operation"
    assert [op.describe() for op in error.not_applied] == ["Add field note to Alpha"]


@pytest.mark.scenario("runsql_atomic")
def test_a_statement_list_is_one_transaction(scenario):
    """A RunSQL list whose second statement fails leaves nothing: the re-run after the fix
    changes the data once (as Django)."""
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (name) VALUES ('a'), ('bad')")
    with pytest.raises(IntegrityError) as raised:
        migrate("tests")
    assert "FAILED      1. Raw SQL operation (rolled back)" in str(raised.value)
    assert "Nothing of it was applied" in str(raised.value)
    assert query("SELECT name FROM tests_alpha ORDER BY id") == [("a",), ("bad",)]
    query("UPDATE tests_alpha SET name = 'fixed' WHERE name = 'bad'")
    migrate("tests")
    assert query("SELECT name FROM tests_alpha ORDER BY id") == [("a+",), ("fixed+",)]


@pytest.mark.scenario("lock_table")
def test_statements_that_need_their_transaction_work(scenario):
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (name) VALUES ('a'), ('b')")
    migrate("tests")
    assert query("SELECT name FROM tests_alpha ORDER BY id") == [("A!",), ("B!",)]


@pytest.mark.scenario("runpython_op")
def test_runpython_atomic_false_in_an_atomic_migration_gets_a_transaction(scenario):
    SEEN.clear()
    SEEN["fail"] = True
    with pytest.raises(CommandError):
        migrate("tests")
    assert SEEN["in_atomic_block"] is True
    assert query("SELECT count(*) FROM tests_alpha") == [(0,)]
    SEEN["fail"] = False
    migrate("tests")
    assert query("SELECT count(*) FROM tests_alpha") == [(100,)]


@pytest.mark.scenario("deferred_error")
@pytest.mark.parametrize("atomic", [False, True], ids=["per-operation", "atomic"])
def test_an_error_of_deferred_sql_is_reported_as_itself(scenario, atomic):
    with override_settings(PGMIGRATE_ATOMIC=atomic), pytest.raises(IntegrityError) as raised:
        migrate("tests")
    message = str(raised.value)
    assert "violates foreign key constraint" in message
    assert "connection" not in message
    # Per operation, the table (operation 1) stays, and the next run resumes at 2.
    expected = None if atomic else "tests_book"
    assert query("SELECT to_regclass('tests_book')::text") == [(expected,)]


@pytest.mark.parametrize("atomic", [False, True], ids=["per-operation", "atomic"])
def test_call_command_callers_get_the_database_error(scenario, atomic):
    """``except ProgrammingError`` around ``call_command("migrate")`` works in every mode,
    and the error is a CommandError too (a clean message on the command line)."""
    migrate("tests", "0001")
    query("DELETE FROM django_migrations WHERE app = 'tests'")
    with override_settings(PGMIGRATE_ATOMIC=atomic), pytest.raises(ProgrammingError) as raised:
        migrate("tests", "0001")
    assert isinstance(raised.value, CommandError)
    assert 'relation "tests_alpha" already exists' in str(raised.value)
    assert isinstance(raised.value.__cause__, (ProgrammingError, Exception))


def _constraint_and_index_names():
    return query(
        "SELECT conrelid::regclass::text, conname FROM pg_constraint"
        " WHERE connamespace = current_schema()::regnamespace AND conrelid::regclass::text"
        " LIKE 'tests%%' UNION ALL"
        " SELECT tablename, indexname FROM pg_indexes WHERE schemaname = current_schema()"
        " AND tablename LIKE 'tests%%' ORDER BY 1, 2"
    )


@pytest.mark.parametrize("scenario", ["names", "names_outside"], indirect=True)
def test_names_are_djangos(scenario):
    """Deferred SQL that later operations rename gives the names plain Django gives, also
    when an operation that runs outside a transaction stands between them."""
    call_command(DjangoMigrateCommand(), "tests", stdout=io.StringIO())
    django_names = _constraint_and_index_names()
    call_command(DjangoMigrateCommand(), "tests", "zero", stdout=io.StringIO())
    migrate("tests")
    assert _constraint_and_index_names() == django_names
    names = {name for _, name in django_names}
    book = "tests_novel" if scenario == "names" else "tests_tome"
    assert any(name.startswith("tests_volume_author_id_") for name in names)
    assert any(name.startswith(f"{book}_writer_id_") for name in names)  # foreign key, index
    assert any(name.startswith(f"{book}_title_") for name in names)


@pytest.mark.scenario("names")
@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False)
def test_operations_whose_deferred_sql_is_renamed_share_a_transaction(scenario, sessions):
    """Operations 1-2 and 3-5 form two transactions (a later one renames what the deferred
    SQL refers to); operation 6 has its own."""
    migrate("tests", "0001")
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    from tests.helpers import MigrateThread, is_waiting_on_lock, wait_until

    run = MigrateThread("tests")
    wait_until(lambda: is_waiting_on_lock(run.backend_pid), what="migrate waits on beta")
    assert progress_rows() == [("tests", "0002_rename", 5, 6, "forwards", 0)]
    blocker.release()
    run.finish()


@pytest.mark.scenario("partly")
def test_introspection_is_not_counted_as_committed(scenario):
    with pytest.raises(DataError) as raised:
        migrate("tests")
    assert "FAILED      1. Raw SQL operation (rolled back)" in str(raised.value)
    assert query("SELECT to_regclass('tests_partly')") == [(None,)]


def test_migrations_apply_and_unapply(scenario):
    migrate("tests")
    assert applied() == ["0001_initial", "0002_add_fields", "0003_alpha_note"]
    migrate("tests", "0001")
    assert applied() == ["0001_initial"]
    assert "flag" not in columns("tests_alpha")
    assert progress_rows() == []


def test_executor_without_a_run_is_djangos(scenario):
    from django.db import connection

    from pgmigrate.executor import PGMigrateExecutor

    executor = PGMigrateExecutor(connection)
    executor.migrate([("tests", "0001_initial")])
    assert applied() == ["0001_initial"]


@pytest.mark.scenario("many_ops")
@pytest.mark.parametrize("atomic", [False, True], ids=["per-operation", "atomic"])
def test_a_long_transaction_keeps_few_project_states(scenario, atomic):
    """Memory stays flat over a migration of many operations, as in Django's apply (which
    keeps one pair of states): not one pair per operation (dj-stripe's 523-operation
    migration took 1.5 GiB)."""
    from tests.scenarios import RUNPYTHON_SEEN

    migrate("tests", "0001")
    with override_settings(PGMIGRATE_ATOMIC=atomic):
        migrate("tests")
    assert RUNPYTHON_SEEN.pop("states") < 12


@pytest.mark.scenario("many_alters")
def test_later_renames_are_not_worked_out_for_operations_that_rename_nothing(
    scenario, monkeypatch
):
    """Each operation's state is computed once, as in Django's Migration.apply: working out
    the names deferred SQL takes (steps.later_renames) must not move every later operation's
    state forward again for each operation (real migrations ran 8 times slower)."""
    from django.db.migrations.operations import AlterField

    migrate("tests", "0001", verbosity=0)
    calls = []
    original = AlterField.state_forwards

    def counting(self, app_label, state):
        calls.append(self.name)
        return original(self, app_label, state)

    monkeypatch.setattr(AlterField, "state_forwards", counting)
    migrate("tests", "0002", verbosity=0)
    assert len(calls) <= 2 * 20  # Django moves each AlterField's state forward once or twice
    assert {f"f{number}" for number in range(20)} <= columns("tests_wide")
