"""Unapplying migrations: one transaction per operation, resumable in both directions, and
half-applied migrations rolled back when the plan leaves them out."""

import pytest
from django.core.management.base import CommandError
from django.test import override_settings

from tests.helpers import (
    MigrateThread,
    Session,
    applied,
    columns,
    is_waiting_on_lock,
    migrate,
    query,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

LOCK_TIMEOUT = {"PGMIGRATE_BLOCKING_ACTION": None, "PGMIGRATE_LOCK_TIMEOUT": 0.1}


def progress_rows():
    if not query("SELECT to_regclass('pgmigrate_progress')")[0][0]:
        return []
    return query("SELECT name, done, total, direction FROM pgmigrate_progress")


def indexes():
    return {
        name
        for (name,) in query(
            "SELECT indexname FROM pg_indexes WHERE indexname LIKE %s", ["%%_name_idx"]
        )
    }


@pytest.mark.scenario("indexes")
@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False)
def test_each_operation_is_unapplied_in_its_own_transaction(scenario, sessions):
    migrate("tests", "0002")
    blocker = Session().hold("tests_alpha")
    sessions.append(blocker)
    run = MigrateThread("tests", "0001")
    wait_until(lambda: is_waiting_on_lock(run.backend_pid), what="unapplying waits on alpha")
    # Operation 2 (beta's index) is unapplied and committed; the migration is no longer
    # recorded, and its progress says operation 1 is still applied.
    assert indexes() == {"alpha_name_idx"}
    assert applied() == ["0001_initial"]
    assert progress_rows() == [("0002_indexes", 1, 2, "backwards")]
    blocker.release()
    run.finish()
    assert indexes() == set()
    assert progress_rows() == []


@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False)
def test_unapplying_what_loses_data_is_one_transaction(scenario, sessions):
    """Unapplying an AddField drops a column: the operations after it (in backwards order)
    share its transaction, so a failure rolls it back, as Django would."""
    migrate("tests", "0002")
    query("UPDATE tests_beta SET flag = true")
    blocker = Session().hold("tests_alpha")
    sessions.append(blocker)
    with override_settings(**LOCK_TIMEOUT), pytest.raises(CommandError) as raised:
        migrate("tests", "0001")
    assert "FAILED      1. Add field flag to Alpha (rolled back)" in str(raised.value)
    assert "flag" in columns("tests_beta")  # rolled back with it: nothing lost
    assert applied() == ["0001_initial"]
    assert progress_rows() == [("0002_add_fields", 2, 2, "backwards")]
    blocker.release()
    migrate("tests", "0002")  # all its operations are applied: it is recorded again
    assert query("SELECT DISTINCT flag FROM tests_beta") in ([], [(True,)])
    assert applied() == ["0001_initial", "0002_add_fields"]


@pytest.fixture
def half_unapplied(scenario, sessions):
    """0002_indexes stopped while being unapplied: operation 2 unapplied, operation 1 not."""
    migrate("tests", "0002")
    blocker = Session().hold("tests_alpha")
    sessions.append(blocker)
    with override_settings(**LOCK_TIMEOUT), pytest.raises(CommandError) as raised:
        migrate("tests", "0001")
    blocker.release()
    return str(raised.value)


@pytest.mark.scenario("indexes")
def test_a_stopped_unapply_reports_what_is_still_applied(half_unapplied):
    assert "was being unapplied and stopped with operations 1 to 1 of 2 still applied" in (
        half_unapplied
    )
    assert "FAILED      1. Create index alpha_name_idx" in half_unapplied
    assert "unapplied   2. Create index beta_name_idx" in half_unapplied
    assert progress_rows() == [("0002_indexes", 1, 2, "backwards")]


@pytest.mark.scenario("indexes")
def test_a_stopped_unapply_goes_on_when_run_again(half_unapplied):
    out = migrate("tests", "0001")
    assert (
        "rolling back half-applied tests.0002_indexes (an earlier run applied operation 1 of 2)"
        in out
    )
    assert indexes() == set()
    assert applied() == ["0001_initial"]
    assert progress_rows() == []


