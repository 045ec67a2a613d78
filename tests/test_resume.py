"""Resuming a migration that stopped part of the way through, and what progress records."""

import sys
from collections.abc import Iterator

import pytest
from django.core.management.base import CommandError
from django.db import connections
from django.test import override_settings

from pgmigrate import progress
from tests.helpers import Session, applied, columns, migrate, query
from tests.scenarios import FINGERPRINT, RESUME_FAIL_AT, SEARCH_PATH

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "other"]),
    pytest.mark.scenario("resume"),
]

# Operations of tests/scenarios/resume/0002_steps.py:
# 1 checkpoint(1), 2 AddField alpha.flag, 3 RunPython add_row, 4 checkpoint(2),
# 5 AddField beta.flag, 6 checkpoint(3)
FAILING_OPERATION = {1: 1, 2: 4, 3: 6}


def progress_rows():
    if not query("SELECT to_regclass('pgmigrate_progress')")[0][0]:
        return []
    return query("SELECT app, name, done, total FROM pgmigrate_progress")


@pytest.fixture
def fail_at():
    yield RESUME_FAIL_AT
    RESUME_FAIL_AT["checkpoint"] = None


@pytest.mark.parametrize("checkpoint", [1, 2, 3], ids=["first", "middle", "last"])
def test_resumes_at_the_failed_operation(scenario, fail_at, checkpoint):
    migrate("tests", "0001")
    fail_at["checkpoint"] = checkpoint
    failing = FAILING_OPERATION[checkpoint]

    with pytest.raises(CommandError) as raised:
        migrate("tests")
    assert f"is not recorded as applied: operation {failing} of 6 failed" in str(raised.value)
    assert applied() == ["0001_initial"]
    done = failing - 1
    assert progress_rows() == ([("tests", "0002_steps", done, 6)] if done else [])

    fail_at["checkpoint"] = None
    out = migrate("tests")

    if done:
        assert f"resuming tests.0002_steps at operation {failing} of 6" in out
    assert applied() == ["0001_initial", "0002_steps"]
    assert query("SELECT count(*) FROM tests_alpha WHERE name = 'added once'") == [(1,)]
    assert "flag" in columns("tests_alpha") and "flag" in columns("tests_beta")
    assert progress_rows() == []


@override_settings(
    PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_LOCK_TIMEOUT=0.1, PGMIGRATE_STEP_ASIDE=False
)
def test_resumes_after_a_lock_timeout(scenario, sessions):
    migrate("tests", "0001")
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    with pytest.raises(CommandError, match="lock timeout") as raised:
        migrate("tests")
    assert "FAILED      5. Add field flag to Beta (rolled back)" in str(raised.value)
    assert progress_rows() == [("tests", "0002_steps", 4, 6)]
    blocker.release()
    out = migrate("tests")
    assert "resuming tests.0002_steps at operation 5 of 6" in out
    assert query("SELECT count(*) FROM tests_alpha WHERE name = 'added once'") == [(1,)]
    assert applied() == ["0001_initial", "0002_steps"]


BACKUP_JOB = {
    "PGMIGRATE_LOCK_TIMEOUT": 0.2,
    "PGMIGRATE_PROTECTED": {"application_name": ["backup-*"]},
}


@pytest.mark.scenario("record")
@override_settings(**BACKUP_JOB)
def test_a_migration_is_recorded_with_its_last_operation(scenario, sessions):
    """django_migrations is written in the transaction of the last operation: when that
    write cannot be done (a protected backup job holds a SHARE lock on it), the operation
    is rolled back with it, and the next run applies and records it."""
    migrate("tests", "0001")
    backup = Session(application_name="backup-job").hold("django_migrations", "SHARE")
    sessions.append(backup)
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    assert "FAILED      2. Add field flag to Beta (rolled back)" in str(raised.value)
    assert "flag" in columns("tests_alpha") and "flag" not in columns("tests_beta")
    assert progress_rows() == [("tests", "0002_flags", 1, 2)]
    backup.release()
    out = migrate("tests")
    assert "resuming tests.0002_flags at operation 2 of 2" in out
    assert applied() == ["0001_initial", "0002_flags"]
    assert progress_rows() == []


