"""Blocking actions: Terminate, Show, None, Cancel, custom actions and filters."""

import datetime as dt
import threading

import pytest
from django.db import OperationalError
from django.test import override_settings

import pgmigrate
from pgmigrate import config
from tests import actions
from tests.helpers import (
    MigrateThread,
    Session,
    applied,
    columns,
    is_alive,
    is_waiting_on_lock,
    migrate,
    wait_until,
    waited_at_least,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

#: A safety net so that a broken watcher fails a test instead of hanging it.
SAFETY_LOCK_TIMEOUT = 30


def blocked(sessions, table="tests_beta", **kwargs):
    session = Session(**kwargs).hold(table)
    sessions.append(session)
    return session


@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_terminate_is_the_default(scenario, sessions):
    migrate("tests", "0001")
    blocker = blocked(sessions, application_name="nightly-report")

    out = migrate("tests", "0002")

    assert not is_alive(blocker.pid)
    with pytest.raises(OperationalError):
        blocker.execute("SELECT 1")
    assert "flag" in columns("tests_beta")
    assert applied() == ["0001_initial", "0002_add_fields"]
    assert (
        f"terminated 1 session blocking the migration: pid {blocker.pid} "
        "(application 'nightly-report', idle in transaction)" in out
    )


@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_terminate_ends_every_blocker_once(scenario, sessions):
    migrate("tests", "0001")
    blockers = [blocked(sessions, application_name=f"worker-{i}") for i in range(3)]

    out = migrate("tests", "0002")

    assert not any(is_alive(b.pid) for b in blockers)
    assert out.count("terminated 3 sessions blocking the migration") == 1
    assert all(f"pid {b.pid}" in out for b in blockers)


@override_settings(PGMIGRATE_BLOCKING_ACTION=pgmigrate.Show, PGMIGRATE_STEP_ASIDE=False)
def test_show_prints_each_blocker_once_and_leaves_it(scenario, sessions):
    migrate("tests", "0001")
    blocker = blocked(sessions, application_name="report")
    run = MigrateThread("tests", "0002")
    wait_until(lambda: "blocks the migration" in run.output.getvalue(), what="Show printed")
    # Let the watcher look again several times: it must not print the blocker again.
    wait_until(lambda: waited_at_least(run.backend_pid, 0.3), what="migration waited 0.3 s")

    assert is_alive(blocker.pid)
    blocker.release()
    out = run.finish()

    assert out.count("blocks the migration") == 1
    assert f"session pid {blocker.pid} blocks the migration" in out
    assert "application: 'report'" in out
    assert "state: idle in transaction" in out
    assert "user: postgres" in out or "user: " in out
    assert "transaction open: " in out
    assert "query: LOCK TABLE tests_beta IN ACCESS SHARE MODE" in out
    assert f"to end it: SELECT pg_terminate_backend({blocker.pid});" in out
    assert is_alive(blocker.pid)
    assert applied() == ["0001_initial", "0002_add_fields"]


@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False)
def test_none_leaves_blockers_alone(scenario, sessions):
    migrate("tests", "0001")
    blocker = blocked(sessions)
    run = MigrateThread("tests", "0002")
    wait_until(lambda: waited_at_least(run.backend_pid, 0.3), what="migration waited 0.3 s")

    assert is_alive(blocker.pid)
    blocker.release()
    out = run.finish()
    assert "blocking the migration" not in out
    assert applied() == ["0001_initial", "0002_add_fields"]


@override_settings(PGMIGRATE_BLOCKING_ACTION=pgmigrate.Cancel, PGMIGRATE_LOCK_TIMEOUT=30)
def test_cancel_cancels_the_blocking_query(scenario, sessions):
    migrate("tests", "0001")
    reporter = Session(application_name="long-report")
    sessions.append(reporter)
    outcome = {}

    def long_report():
        try:
            reporter.execute("SELECT pg_sleep(60) FROM (SELECT count(*) FROM tests_beta) AS s")
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=long_report)
    thread.start()
    wait_until(lambda: "pg_sleep" in (_query_of(reporter.pid) or ""), what="the report is running")

    out = migrate("tests", "0002")
    thread.join(30)

    assert "canceling statement due to user request" in str(outcome["error"])
    assert is_alive(reporter.pid)  # cancelled, not terminated
    assert f"cancelled the query of 1 session blocking the migration: pid {reporter.pid}" in out
    assert applied() == ["0001_initial", "0002_add_fields"]