@pytest.mark.scenario("indexes")
def test_a_stopped_unapply_can_be_applied_again(half_unapplied):
    out = migrate("tests", "0002")
    assert "resuming tests.0002_indexes at operation 2 of 2" in out
    assert indexes() == {"alpha_name_idx", "beta_name_idx"}
    assert applied() == ["0001_initial", "0002_indexes"]
    assert progress_rows() == []


@pytest.fixture
def half_applied(scenario):
    """0002_partial failed at operation 4: operations 1-3 applied."""
    with pytest.raises(CommandError):
        migrate("tests")
    assert progress_rows() == [("0002_partial", 3, 5, "forwards")]


@pytest.mark.scenario("partial")
@pytest.mark.parametrize("target", ["0001", "zero"])
def test_migrating_backwards_rolls_back_a_half_applied_migration(half_applied, target):
    out = migrate("tests", target)
    assert (
        "rolling back half-applied tests.0002_partial (an earlier run applied operations 1 to 3"
        in out
    )
    assert "flag" not in columns("tests_beta")
    assert "other_id" not in columns("tests_gamma")
    assert progress_rows() == []
    assert applied() == ([] if target == "zero" else ["0001_initial"])


@pytest.mark.scenario("partial")
def test_fake_leaves_half_applied_migrations_as_they_are(half_applied):
    """Like Django's --fake, which changes only django_migrations: the half-applied migration
    is not recorded as applied already, and its progress still says which operations are in
    the database, so that a later run neither applies them again ("already exists") nor
    says that nothing of it is applied."""
    out = migrate("tests", "0001", fake=True)
    assert (
        "--fake: tests.0002_partial is half applied (an earlier run applied operations 1 to 3 "
        "of 5); left as it is, and not recorded as applied" in out
    )
    assert progress_rows() == [("0002_partial", 3, 5, "forwards")]
    assert "flag" in columns("tests_beta")  # --fake: the database is left as it is

    with pytest.raises(CommandError) as raised:
        migrate("tests")  # resumes at operation 4, which still fails
    report = str(raised.value)
    assert "operation 4 of 5 failed" in report and "division by zero" in report
    assert "operations 1 to 3 are applied, and it resumes at operation 4" in report

    migrate("tests", "0001")  # the way back: without --fake
    assert "flag" not in columns("tests_beta")
    assert progress_rows() == []
    assert applied() == ["0001_initial"]


@pytest.mark.scenario("squash_before")
def test_a_squashed_migration_replaces_a_half_applied_one(scenario):
    """0002_flag stopped after operation 1; the next deploy brings a squashed migration that
    replaces it: the half-applied one is rolled back, then the squashed one runs."""
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (name) VALUES ('bad row')")
    with pytest.raises(CommandError):
        migrate("tests")
    assert progress_rows() == [("0002_flag", 1, 2, "forwards")]
    query("UPDATE tests_alpha SET name = 'good row'")
    with override_settings(MIGRATION_MODULES={"tests": "tests.scenarios.squash_after"}):
        out = migrate("tests")
    assert "rolling back half-applied tests.0002_flag" in out
    assert applied() == ["0001_initial", "0002_flag", "0002_squashed_0003", "0003_note"]
    assert "flag" in columns("tests_alpha") and "note" in columns("tests_beta")
    assert progress_rows() == []


@override_settings(PGMIGRATE_ATOMIC=True)
def test_atomic_setting_unapplies_in_one_transaction(scenario, sessions):
    migrate("tests", "0002")
    blocker = Session().hold("tests_alpha")
    sessions.append(blocker)
    with override_settings(**LOCK_TIMEOUT), pytest.raises(CommandError):
        migrate("tests", "0001")
    # Rolled back as a whole: still recorded, every column still there.
    assert applied() == ["0001_initial", "0002_add_fields"]
    assert "flag" in columns("tests_beta")
    assert progress_rows() == []
    blocker.release()
    migrate("tests", "0001")
    assert "flag" not in columns("tests_alpha") and "flag" not in columns("tests_beta")


