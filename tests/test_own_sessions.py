"""The migrate process's own sessions (``pgmigrate.own``): never ended when they block the
migration; one that the migrating thread opened is a deadlock, stopped at once."""

import pytest
from django.core.management.base import CommandError
from django.test import override_settings

from tests.helpers import (
    MigrateThread,
    applied,
    columns,
    is_alive,
    is_waiting_on_lock,
    migrate,
    wait_until,
)
from tests.scenarios import OWN_SESSIONS as SEEN

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


@pytest.fixture
def seen():
    SEEN.clear()
    yield SEEN
    release = SEEN.get("release")
    if release is not None:
        release.set()
    SEEN.clear()


def same_thread_fails() -> tuple[str, str]:
    """Apply ``0002_same_thread``, which fails: its error and what migrate printed."""
    migrate("tests", "0001", verbosity=0)
    run = MigrateThread("tests", "0002")
    with pytest.raises(CommandError) as raised:
        run.finish()
    return str(raised.value), run.output.getvalue()


@pytest.mark.scenario("own_sessions")
def test_a_session_of_the_migrations_own_code_is_a_deadlock(scenario, seen):
    """It is neither ended (the code rolls its transaction back itself) nor waited for
    (out of the lock queue, the operation would run again into the same wait): the
    migration stops with the reason."""
    error, out = same_thread_fails()

    assert "SelfDeadlock" in error
    assert "held by a connection that the migration's own code opened" in error
    assert f"session pid {seen['pid']} " in out and "a deadlock" in out
    assert "pgmigrate never ends its own sessions: it stops the migration." in out
    assert "terminated" not in out and "stepped out of the lock queue" not in out
    assert seen["rolled_back"] is True  # its session was not ended
    assert "own" not in columns("tests_alpha")
    assert applied() == ["0001_initial"]


@pytest.mark.scenario("own_sessions")
@override_settings(PGMIGRATE_STEP_ASIDE=False, PGMIGRATE_LOCK_TIMEOUT=0.5)
def test_a_deadlock_in_the_queue_ends_at_the_lock_timeout(scenario, seen):
    """Not stepping out of the lock queue, the migration cannot stop the statement: the lock
    timeout decides, and the message says so."""
    error, out = same_thread_fails()

    assert "waited for a lock longer than the lock timeout" in error
    assert "a deadlock. pgmigrate never ends its own sessions: the lock timeout (0.5 s)" in out
    assert seen["rolled_back"] is True
    assert applied() == ["0001_initial"]


@pytest.mark.scenario("own_sessions")
def test_a_session_of_a_thread_of_the_migration_is_left_alone(scenario, seen):
    """It is left alone like a protected session: the migration steps out of the lock queue
    and goes on once that transaction ends."""
    import threading

    migrate("tests", "0001", verbosity=0)
    migrate("tests", "0002", fake=True, verbosity=0)
    seen["release"] = threading.Event()
    run = MigrateThread("tests", "0003")
    wait_until(
        lambda: "stepped out of the lock queue" in run.output.getvalue() or not run.is_alive(),
        what="migrate stepped aside for its own thread's session",
    )
    assert "pid" in seen, run.output.getvalue()
    assert is_alive(seen["pid"])  # not ended
    assert run.is_alive() and not is_waiting_on_lock(run.backend_pid)  # out of the queue
    seen["release"].set()
    out = run.finish()

    assert f"pid {seen['pid']} " in out and "a connection of this migrate process" in out, out
    assert "terminated" not in out
    assert seen.get("committed") is True, seen.get("error")
    assert seen["runs"] == 2  # run again once the thread's transaction ended
    seen["thread"].join(30)
    assert "own" in columns("tests_beta")
    assert applied()[-1] == "0003_thread"


def test_another_connection_ended_is_not_the_migrating_one_lost(transactional_db):
    """The error of a session that another alias (or the migration's code) opened, ended by
    an administrator, says nothing of the migrating connection, which is still there."""
    from django.db import OperationalError, connections

    from pgmigrate.errors import is_connection_lost

    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        wait_until(lambda: not is_alive(pid), what="the other session ended")
        with pytest.raises(OperationalError) as raised, other.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        other.close()

    assert not is_connection_lost(raised.value, "default")
