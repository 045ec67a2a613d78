"""Never end the wrong session; survive lost connections; one migrate at a time."""

import pytest
from django.core.management.base import CommandError
from django.test import override_settings

import pgmigrate
from tests import actions
from tests.helpers import (
    MigrateThread,
    Session,
    applied,
    blocked_migrate,
    columns,
    is_alive,
    is_waiting_on_lock,
    migrate,
    pgmigrate_sessions,
    query,
    wait_until,
    watcher_threads,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


@override_settings(PGMIGRATE_PROTECTED={"application_name": ["nightly-*", "pg_dump"]})
def test_protected_blocker_is_shown_not_ended(scenario, sessions):
    migrate("tests", "0001")
    protected = Session(application_name="nightly-backup").hold("tests_beta")
    ordinary = Session(application_name="web").hold("tests_beta")
    sessions += [protected, ordinary]

    run = MigrateThread("tests", "0002")
    wait_until(lambda: not is_alive(ordinary.pid), what="the ordinary blocker was ended")
    wait_until(lambda: "is protected" in run.output.getvalue(), what="the protected one shown")
    assert is_alive(protected.pid)
    wait_until(lambda: not is_waiting_on_lock(run.backend_pid), what="out of the lock queue")
    protected.release()
    out = run.finish()

    assert is_alive(protected.pid)
    assert (
        f"session pid {protected.pid} (user 'postgres', application 'nightly-backup') blocks "
        "the migration but is protected (PGMIGRATE_PROTECTED: application_name "
        "'nightly-backup' matches 'nightly-*'); it is left alone and the migration steps out "
        "of the lock queue (the app does not queue behind it) and waits for it to end" in out
    )
    assert out.count("is protected") == 1
    assert applied() == ["0001_initial", "0002_add_fields"]


@override_settings(PGMIGRATE_PROTECTED={"usename": ["post*"]}, PGMIGRATE_LOCK_TIMEOUT=0.3)
def test_protected_blocker_leaves_it_to_the_lock_timeout(scenario, sessions):
    migrate("tests", "0001")
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    with pytest.raises(CommandError, match="lock timeout"):
        migrate("tests", "0002")
    assert is_alive(blocker.pid)


@override_settings(PGMIGRATE_LOCK_TIMEOUT=0.5)
def test_replication_sender_is_always_protected(scenario, sessions):
    psycopg = pytest.importorskip("psycopg")
    from django.db import connection

    migrate("tests", "0001")
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    sender = psycopg.connect(**params, replication="database", autocommit=True)
    try:
        for statement in (b"BEGIN", b"LOCK TABLE tests_beta IN ACCESS SHARE MODE"):
            assert sender.pgconn.exec_(statement).error_message == b""
        pid = sender.pgconn.backend_pid
        assert query("SELECT backend_type FROM pg_stat_activity WHERE pid = %s", [pid]) == [
            ("walsender",)
        ]
        with pytest.raises(CommandError) as raised:
            migrate("tests", "0002")
        assert "lock timeout" in str(raised.value)
        assert is_alive(pid)
    finally:
        sender.close()


def test_watcher_reconnects_when_its_connection_is_lost(scenario, sessions):
    migrate("tests", "0001")
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    actions.Gated.gate.clear()
    with override_settings(PGMIGRATE_BLOCKING_ACTION="tests.actions.Gated"):
        run = MigrateThread("tests", "0002")
        wait_until(lambda: is_waiting_on_lock(run.backend_pid), what="migrate waits")
        watcher_pid = wait_until(pgmigrate_sessions, what="the watcher is connected")[0][0]
        query("SELECT pg_terminate_backend(%s)", [watcher_pid])
        wait_until(lambda: not is_alive(watcher_pid), what="the watcher's backend is gone")
        actions.Gated.gate.set()
        out = run.finish(watcher_errors=True)

    assert "the watcher reconnected" in out
    assert not is_alive(blocker.pid)
    assert applied() == ["0001_initial", "0002_add_fields"]
    assert not watcher_threads()
    wait_until(lambda: not pgmigrate_sessions(), what="pgmigrate's connections are gone")


@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False)
def test_lost_migrating_connection_ends_migrate_clearly(scenario, sessions):
    _, run = blocked_migrate(sessions, "tests_alpha")
    pid = run.backend_pid
    query("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(CommandError) as raised:
        run.finish()

    message = str(raised.value)
    assert f"the migrating connection (backend pid {pid}) was lost" in message
    assert "migration tests.0002_add_fields stopped" in message
    assert applied() == ["0001_initial"]
    assert not watcher_threads()
    wait_until(lambda: not pgmigrate_sessions(), what="pgmigrate's connections are gone")


@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False)
def test_second_migrate_waits_for_the_first(scenario, sessions):
    blocker, first = blocked_migrate(sessions)
    second = MigrateThread("tests")
    wait_until(
        lambda: "another migrate is running" in second.output.getvalue(),
        what="the second migrate says it waits",
    )
    assert f"(backend pid {first.backend_pid}); waiting" in second.output.getvalue()
    assert applied() == ["0001_initial"]
    blocker.release()
    first.finish()
    out = second.finish()
    assert "the other migrate finished" in out
    assert "Applying tests.0003_alpha_note... OK" in out
    assert "Applying tests.0002" not in out