@pytest.mark.scenario("runsql_statements")
def test_a_statement_list_stopped_while_unapplied_is_finished_before_it_is_applied(
    scenario, sessions
):
    """Unapplying 0002's RunSQL list stopped after its first reverse statement (a lock
    timeout): a forward migrate first finishes unapplying it, then applies it again, so each
    statement runs once per direction."""
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (name) VALUES ('a')")
    migrate("tests")
    assert query("SELECT name FROM tests_alpha") == [("a+",)]
    blocker = Session().hold("tests_alpha")
    sessions.append(blocker)
    with override_settings(**LOCK_TIMEOUT), pytest.raises(CommandError) as raised:
        migrate("tests", "0001")
    assert "statements 1 to 1 of it committed" in str(raised.value) or (
        "its statement 1 committed and is recorded" in str(raised.value)
    )
    assert query("SELECT count(*) FROM tests_gamma") == [(0,)]  # reverse statement 1 ran
    assert query("SELECT direction, statements FROM pgmigrate_progress") == [("backwards", 1)]
    blocker.release()
    migrate("tests")
    assert query("SELECT name FROM tests_alpha") == [("a+",)]
    assert query("SELECT name FROM tests_gamma") == [("inserted once",)]
    assert applied() == ["0001_initial", "0002_double"]
    assert progress_rows() == []


@pytest.mark.scenario("rename_model")
def test_a_half_unapplied_migration_keeps_the_operations_contenttypes_adds(contenttypes, sessions):
    """Django's contenttypes app inserts a RenameContentType after each RenameModel of the
    planned migrations; rolling back a half-unapplied migration (not in Django's plan)
    counts its operations the same way."""
    migrate("tests")
    blocker = Session().hold("tests_delta")
    sessions.append(blocker)
    with override_settings(**LOCK_TIMEOUT), pytest.raises(CommandError) as raised:
        migrate("tests", "0001")
    assert "operations 1 to 3 of 3 still applied" in str(raised.value)
    blocker.release()
    out = migrate("tests", "0001")
    assert "rolling back half-applied tests.0002_rename" in out
    assert query("SELECT to_regclass('tests_gamma')::text") == [("tests_gamma",)]
    assert "flag" not in columns("tests_beta")
    assert progress_rows() == []


@pytest.mark.scenario("rename_only")
@override_settings(
    PGMIGRATE_BLOCKING_ACTION=None,
    PGMIGRATE_STEP_ASIDE=False,
    PGMIGRATE_LOCK_TIMEOUT=0.1,
    PGMIGRATE_LOCK_RETRIES=50,
    PGMIGRATE_LOCK_RETRY_DELAY=0.02,
    PGMIGRATE_LOCK_RETRY_MAX_DELAY=0.1,
)
def test_a_retried_rename_is_undone_in_the_right_direction(scenario, sessions):
    """Django's RenameModel swaps its names while it is unapplied and swaps them back only
    when that succeeds: the retry after a lock timeout must still rename Delta to Gamma."""
    migrate("tests")
    blocker = Session().hold("tests_delta")
    sessions.append(blocker)
    run = MigrateThread("tests", "0001")
    wait_until(
        lambda: "hit the lock timeout (attempt 2 of 51)" in run.output.getvalue(),
        what="the unapply was retried",
    )
    blocker.release()
    run.finish()
    assert query("SELECT to_regclass('tests_gamma')::text") == [("tests_gamma",)]
    assert applied() == ["0001_initial"]


@pytest.mark.scenario("empty")
def test_a_migration_without_operations_is_unapplied_without_progress(scenario):
    """Nothing to count down: the migration is unrecorded, and no progress row is left to
    be taken for a half-applied migration by the next run."""
    migrate("tests")
    migrate("tests", "0001")
    assert applied() == ["0001_initial"]
    assert progress_rows() == []
    out = migrate("tests")
    assert "resuming" not in out and "half-applied" not in out
    assert applied() == ["0001_initial", "0002_nothing"]
