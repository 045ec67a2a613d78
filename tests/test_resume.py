"""Resuming a statement-by-statement migration that stopped part of the way through."""

import pytest
from django.core.management.base import CommandError
from django.test import override_settings

from tests.helpers import Session, applied, columns, migrate, query
from tests.scenarios import RESUME_FAIL_AT

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
    assert f"stopped at operation {failing} of 6" in str(raised.value)
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


@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_LOCK_TIMEOUT=0.1)
def test_resumes_after_a_lock_timeout(scenario, sessions):
    migrate("tests", "0001")
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    with pytest.raises(CommandError, match="lock timeout"):
        migrate("tests")
    assert progress_rows() == [("tests", "0002_steps", 4, 6)]
    blocker.release()
    out = migrate("tests")
    assert "resuming tests.0002_steps at operation 5 of 6" in out
    assert query("SELECT count(*) FROM tests_alpha WHERE name = 'added once'") == [(1,)]
    assert applied() == ["0001_initial", "0002_steps"]


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


def test_changed_migration_is_not_resumed(scenario, fail_at):
    migrate("tests", "0001")
    fail_at["checkpoint"] = 2
    with pytest.raises(CommandError):
        migrate("tests")
    fail_at["checkpoint"] = None
    query("UPDATE pgmigrate_progress SET fingerprint = 'something else'")
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    assert "changed since an earlier run applied 3 of its 6 operations" in str(raised.value)
    assert "--pgmigrate-restart" in str(raised.value)
