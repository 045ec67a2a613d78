"""Stepping out of the lock queue (``pgmigrate.aside``): while the sessions blocking the
migration are ones pgmigrate does not end, the app's queries never queue behind it."""

import logging
import re
import threading

import pytest
from django.core.management.base import CommandError
from django.test import override_settings

from pgmigrate import signals
from pgmigrate.watcher import Watcher
from tests.helpers import (
    MigrateThread,
    Session,
    applied,
    columns,
    is_waiting_on_lock,
    locked_tables,
    migrate,
    query,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

STEPPED = "stepped out of the lock queue"


def app_reads(session: Session, table: str = "tests_beta") -> None:
    """An app query on ``table`` that fails rather than queue for long."""
    session.execute("SET lock_timeout = '10s'")
    session.execute(f"SELECT count(*) FROM {table}")


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_PROTECTED={"application_name": ["nightly-*"]})
def test_steps_aside_for_a_protected_blocker(scenario, sessions):
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="nightly-export").hold("tests_beta")
    app = Session(application_name="app")
    sessions += [blocker, app]
    run = MigrateThread("tests", "0002")
    wait_until(lambda: STEPPED in run.output.getvalue(), what="migrate stepped aside")
    assert not is_waiting_on_lock(run.backend_pid)
    app_reads(app)
    blocker.release()
    out = run.finish()
    assert "flag" in columns("tests_beta")
    assert applied() == ["0001_initial", "0002_add_fields"]
    print(out)


# Retry units -------------------------------------------------------------------------------

PROTECTED = {"application_name": ["nightly-*"]}


def protected_session(sessions: list, table: str, using: str = "default") -> Session:
    session = Session(using, application_name="nightly-export").hold(table)
    sessions.append(session)
    return session


def stepped(run: MigrateThread) -> int:
    return run.output.getvalue().count(f"pgmigrate: {STEPPED}")


def count(sql: str, params=None) -> int:
    return query(sql, params)[0][0]


@pytest.mark.scenario("aside_units")
@override_settings(PGMIGRATE_PROTECTED=PROTECTED)
def test_a_lock_granted_just_before_the_cancel_runs_the_transaction_again(
    scenario, sessions, monkeypatch
):
    """The cancel reaches the statement after its lock was granted: the operation's
    transaction is rolled back all the same and run again; nothing is applied twice."""
    migrate("tests", "0001", verbosity=0)
    blocker = protected_session(sessions, "tests_beta")
    cancelled = threading.Event()

    def late_cancel(self, statement):
        blocker.release()  # the ALTER gets its lock and the transaction goes on
        wait_until(
            lambda: (
                query("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", [self.backend_pid])
                == [("PgSleep",)]
            ),
            what="the transaction runs its next statement",
        )
        query("SELECT pg_cancel_backend(%s)", [self.backend_pid])
        cancelled.set()
        return True

    monkeypatch.setattr(Watcher, "_cancel_own", late_cancel)
    query("SET tests.race = 'on'")  # on the migrating connection: migrate runs here
    try:
        out = migrate("tests", "0002")
    finally:
        query("RESET tests.race")
    assert cancelled.is_set()
    assert "running operation 2 of tests.0002_race again" in out
    assert count("SELECT last_value FROM tests_race_seq") == 2  # it ran twice
    assert count("SELECT count(*) FROM tests_alpha WHERE name = 'once'") == 1
    assert "raced" in columns("tests_beta")
    assert applied() == ["0001_initial", "0002_race"]


@pytest.mark.scenario("aside_units")
@override_settings(PGMIGRATE_PROTECTED=PROTECTED)
def test_statements_outside_a_transaction_run_again_alone(scenario, sessions):
    """In an ``atomic = False`` migration the unit is the statement: in autocommit (a
    RunPython's cursor) or with its progress count (a RunSQL list). The statements before
    it are not repeated."""
    migrate("tests", "0002", verbosity=0)
    on_beta = protected_session(sessions, "tests_beta")
    on_gamma = protected_session(sessions, "tests_gamma")
    app = Session(application_name="app")
    sessions.append(app)
    run = MigrateThread("tests", "0003")
    wait_until(lambda: stepped(run) == 1, what="migrate stepped aside for tests_beta")
    assert "AccessExclusiveLock on tests_beta" in run.output.getvalue()
    app_reads(app, "tests_beta")
    on_beta.release()
    wait_until(lambda: stepped(run) == 2, what="migrate stepped aside for tests_gamma")
    app_reads(app, "tests_gamma")
    on_gamma.release()
    run.finish()
    assert count("SELECT count(*) FROM tests_alpha WHERE name = 'before'") == 1
    assert count("SELECT count(*) FROM tests_alpha WHERE name = 'statement 1'") == 1
    assert {"outside"} <= columns("tests_beta")
    assert {"counted"} <= columns("tests_gamma")