@pytest.mark.scenario("runsql_statements")
@override_settings(**BACKUP_JOB)
def test_a_migration_whose_record_failed_is_only_recorded_again(scenario, sessions):
    """The last operation ran outside a transaction (an atomic = False migration): all of it
    committed with its progress, then recording the migration failed."""
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (name) VALUES ('a')")
    backup = Session(application_name="backup-job").hold("django_migrations", "SHARE")
    sessions.append(backup)
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    report = str(raised.value)
    assert "All 2 operations of migration tests.0002_double are applied" in report
    assert "recording the migration in django_migrations failed" in report
    assert "it records the migration without running anything again" in report
    assert progress_rows() == [("tests", "0002_double", 2, 2)]
    backup.release()

    out = migrate("tests")
    assert "all 2 operations of tests.0002_double were applied by an earlier run" in out
    assert applied() == ["0001_initial", "0002_double"]
    assert query("SELECT name FROM tests_alpha") == [("a+",)]
    assert progress_rows() == []


def test_restart_forgets_progress_after_a_manual_repair(scenario, fail_at):
    migrate("tests", "0001")
    fail_at["checkpoint"] = 2
    with pytest.raises(CommandError):
        migrate("tests")
    fail_at["checkpoint"] = None
    # The user undoes operations 1-3 by hand, then starts the migration afresh.
    query("ALTER TABLE tests_alpha DROP COLUMN flag")
    query("DELETE FROM tests_alpha")
    out = migrate("tests", pgmigrate_restart=True)
    assert "forgot the progress of 1 half-applied migration(s)" in out
    assert "resuming" not in out
    assert applied() == ["0001_initial", "0002_steps"]
    assert query("SELECT count(*) FROM tests_alpha WHERE name = 'added once'") == [(1,)]


FINGERPRINT_MODULE = "tests.scenarios.fingerprint.0002_steps"


def _edit_fingerprint_migration(**values: object) -> None:
    """Change the ``fingerprint`` scenario's migration as an edit of its file would."""
    FINGERPRINT.update(values)
    sys.modules.pop(FINGERPRINT_MODULE, None)  # Django imports it again


@pytest.fixture
def fingerprint() -> Iterator[dict]:
    yield FINGERPRINT
    _edit_fingerprint_migration(fail=False, max_length=10)


@pytest.mark.scenario("fingerprint")
def test_an_edited_migration_is_not_resumed(scenario, fingerprint):
    """The fingerprint covers each operation's arguments, not only its description."""
    migrate("tests", "0001")
    fingerprint["fail"] = True
    with pytest.raises(CommandError):
        migrate("tests")
    assert progress_rows() == [("tests", "0002_steps", 1, 2)]
    _edit_fingerprint_migration(fail=False, max_length=20)  # the same description
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    message = str(raised.value)
    assert "tests.0002_steps changed since an earlier run applied its operations 1 to 1" in (
        message
    )
    assert "Restore those operations as they were" in message
    _edit_fingerprint_migration(max_length=10)  # restored: it resumes
    out = migrate("tests")
    assert "resuming tests.0002_steps at operation 2 of 2" in out


def test_fingerprint_is_stable_and_covers_arguments():
    from django.db import migrations, models

    def fingerprint_of(*operations):
        migration = migrations.Migration("0002_x", "tests")
        migration.operations = list(operations)
        return progress.fingerprint(migration)

    add = migrations.AddField("Alpha", "flag", models.CharField(max_length=10))
    same = migrations.AddField("Alpha", "flag", models.CharField(max_length=10))
    wider = migrations.AddField("Alpha", "flag", models.CharField(max_length=20))
    assert fingerprint_of(add) == fingerprint_of(same)
    assert fingerprint_of(add) != fingerprint_of(wider)
    # Functions Django cannot serialize (lambdas, closures) are told apart by name.
    assert fingerprint_of(migrations.RunPython(lambda a, s: None)) != fingerprint_of(
        migrations.RunPython(print)
    )
    # What Django's serializer cannot take (Django 4.2's postgres_tests puts a mock.Mock
    # among a migration's operations) is fingerprinted by its class.
    from unittest import mock

    assert fingerprint_of(add, mock.Mock()) == fingerprint_of(same, mock.Mock())


