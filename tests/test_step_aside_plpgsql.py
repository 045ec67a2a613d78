"""Stepping out of the lock queue around SQL that traps the cancel or commits on its own
(``pgmigrate.aside``, ``pgmigrate.sql``): a cancel that a PL/pgSQL handler swallowed never
lets the unit commit without its statement, and SQL that may commit part of its work (a
``DO`` block that commits, a ``CALL``) is never cancelled nor run again."""

import threading

import pytest
from django.core.management.base import CommandError
from django.test import override_settings

from pgmigrate.aside import Aside, StepAside
from pgmigrate.errors import LockWaitTimeout, SteppedAside
from pgmigrate.events import RunEvents
from pgmigrate.retry import LockRetry
from tests.helpers import (
    MigrateThread,
    Session,
    applied,
    columns,
    is_waiting_on_lock,
    migrate,
    wait_until,
)
from tests.test_step_aside import PROTECTED, STEPPED, app_reads, count, protected_session, stepped

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "other"]),
    pytest.mark.scenario("aside_plpgsql"),
]


@pytest.mark.parametrize(
    ("target", "table"),
    [("0002", "tests_beta"), ("0003", "tests_gamma")],
    ids=["operation-transaction", "statement-outside"],
)
@override_settings(PGMIGRATE_PROTECTED=PROTECTED)
def test_a_cancel_trapped_by_a_handler_runs_the_unit_again(scenario, sessions, target, table):
    """The DO block's handler catches the cancel sent to step aside, and the statement ends
    without its ALTER: the unit (the operation's transaction; alone in an ``atomic = False``
    migration, the statement with its progress count) is rolled back, not committed, and runs
    again once the blocker is gone."""
    migrate("tests", str(int(target) - 1).zfill(4), verbosity=0)
    blocker = protected_session(sessions, table)
    app = Session(application_name="app")
    sessions.append(app)
    run = MigrateThread("tests", target)
    wait_until(lambda: stepped(run) >= 1, what="migrate stepped aside")
    app_reads(app, table)
    blocker.release()
    out = run.finish()
    assert "trapped" in columns(table), out
    assert applied()[-1].startswith(target)
    assert "no statement failed with the cancel" in out or "again" in out, out


def _waits_in_the_queue(run: MigrateThread, what: str) -> None:
    """The migration waits in the lock queue, and the watcher has judged the blocker (it
    says so once): from then on it would have stepped aside if it could."""
    wait_until(
        lambda: is_waiting_on_lock(run.backend_pid) and "protected" in run.output.getvalue(),
        what=what,
    )


@override_settings(PGMIGRATE_PROTECTED=PROTECTED)
def test_sql_that_commits_on_its_own_is_never_cancelled(scenario, sessions):
    """A DO block that commits (run by a RunPython's cursor and by a RunSQL of an ``atomic =
    False`` migration) and a CALL wait in the queue as in Django: cancelled and run again,
    the batch they committed would be applied twice."""
    migrate("tests", "0003", verbosity=0)
    blocker = protected_session(sessions, "tests_beta")
    run = MigrateThread("tests", "0004")
    _waits_in_the_queue(run, "the RunPython's DO block waits in the queue")
    blocker.release()
    run.finish()
    blocker = protected_session(sessions, "tests_gamma")
    run = MigrateThread("tests", "0005")
    _waits_in_the_queue(run, "the CALL waits in the queue")
    blocker.release()
    out = run.finish()
    assert STEPPED not in out, out
    for batch in ("python batch", "sql batch", "procedure batch"):
        assert count("SELECT count(*) FROM tests_alpha WHERE name = %s", [batch]) == 1, batch
    assert {"from_python", "from_sql"} <= columns("tests_beta")
    assert "from_procedure" in columns("tests_gamma")
    assert applied()[-1] == "0005_procedure"


@override_settings(
    PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=0.3, PGMIGRATE_LOCK_RETRIES=3
)
def test_sql_that_commits_on_its_own_is_not_retried_on_a_lock_timeout(scenario, sessions):
    """Nor is it run again after a lock timeout: the run fails as Django's would, the batch
    the block committed applied once."""
    migrate("tests", "0003", verbosity=0)
    protected_session(sessions, "tests_beta")
    with pytest.raises(CommandError, match="lock"):
        migrate("tests", "0004")
    assert count("SELECT count(*) FROM tests_alpha WHERE name = 'python batch'") == 1


# The hand-over between the watcher and the unit ----------------------------------------------


def _requested() -> tuple[StepAside, Aside]:
    step_aside = StepAside(enabled=True)
    step_aside.waiter = lambda aside: None
    aside = Aside(
        locktag=(), modes=[], target="tests_beta", pids=[], prepared=[], waiting_since=0.0
    )
    return step_aside, aside


@pytest.mark.parametrize("decision", ["withdraw", "sent"])
def test_a_commit_waits_for_the_watcher_to_say_whether_it_cancelled(decision):
    """The watcher asked to step aside, and has yet to say whether its cancel went out (the
    statement may have got its lock meanwhile): the unit's commit waits for that word, then
    goes on (not sent) or runs again (sent, and no statement failed with it)."""
    step_aside, aside = _requested()
    outcome: list[BaseException | None] = []
    with step_aside.unit():
        assert step_aside.request(aside)

        def commit() -> None:
            try:
                step_aside.check(committing=True)
            except SteppedAside as exc:
                outcome.append(exc)
            else:
                outcome.append(None)

        committing = threading.Thread(target=commit)
        committing.start()
        wait_until(lambda: step_aside._decided._waiters, what="the commit waits")  # type: ignore[attr-defined]
        assert not outcome
        getattr(step_aside, decision)(aside)
        committing.join(10)
    assert len(outcome) == 1
    if decision == "withdraw":
        assert outcome == [None]
    else:
        assert isinstance(outcome[0], SteppedAside)
        assert step_aside.claim(outcome[0]) is aside


def test_a_step_aside_asked_for_in_an_attempt_that_hit_the_lock_timeout_is_dropped():
    """The lock timeout fires as the watcher sends its cancel: the attempt fails on its own
    and is retried; the step-aside asked for meanwhile must not stop the next attempt's
    commit (it would wait for stale blockers, past a deadline already spent)."""
    step_aside, aside = _requested()
    retry = LockRetry(
        retries=1,
        base_delay=0.0,
        max_delay=0.0,
        events=RunEvents(None, database="default", backend_pid=None, log_queries=False),
        notice=lambda *args, **kwargs: None,
        sleep=lambda seconds: None,
        aside=step_aside,
        lock_timeout=1.0,  # a stale step-aside's deadline is long past: fails, not hangs
    )
    attempts: list[int] = []

    def unit() -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            assert step_aside.request(aside)
            step_aside.sent(aside)
            raise LockWaitTimeout("lock timeout")  # PostgreSQL's lock_not_available
        step_aside.check(committing=True)  # the second attempt commits
        return "committed"

    assert retry.call(unit, what="a unit") == "committed"
    assert attempts == [1, 2]