@pytest.mark.scenario("aside_units")
@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_ATOMIC=True)
def test_in_one_transaction_the_whole_migration_runs_again(scenario, sessions):
    """With PGMIGRATE_ATOMIC the unit is the migration: stepping aside also frees the table
    its first operation locked, and the migration runs again whole."""
    migrate("tests", "0003", verbosity=0)
    blocker = protected_session(sessions, "tests_beta")
    app = Session(application_name="app")
    sessions.append(app)
    started = []

    def receiver(sender, **fields):
        started.append(fields["migration"])

    signals.migration_started.connect(receiver)
    try:
        run = MigrateThread("tests", "0004")
        wait_until(lambda: stepped(run) == 1, what="migrate stepped aside")
        assert not is_waiting_on_lock(run.backend_pid)
        assert "tests_alpha" not in locked_tables(run.backend_pid)
        app_reads(app, "tests_alpha")
        blocker.release()
        out = run.finish()
    finally:
        signals.migration_started.disconnect(receiver)
    assert "running migration tests.0004_two_tables again" in out
    # One migration, started once: its time counts from then, out of the queue included.
    assert started == ["tests.0004_two_tables"]
    figures = re.search(
        r"tests\.0004_two_tables: applied in ([\d.]+) s.*stepped out of the lock queue "
        r"1 time\(s\) for ([\d.]+) s",
        out,
    )
    assert figures is not None, out
    assert float(figures.group(1)) >= float(figures.group(2))
    assert {"first"} <= columns("tests_alpha")
    assert {"second"} <= columns("tests_beta")
    assert applied()[-1] == "0004_two_tables"


# The lock timeout ----------------------------------------------------------------------------


@pytest.mark.scenario("basic")
@pytest.mark.parametrize("step_aside", [True, False], ids=["out-of-queue", "in-queue"])
@override_settings(
    PGMIGRATE_PROTECTED=PROTECTED,
    PGMIGRATE_LOCK_TIMEOUT=0.3,
    PGMIGRATE_LOCK_RETRIES=1,
    PGMIGRATE_LOCK_RETRY_DELAY=0.01,
)
def test_the_lock_timeout_still_bounds_the_wait(scenario, sessions, step_aside):
    """Out of the queue or in it, the same attempts, message and exit status."""
    migrate("tests", "0001", verbosity=0)
    blocker = protected_session(sessions, "tests_beta")
    run = MigrateThread("tests", "0002", step_aside=step_aside)
    with pytest.raises(CommandError) as caught:
        run.finish()
    out = run.output.getvalue()
    assert (stepped(run) > 0) is step_aside
    assert "hit the lock timeout (attempt 1 of 2); retrying" in out
    assert "hit the lock timeout 2 times; giving up" in out
    message = str(caught.value)
    assert caught.value.returncode == 1
    assert (
        "pgmigrate: migration tests.0002_add_fields stopped: a statement waited for a lock "
        "longer than the lock timeout (PGMIGRATE_LOCK_TIMEOUT = 0.3 s, 2 attempts)." in message
    )
    assert "FAILED      2. Add field flag to Beta (rolled back)" in message
    assert is_waiting_on_lock(blocker.pid) is False
    assert "tests_beta" in locked_tables(blocker.pid)


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_PROTECTED=PROTECTED)
def test_the_servers_lock_timeout_bounds_the_wait_out_of_the_queue(scenario, sessions):
    """No PGMIGRATE_LOCK_TIMEOUT, but the session's lock_timeout (as ALTER ROLE ... SET
    would give it): out of the queue, where no server timeout runs, it applies all the same."""
    migrate("tests", "0001", verbosity=0)
    blocker = protected_session(sessions, "tests_beta")
    query("SET lock_timeout = '300ms'")  # on the migrating connection: migrate runs here
    try:
        with pytest.raises(CommandError) as caught:
            migrate("tests", "0002")
    finally:
        query("RESET lock_timeout")
    assert "longer than the lock timeout (the server's lock_timeout)" in str(caught.value)
    assert "LockWaitTimeout: waited 0.3" in str(caught.value)
    assert "tests_beta" in locked_tables(blocker.pid)


# Code that is not all or nothing ------------------------------------------------------------


def in_queue_then_release(run: MigrateThread, blocker: Session) -> str:
    """The migration waits in the lock queue (no step aside); release ``blocker``."""
    wait_until(lambda: is_waiting_on_lock(run.backend_pid), what="migrate waits in the queue")
    blocker.release()
    return run.finish()


@pytest.mark.scenario("aside_edges")
@override_settings(PGMIGRATE_PROTECTED=PROTECTED)
def test_a_statement_string_that_commits_is_not_run_again(scenario, sessions):
    """``INSERT; COMMIT; ALTER`` in one string: cancelling the ALTER would leave the INSERT
    committed, and running the string again would insert twice. It is not a unit: it
    waits in the queue, as without pgmigrate."""
    migrate("tests", "0001", verbosity=0)
    blocker = protected_session(sessions, "tests_beta")
    out = in_queue_then_release(MigrateThread("tests", "0002"), blocker)
    assert STEPPED not in out
    assert count("SELECT count(*) FROM tests_alpha WHERE name = 'backfill'") == 1
    assert "committed" in columns("tests_beta")


