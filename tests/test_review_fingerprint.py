"""An unchanged migration is resumed (found by an adversarial review): the fingerprint of the
applied operations and the digest of the committed statements leave out the values a
migration computes when it is imported, and a half-applied migration keeps the operations
the earlier run's plan gave it (django.contrib.contenttypes' RenameContentType). A real edit
of what is applied is still refused, with a way out that works."""

import json
import sys
from collections.abc import Iterator

import django
import pytest
from django.core.management.base import CommandError
from django.db import migrations, models
from django.test import override_settings

from pgmigrate import progress
from tests.crashes import ManageProcess, progress_rows
from tests.helpers import Session, applied, columns, is_waiting_on_lock, migrate, query, wait_until
from tests.scenarios import RENAME_RESUME

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

#: A child that waits for tests_beta in the lock queue, its blocker left alone.
IN_QUEUE = {
    "PGMIGRATE_TEST_ACTION": "",
    "PGMIGRATE_TEST_SETTINGS": json.dumps(
        {"PGMIGRATE_STEP_ASIDE": False, "PGMIGRATE_LOCK_TIMEOUT": None}
    ),
}


def _killed_while_waiting(scenario: str, sessions: list) -> None:
    """0001 applied; a child ``migrate tests`` waits for tests_beta (held here), and is
    killed (-9) there."""
    migrate("tests", "0001", verbosity=0)
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    with ManageProcess("migrate", "tests", PGMIGRATE_TEST_SCENARIO=scenario, **IN_QUEUE) as child:
        backend_pid = child.backend_pid
        wait_until(lambda: is_waiting_on_lock(backend_pid), what="migrate waits on tests_beta")
        child.kill_and_wait_for_backend(backend_pid)
    blocker.release()


# Values computed at import ------------------------------------------------------------


@pytest.mark.scenario("import_time")
def test_operations_with_arguments_computed_at_import_resume_after_kill_9(scenario, sessions):
    """Operations 1 to 4 committed in the killed process; this one imports the file again:
    other defaults, choices in another order, other RunSQL parameters."""
    _killed_while_waiting(scenario, sessions)
    assert progress_rows() == [("tests", "0002_stamps", 4, 5, "forwards", 0, None)]
    out = migrate("tests")
    assert "resuming tests.0002_stamps at operation 5 of 5" in out
    assert {"created", "token", "size"} <= columns("tests_alpha")
    assert applied() == ["0001_initial", "0002_stamps"]
    assert progress_rows() == []


@pytest.mark.scenario("import_time_statements")
def test_statements_with_parameters_computed_at_import_resume_after_kill_9(scenario, sessions):
    """Statement 1 committed in the killed process with its parameter; this one computes
    another: the statement is the same, and is not run again."""
    _killed_while_waiting(scenario, sessions)
    assert progress_rows() == [("tests", "0002_touch", 0, 1, "forwards", 1, None)]
    out = migrate("tests")
    assert "resuming tests.0002_touch at statement 2 of operation 1 of 1" in out
    assert query("SELECT count(*) FROM tests_alpha") == [(1,)]
    assert query("SELECT name FROM tests_gamma") == [("statement 3",)]
    assert applied() == ["0001_initial", "0002_touch"]


def _fingerprint(*operations: migrations.operations.base.Operation) -> str:
    migration = migrations.Migration("0002_x", "tests")
    migration.operations = list(operations)
    return progress.fingerprint(migration)


def _field(**kwargs: object) -> migrations.AddField:
    return migrations.AddField("Alpha", "flag", models.CharField(max_length=10, **kwargs))


def test_fingerprint_leaves_out_what_an_operation_only_writes_into_rows():
    base = _fingerprint(_field(default="a"))
    assert base == _fingerprint(_field(default="b"))
    assert base == _fingerprint(_field(default="a", choices=[("a", "A")], verbose_name="v"))
    inside = migrations.CreateModel("T", [("id", models.AutoField(primary_key=True, default=1))])
    assert _fingerprint(inside) == _fingerprint(
        migrations.CreateModel("T", [("id", models.AutoField(primary_key=True, default=2))])
    )
    sql = migrations.RunSQL([("UPDATE t SET a = %s", [1])], [("UPDATE t SET a = %s", [0])])
    assert _fingerprint(sql) == _fingerprint(
        migrations.RunSQL([("UPDATE t SET a = %s", [2])], [("UPDATE t SET a = %s", [9])])
    )


def test_fingerprint_covers_what_decides_the_schema():
    base = _fingerprint(_field())
    assert base != _fingerprint(_field(null=True))
    assert base != _fingerprint(_field(db_column="other"))
    if django.VERSION >= (5, 0):  # db_default is Django 5.0's
        assert base != _fingerprint(_field(db_default="a"))
    assert base != _fingerprint(
        migrations.AddField("Alpha", "flag", models.CharField(max_length=20))
    )
    assert _fingerprint(migrations.RunSQL([("UPDATE t SET a = %s", [1])])) != _fingerprint(
        migrations.RunSQL([("UPDATE t SET b = %s", [1])])
    )