@override_settings(
    PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_CONCURRENT_MIGRATE="fail", PGMIGRATE_STEP_ASIDE=False
)
def test_second_migrate_can_fail_at_once(scenario, sessions):
    blocker, first = blocked_migrate(sessions)
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    assert f"another migrate is running on this database (backend pid {first.backend_pid}" in (
        str(raised.value)
    )
    blocker.release()
    first.finish()
    assert "note" not in columns("tests_alpha")


def test_no_leaks_after_many_runs(scenario):
    import threading

    before = {t.name for t in threading.enumerate()}
    for _ in range(10):
        migrate("tests")
        migrate("tests", "zero")
    after = {t.name for t in threading.enumerate()}
    assert not {name for name in after - before if name.startswith("pgmigrate")}
    wait_until(lambda: not pgmigrate_sessions(), what="pgmigrate's connections are gone")


def test_a_backend_that_does_not_run_our_statements_disables_the_watcher(transactional_db):
    """What a transaction-pooling proxy (PgBouncer) looks like: the pid pgmigrate was given
    is not the backend running the migration's statements. Here: an idle session's pid."""
    import io

    from django.db import connection

    from pgmigrate.command import MigrateCommand
    from pgmigrate.watcher import Watcher

    idle = Session(application_name="someone else")
    command = MigrateCommand(stdout=io.StringIO())
    command.verbosity = 1
    watcher = Watcher(
        command,
        using="default",
        backend_pid=idle.pid,
        action=pgmigrate.Terminate(),
        interval=0.005,
    )
    watcher.start()
    try:
        with connection.execute_wrapper(watcher.execute_wrapper), connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.5)")
            cursor.execute("SELECT pg_sleep(0.1)")
    finally:
        watcher.stop()
        idle.close()
    assert watcher.disabled
    assert "seems to go through a transaction-pooling proxy" in command.stdout.getvalue()
    assert watcher.action is None


@pytest.mark.scenario("slow_client")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=10)  # fails, not hangs, if the watcher gave up
def test_a_direct_connection_is_never_taken_for_a_pooler(scenario, sessions):
    """On a direct connection (the driver's backend pid is the one pgmigrate watches), a
    statement that its client takes long to send (the backend idle in the transaction
    meanwhile, seen by many looks) does not make pgmigrate conclude that a pooler is in
    between: the watcher goes on acting, and ends the session that blocks a later
    operation."""
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="forgotten").hold("tests_beta")
    sessions.append(blocker)
    out = migrate("tests", "0002")
    assert "transaction-pooling proxy" not in out, out
    assert f"terminated 1 session blocking the migration: pid {blocker.pid}" in out, out
    assert applied() == ["0001_initial", "0002_slow_client"]