def _query_of(pid):
    from tests.helpers import query

    rows = query("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
    return rows[0][0] if rows else None


@override_settings(PGMIGRATE_BLOCKING_ACTION="tests.actions.Recording", PGMIGRATE_LOCK_TIMEOUT=30)
def test_custom_action(scenario, sessions):
    actions.Recording.calls.clear()
    migrate("tests", "0001")
    blocker = blocked(sessions)

    out = migrate("tests", "0002")

    assert actions.Recording.calls[0]["pids"] == [blocker.pid]
    assert isinstance(actions.Recording.calls[0]["command"], pgmigrate.MigrateCommand)
    assert f"recording action ended [{blocker.pid}]" in out
    assert not is_alive(blocker.pid)
    assert applied() == ["0001_initial", "0002_add_fields"]


def test_filters_choose_which_blockers_to_end(scenario, sessions):
    migrate("tests", "0001")
    victim = blocked(sessions, application_name="victim")
    keeper = blocked(sessions, application_name="keeper")
    action = pgmigrate.Terminate(blocking_activity__application_name="victim")
    with override_settings(PGMIGRATE_BLOCKING_ACTION=action):
        run = MigrateThread("tests", "0002")
        wait_until(lambda: not is_alive(victim.pid), what="the victim was terminated")
        # The keeper is not ended: the migration waits for it out of the lock queue.
        wait_until(
            lambda: (
                f"stepped out of the lock queue for AccessExclusiveLock on tests_beta: "
                f"pid {keeper.pid}" in run.output.getvalue()
            ),
            what="migrate stepped aside for the keeper",
        )
        assert is_alive(keeper.pid)
        wait_until(lambda: not is_waiting_on_lock(run.backend_pid), what="out of the queue")
        keeper.release()
        out = run.finish()
    assert f"terminated 1 session blocking the migration: pid {victim.pid}" in out
    assert f"pg_terminate_backend({keeper.pid})" not in out
    assert is_alive(keeper.pid)


def test_duration_filter(scenario, sessions):
    migrate("tests", "0001")
    blocker = blocked(sessions)
    action = pgmigrate.Terminate(blocking_activity__duration__gte=dt.timedelta(hours=1))
    with override_settings(PGMIGRATE_BLOCKING_ACTION=action):
        run = MigrateThread("tests", "0002")
        wait_until(
            lambda: "stepped out of the lock queue" in run.output.getvalue(),
            what="migrate stepped aside for the blocker the filter leaves",
        )
        assert is_alive(blocker.pid)  # its query started less than an hour ago
        blocker.release()
        run.finish()


@pytest.mark.parametrize(
    "value",
    [pgmigrate.Show, pgmigrate.Show(), "pgmigrate.Show", "pgmigrate.actions.Show"],
    ids=["class", "instance", "dotted-path", "module-path"],
)
def test_action_setting_forms(value):
    with override_settings(PGMIGRATE_BLOCKING_ACTION=value):
        assert config.blocking_action() == pgmigrate.Show()


def test_action_setting_none_and_default(settings):
    assert config.blocking_action() == pgmigrate.Terminate()
    settings.PGMIGRATE_BLOCKING_ACTION = None
    assert config.blocking_action() is None


def test_show_with_a_filter_reads_blockers_through_pglock(scenario, sessions):
    migrate("tests", "0001")
    blocker = Session(application_name="report").hold("tests_beta")
    sessions.append(blocker)
    # A long query, to see it cut in the output.
    blocker.execute("SELECT 1 AS " + ", 1 AS ".join(f"c{i}" for i in range(60)))
    action = pgmigrate.Show(blocking_activity__application_name="report")
    with override_settings(PGMIGRATE_BLOCKING_ACTION=action):
        run = MigrateThread("tests", "0002")
        wait_until(lambda: "blocks the migration" in run.output.getvalue(), what="shown")
        blocker.release()
        out = run.finish()
    assert "user: postgres" in out or "user: " in out
    assert "transaction open: 0:0" in out
    query_line = next(line for line in out.splitlines() if line.strip().startswith("query:"))
    assert query_line.endswith("...") and len(query_line.split("query: ")[1]) == 120


def test_base_action_needs_a_worker():
    class Incomplete(pgmigrate.BlockingAction):
        pass

    with pytest.raises(NotImplementedError, match="Incomplete must implement worker"):
        Incomplete()(None, None)


def test_actions_compare_and_hash_by_type_and_filters():
    assert pgmigrate.Terminate() == pgmigrate.Terminate()
    assert hash(pgmigrate.Terminate(a=1)) == hash(pgmigrate.Terminate(a=1))
    assert pgmigrate.Terminate() != pgmigrate.Cancel()
    assert repr(pgmigrate.Show(a=1)) == "Show(a=1)"


@pytest.mark.scenario("advisory")
@override_settings(PGMIGRATE_BLOCKING_ACTION="pgmigrate.Terminate", PGMIGRATE_LOCK_TIMEOUT=30)
def test_a_session_level_lock_of_an_idle_session_is_ended(scenario, sessions):
    """A session outside a transaction that holds a session-level advisory lock has no
    transaction to match (its locks' vxid is n/0): it is still the same session, and ended."""
    migrate("tests", "0001")
    holder = Session()
    sessions.append(holder)
    holder.execute("SELECT pg_advisory_lock(4242)")  # autocommit: idle, not in a transaction
    out = migrate("tests")
    assert f"terminated 1 session blocking the migration: pid {holder.pid}" in out
    assert not is_alive(holder.pid)
    assert applied() == ["0001_initial", "0002_advisory"]