def test_statements_digest_is_told_by_the_statement_not_its_parameters():
    first = progress.statements_digest(None, "UPDATE t SET a = %s")
    assert first == progress.statements_digest(None, "UPDATE t SET a = %s")
    assert first != progress.statements_digest(None, "UPDATE t SET b = %s")
    assert progress.statements_digest(first, "SELECT 1") != progress.statements_digest(
        None, "SELECT 1"
    )


# Operations contenttypes adds -----------------------------------------------------------

RENAME_RESUME_MODULE = "tests.scenarios.rename_resume.0002_rename"
WITH_CONTENTTYPES = ["django.contrib.contenttypes", "pgactivity", "pglock", "pgmigrate", "tests"]


@pytest.fixture
def contenttypes_installed(scenario) -> Iterator[dict]:
    """django.contrib.contenttypes installed but not migrated (a new database)."""
    with override_settings(INSTALLED_APPS=WITH_CONTENTTYPES):
        yield RENAME_RESUME
    RENAME_RESUME.update(fail=False, max_length=10)
    sys.modules.pop(RENAME_RESUME_MODULE, None)
    query("DROP TABLE IF EXISTS django_content_type CASCADE")
    query("DELETE FROM django_migrations WHERE app = 'contenttypes'")


def _half_applied(flags: dict, *, contenttypes_first: bool) -> int:
    """``migrate tests`` fails at 0002's last operation; return how many are applied.
    Without contenttypes migrated first, ContentType is not there: Django adds no
    RenameContentType (3 operations), else it does (4)."""
    migrate("tests", "0001", verbosity=0)
    if contenttypes_first:
        migrate("contenttypes", verbosity=0)
    flags["fail"] = True
    with pytest.raises(CommandError, match="the last operation fails on purpose"):
        migrate("tests")
    flags["fail"] = False
    done = 3 if contenttypes_first else 2
    assert progress_rows() == [("tests", "0002_rename", done, done + 1, "forwards", 0, None)]
    return done


@pytest.mark.scenario("rename_resume")
@pytest.mark.parametrize("contenttypes_first", [False, True], ids=["new-db", "contenttypes"])
def test_a_half_applied_migration_resumes_with_the_operations_it_was_planned_with(
    contenttypes_installed, contenttypes_first
):
    """The resuming plan (all apps) migrates contenttypes first, so Django adds a
    RenameContentType this time: the migration keeps the earlier run's operations."""
    done = _half_applied(contenttypes_installed, contenttypes_first=contenttypes_first)
    out = migrate()
    assert f"resuming tests.0002_rename at operation {done + 1} of {done + 1}" in out
    assert ("runs with the 3 operations an earlier run's plan gave it, not 4" in out) is (
        not contenttypes_first
    )
    assert "0002_rename" in applied()
    assert query("SELECT to_regclass('tests_delta')::text") == [("tests_delta",)]
    assert progress_rows() == []


@pytest.mark.scenario("rename_resume")
@pytest.mark.parametrize("contenttypes_first", [False, True], ids=["new-db", "contenttypes"])
def test_a_half_applied_migration_rolls_back_with_the_operations_it_was_planned_with(
    contenttypes_installed, contenttypes_first
):
    """Rolled back before the plan, the migration is in no plan: Django adds nothing, and it
    takes the earlier run's operations (with or without RenameContentType)."""
    _half_applied(contenttypes_installed, contenttypes_first=contenttypes_first)
    out = migrate("tests", "0001")
    assert "rolling back half-applied tests.0002_rename" in out
    assert query("SELECT to_regclass('tests_gamma')::text") == [("tests_gamma",)]
    assert "flag" not in columns("tests_beta")
    assert applied() == ["0001_initial"]
    assert progress_rows() == []


@pytest.mark.scenario("rename_resume")
def test_an_edited_applied_operation_is_refused_with_a_way_out(contenttypes_installed):
    """Whatever operations the plan gives it, an applied operation that changed is refused;
    the message's way out (the rest by hand, then --fake) works."""
    _half_applied(contenttypes_installed, contenttypes_first=False)
    contenttypes_installed["max_length"] = 20
    sys.modules.pop(RENAME_RESUME_MODULE, None)  # Django imports the edited file
    for args in [(), ("tests", "0001")]:
        with pytest.raises(CommandError) as raised:
            migrate(*args)
        message = str(raised.value)
        assert "tests.0002_rename changed since an earlier run applied its operations 1 to 2" in (
            message
        )
        assert "record it with `migrate tests 0002_rename --fake`" in message
    assert progress_rows() == [("tests", "0002_rename", 2, 3, "forwards", 0, None)]
    query("ALTER TABLE tests_beta ALTER COLUMN flag TYPE varchar(20)")  # the edit, by hand
    migrate("tests", "0002_rename", fake=True)
    assert "0002_rename" in applied()
    assert progress_rows() == []