@pytest.mark.scenario("aside_edges")
@override_settings(PGMIGRATE_PROTECTED=PROTECTED)
def test_statements_in_a_transaction_the_code_opened_are_not_run_again(scenario, sessions):
    """BEGIN, INSERT, ALTER, COMMIT as separate statements: the ALTER runs in a transaction
    its migration opened, where running it again alone fails. It waits in the queue."""
    migrate("tests", "0002", verbosity=0)
    blocker = protected_session(sessions, "tests_beta")
    out = in_queue_then_release(MigrateThread("tests", "0003"), blocker)
    assert STEPPED not in out
    assert count("SELECT count(*) FROM tests_alpha WHERE name = 'own'") == 1
    assert "own" in columns("tests_beta")


@pytest.mark.scenario("aside_edges")
@override_settings(PGMIGRATE_PROTECTED=PROTECTED)
def test_code_that_catches_the_cancel_does_not_commit_without_its_statement(scenario, sessions):
    """A RunPython catches DatabaseError around the ALTER that was cancelled to step aside:
    its operation is rolled back and run again, never recorded without the column."""
    migrate("tests", "0003", verbosity=0)
    blocker = protected_session(sessions, "tests_beta")
    run = MigrateThread("tests", "0004")
    wait_until(lambda: stepped(run) == 1, what="migrate stepped aside")
    blocker.release()
    out = run.finish()
    assert "running operation 1 of tests.0004_swallowing again" in out
    assert "swallowed" in columns("tests_beta")
    assert count("SELECT count(*) FROM tests_alpha WHERE name = 'skipped'") == 0
    assert count("SELECT count(*) FROM tests_alpha WHERE name = 'after'") == 1


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_STATEMENT_TIMEOUT=0.5)
def test_the_statement_timeout_still_counts_the_wait(scenario, sessions):
    """PostgreSQL counts lock waits in the statement timeout: out of the queue too."""
    migrate("tests", "0001", verbosity=0)
    blocker = protected_session(sessions, "tests_beta")
    run = MigrateThread("tests", "0002")
    with pytest.raises(CommandError, match="canceling statement due to statement timeout"):
        run.finish()
    assert stepped(run) == 1
    assert "tests_beta" in locked_tables(blocker.pid)


@pytest.mark.scenario("basic")
@override_settings(
    PGMIGRATE_PROTECTED=PROTECTED,
    PGMIGRATE_BLOCKING_ACTION="tests.actions.Raising",
    PGMIGRATE_LOCK_TIMEOUT=30,
)
def test_an_action_that_raises_leaves_its_blockers_to_stepping_aside(scenario, sessions):
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="report").hold("tests_beta")
    app = Session(application_name="app")
    sessions += [blocker, app]
    run = MigrateThread("tests", "0002")
    wait_until(lambda: stepped(run) == 1, what="migrate stepped aside")
    app_reads(app)
    blocker.release()
    out = run.finish(watcher_errors=True)
    assert "error while running the action: RuntimeError: the action's own bug" in out
    assert f"pid {blocker.pid} (application 'report'" in out


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=2.5)
def test_long_transactions_back_to_back_do_not_stall_the_app(scenario, sessions):
    """A protected job runs transactions of about 1.2 s on the table, one right after the
    other: in the queue the app would wait for one each time. The migration waits out of
    the queue, says why it cannot get in, and the lock timeout ends it."""
    migrate("tests", "0001", verbosity=0)
    worker = Session(application_name="nightly-sync")
    sessions.append(worker)
    worker.connection.set_autocommit(False)
    worker.execute("LOCK TABLE tests_beta IN ACCESS SHARE MODE")
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            worker.execute("SELECT pg_sleep(1.2)")
            worker.execute("COMMIT; BEGIN; LOCK TABLE tests_beta IN ACCESS SHARE MODE")

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        run = MigrateThread("tests", "0002")
        with pytest.raises(CommandError, match="lock timeout"):
            run.finish()
    finally:
        stop.set()
        thread.join(30)
    worker.release()
    out = run.output.getvalue()
    assert "began another transaction that blocks the migration as soon as" in out
    assert stepped(run) >= 1


@pytest.mark.scenario("basic")
@override_settings(
    PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=1.0, PGMIGRATE_LOCK_RETRIES=0
)
def test_at_the_lock_timeout_only_the_sessions_still_in_the_way_are_named(
    scenario, sessions, caplog
):
    """Of two sessions stepped aside for, one ended meanwhile: the timeout names the other,
    with its transaction's age then (over the lock timeout), not when the migration stepped
    aside."""
    caplog.set_level(logging.INFO, logger="pgmigrate")
    migrate("tests", "0001", verbosity=0)
    gone = protected_session(sessions, "tests_beta")
    staying = protected_session(sessions, "tests_beta")
    run = MigrateThread("tests", "0002")
    wait_until(lambda: stepped(run) > 0, what="migrate stepped aside")
    gone.release()
    with pytest.raises(CommandError):
        run.finish()

    timeout = next(r for r in caplog.records if getattr(r, "outcome", None) == "lock_timeout")
    assert f"pid {staying.pid} " in timeout.getMessage()
    assert f"pid {gone.pid} " not in timeout.getMessage()
    assert "transaction open 0:00:01." in timeout.getMessage()