def test_progress_of_a_recorded_migration_is_forgotten(scenario):
    """A progress row never outlives the schema it describes: one left for a migration that
    is recorded as applied (by another tool, say) is dropped at the next run that applies or
    unapplies something."""
    migrate("tests")
    assert query("SELECT to_regclass('pgmigrate_progress')::text") == [("pgmigrate_progress",)]
    query(
        "INSERT INTO pgmigrate_progress (app, name, done, total, fingerprint)"
        " VALUES ('tests', '0002_steps', 3, 6, 'x')"
    )
    migrate("tests")  # nothing to do: Django's reads only, the row stays (harmless)
    assert len(progress_rows()) == 1
    migrate("tests", "0001")
    assert progress_rows() == []


def test_progress_table_is_made_only_when_a_migration_runs(scenario):
    migrate("tests", fake=True)
    migrate("tests", "zero", fake=True)
    assert query("SELECT to_regclass('pgmigrate_progress')") == [(None,)]
    migrate("tests")
    assert query("SELECT to_regclass('pgmigrate_progress')::text") == [("pgmigrate_progress",)]


ROLE = "pgm_nocreate"


@pytest.fixture
def role_without_create(scenario) -> Iterator[str]:
    """A migrating role that owns the tests tables but may not create tables in the schema
    (PostgreSQL 15+ no longer grants CREATE on public to every role)."""
    if not query("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE]):
        query(f"CREATE ROLE {ROLE} LOGIN NOSUPERUSER")
    query(f"REVOKE CREATE ON SCHEMA public FROM {ROLE}, PUBLIC")
    query(f"GRANT ALL ON TABLE django_migrations TO {ROLE}")
    query(f"GRANT ALL ON SEQUENCE django_migrations_id_seq TO {ROLE}")
    migrate("tests", "0001")
    query("DROP TABLE pgmigrate_progress")
    for table in ("tests_alpha", "tests_beta", "tests_gamma"):
        query(f"ALTER TABLE {table} OWNER TO {ROLE}")
    yield ROLE
    connections["migrator"].close()
    query("DROP TABLE IF EXISTS pgmigrate_progress")
    query(f"DROP OWNED BY {ROLE} CASCADE")
    query(f"DROP ROLE {ROLE}")


@pytest.mark.django_db(transaction=True, databases=["default", "other", "migrator"])
def test_progress_table_that_cannot_be_made_stops_before_anything_is_applied(
    role_without_create,
):
    connections["migrator"].close()
    connections["migrator"].settings_dict["USER"] = role_without_create
    try:
        with pytest.raises(CommandError) as raised:
            migrate("tests", database="migrator")
        message = str(raised.value)
        assert "cannot create its table pgmigrate_progress in schema 'public'" in message
        assert "nothing was applied" in message
        assert f'ALTER TABLE pgmigrate_progress OWNER TO "{role_without_create}"' in message
        assert "flag" not in columns("tests_alpha")
        # An administrator creates it as the message says; then migrate works.
        query(progress.CREATE_TABLE)
        query(f'ALTER TABLE pgmigrate_progress OWNER TO "{role_without_create}"')
        connections["migrator"].close()
        migrate("tests", database="migrator")
        assert "flag" in columns("tests_alpha") and "flag" in columns("tests_beta")
    finally:
        connections["migrator"].close()
        connections["migrator"].settings_dict["USER"] = "pgm_migrator"


def test_atomic_setting_resumes_a_migration_left_half_applied(scenario, fail_at):
    """Switching to PGMIGRATE_ATOMIC after a failure does not run the applied operations
    again: the half-applied migration resumes operation by operation."""
    migrate("tests", "0001")
    fail_at["checkpoint"] = 2
    with pytest.raises(CommandError):
        migrate("tests")
    fail_at["checkpoint"] = None
    with override_settings(PGMIGRATE_ATOMIC=True):
        out = migrate("tests")
    assert "resuming tests.0002_steps at operation 4 of 6" in out
    assert query("SELECT count(*) FROM tests_alpha WHERE name = 'added once'") == [(1,)]
    assert progress_rows() == []


def _forwards(apps, schema_editor):
    pass


def test_fingerprint_of_code_the_migration_writer_cannot_serialize():
    """A RunPython of a lambda (Django's migration writer refuses it), inside
    SeparateDatabaseAndState: the fingerprint names it, never by address, so another process
    computes the same one; other code, another fingerprint."""
    from django.db import migrations

    def migration(code):
        made = migrations.Migration("0002_lambda", "tests")
        made.operations = [
            migrations.SeparateDatabaseAndState(
                database_operations=[migrations.RunPython(code, _forwards)]
            )
        ]
        return made

    first = migration(lambda apps, schema_editor: None)
    again = migration(lambda apps, schema_editor: None)
    other = migration(_forwards)
    text = progress._stable(first.operations[0])
    assert (
        "test_fingerprint_of_code_the_migration_writer_cannot_serialize.<locals>.<lambda>" in text
    )
    assert " at 0x" not in text
    assert progress.fingerprint(first) == progress.fingerprint(again)
    assert progress.fingerprint(first) != progress.fingerprint(other)


@pytest.fixture
def other_schema() -> Iterator[None]:
    """A schema ``tests_sp`` with a table ``tests_sp_t``."""
    query("CREATE SCHEMA tests_sp")
    query("CREATE TABLE tests_sp.tests_sp_t (id integer)")
    try:
        yield
    finally:
        query("DROP SCHEMA tests_sp CASCADE")


@pytest.fixture
def search_path_fails() -> Iterator[dict]:
    yield SEARCH_PATH
    SEARCH_PATH["fail"] = False


@pytest.mark.scenario("search_path")
def test_a_migration_that_switches_search_path_runs_in_one_transaction(
    scenario, other_schema, search_path_fails
):
    """An operation that leaves session state (SET search_path) for the next ones: the
    migration runs in one transaction, as Django runs it, so a failure rolls it all back and
    the next run starts again with the SET (resumed in a new session, the next operations
    ran without it: 'relation "tests_sp_t" does not exist' at every run)."""
    migrate("tests", "0001")
    search_path_fails["fail"] = True
    with pytest.raises(CommandError, match="the check fails on purpose"):
        migrate("tests", "0002")
    assert applied() == ["0001_initial"]
    assert "extra" not in columns("tests_sp_t")
    assert progress_rows() == []
    search_path_fails["fail"] = False
    migrate("tests", "0002")
    assert applied() == ["0001_initial", "0002_elsewhere"]
    assert {"extra", "more"} <= columns("tests_sp_t")
    migrate("tests", "0001")
    assert not {"extra", "more"} & columns("tests_sp_t")


@pytest.mark.scenario("search_path")
def test_progress_is_recorded_where_the_run_began(scenario, other_schema):
    """Outside a transaction, each operation's progress row goes to pgmigrate_progress of
    the schema the run began with, whatever search_path the operations leave (they failed
    with 'relation "pgmigrate_progress" does not exist' at every run, where Django applies
    the migration)."""
    migrate("tests")
    assert applied() == ["0001_initial", "0002_elsewhere", "0003_outside"]
    assert "third" in columns("tests_sp_t")
    assert query("SELECT to_regclass('tests_sp.pgmigrate_progress')") == [(None,)]
    assert progress_rows() == []
    migrate("tests", "0002")
    assert "third" not in columns("tests_sp_t")


@pytest.mark.scenario("commit_in_runsql")
def test_an_operation_that_commits_is_counted_as_applied(scenario, search_path_fails):
    """A RunSQL of an atomic migration that runs COMMIT ends the transaction it would run
    in (here shared with the irreversible operations around it): it runs as Django runs it
    without one, and the report says what is applied; the next run goes on after it (it
    said "Nothing of it was applied", and failed on "column a already exists")."""
    migrate("tests", "0001")
    search_path_fails["fail"] = True
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    report = str(raised.value)
    assert "Nothing of it was applied" not in report, report
    assert {"a", "b"} <= columns("tests_alpha")
    search_path_fails["fail"] = False
    migrate("tests")
    assert applied() == ["0001_initial", "0002_commit"]
    assert progress_rows() == []
