"""Lock-timeout retries, statement timeouts and command-line overrides."""

import pytest
from django.core.management.base import CommandError
from django.test import override_settings

from tests.helpers import (
    MigrateThread,
    Session,
    applied,
    columns,
    migrate,
    query,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

RETRYING = {
    "PGMIGRATE_BLOCKING_ACTION": None,
    "PGMIGRATE_LOCK_TIMEOUT": 0.1,
    "PGMIGRATE_LOCK_RETRIES": 50,
    "PGMIGRATE_LOCK_RETRY_DELAY": 0.02,
    "PGMIGRATE_LOCK_RETRY_MAX_DELAY": 0.1,
}


@override_settings(**RETRYING)
def test_operation_is_retried_until_the_blocker_is_gone(scenario, sessions):
    migrate("tests", "0001")
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    run = MigrateThread("tests", "0002")
    wait_until(
        lambda: "hit the lock timeout (attempt 2 of 51)" in run.output.getvalue(),
        what="a statement was retried",
    )
    blocker.release()
    out = run.finish()

    assert "operation 2 of tests.0002_add_fields hit the lock timeout (attempt 1 of 51)" in out
    assert applied() == ["0001_initial", "0002_add_fields"]
    assert "flag" in columns("tests_alpha") and "flag" in columns("tests_beta")
    assert "lock timeout(s)" in out  # in the summary


@override_settings(**{**RETRYING, "PGMIGRATE_LOCK_RETRIES": 2})
def test_gives_up_after_the_last_attempt(scenario, sessions):
    migrate("tests", "0001")
    sessions.append(Session().hold("tests_beta"))
    with pytest.raises(CommandError) as raised:
        migrate("tests", "0002")
    assert "PGMIGRATE_LOCK_TIMEOUT = 0.1 s, 3 attempts" in str(raised.value)
    # One transaction per operation: the first one stays applied, the migration resumes.
    assert "flag" in columns("tests_alpha")
    assert "it resumes at operation 2" in str(raised.value)


@override_settings(**RETRYING, PGMIGRATE_ATOMIC=True)
def test_atomic_mode_retries_the_whole_migration(scenario, sessions):
    migrate("tests", "0001")
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    run = MigrateThread("tests", "0002")
    wait_until(
        lambda: (
            "migration tests.0002_add_fields hit the lock timeout (attempt 2"
            in run.output.getvalue()
        ),
        what="the migration was retried",
    )
    assert "flag" not in columns("tests_alpha")  # rolled back with the migration
    blocker.release()
    run.finish()
    assert applied() == ["0001_initial", "0002_add_fields"]


@pytest.mark.scenario("slow")
@override_settings(**RETRYING)
def test_transactional_operation_is_retried_as_a_whole(scenario, sessions):
    migrate("tests", "0003")
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    run = MigrateThread("tests", "0004")
    wait_until(
        lambda: (
            "operation 1 of tests.0004_runpython_lock hit the lock timeout (attempt 2"
            in run.output.getvalue()
        ),
        what="the RunPython operation was retried",
    )
    blocker.release()
    run.finish()
    assert query("SELECT count(*) FROM tests_alpha WHERE name = 'once'") == [(1,)]


@pytest.mark.scenario("slow")
@override_settings(PGMIGRATE_STATEMENT_TIMEOUT=0.2)
def test_statement_timeout_spares_runpython_but_not_sql(scenario):
    migrate("tests", "0002")  # RunPython sleeping 0.4 s: exempt
    assert applied()[-1] == "0002_slow"
    with pytest.raises(CommandError) as raised:
        migrate("tests", "0003")  # RunSQL sleeping 0.4 s: cut short
    assert "statement timeout" in str(raised.value)


@pytest.mark.scenario("slow")
@override_settings(PGMIGRATE_STATEMENT_TIMEOUT=0.2, PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT=[])
def test_statement_timeout_exemptions_are_configurable(scenario):
    with pytest.raises(CommandError, match="statement timeout"):
        migrate("tests", "0002")


@override_settings(PGMIGRATE_BLOCKING_ACTION="pgmigrate.Terminate")
def test_command_line_overrides_settings(scenario, sessions):
    migrate("tests", "0001")
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    with pytest.raises(CommandError) as raised:
        migrate("tests", "0002", blocking_action="none", lock_timeout=0.1, lock_retries=1)
    assert "lock timeout (--lock-timeout 0.1 s, 2 attempts)" in str(raised.value)
    blocker.release()
    out = migrate("tests", "0002", blocking_action="show", statement_timeout=5.0)
    assert applied() == ["0001_initial", "0002_add_fields"]
    assert "backend pid" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--blocking-action", "explode"], "--blocking-action: 'explode' is not an action"),
        (["--lock-timeout", "soon"], "not a number of seconds"),
        (["--lock-retries", "-1"], "not a whole number"),
        (["--lock-retries", "many"], "not a whole number"),
        (["--statement-timeout", "0.0001"], "at least 0.001 and at most"),
    ],
)
def test_bad_command_line_values(argv, message):
    from django.core.management import call_command

    with pytest.raises(CommandError, match=message):
        call_command("migrate", "tests", *argv)
