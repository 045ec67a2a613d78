"""``migrate`` through a real PgBouncer (started by the tests, see ``tests/pgbouncer.py``),
with app traffic through the same pool.

Transaction pooling: ``migrate`` stops up front with a clear error, before it takes its lock
or sets anything. Session pooling: it works, and leaves nothing on the server connection it
used, even when killed (kill -9) part of the way through. Either way no lock, setting or
timeout reaches another client of the pool, and the next ``migrate`` is not blocked.
"""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.test import override_settings

from pgmigrate import pooling
from pgmigrate.db import atomic
from tests import pgbouncer
from tests.crashes import ManageProcess
from tests.helpers import (
    MigrateThread,
    Session,
    applied,
    is_alive,
    is_waiting_on_lock,
    migrate,
    query,
    wait_until,
    watcher_threads,
)
from tests.pgbouncer import AppTraffic, PoolClient, pool_backends, pooled_alias

pytestmark = pytest.mark.django_db(
    transaction=True, databases=["default", "other", pgbouncer.ALIAS]
)

#: pgmigrate's settings that would linger on a server connection if the pooler moved them.
TIMEOUTS = {"PGMIGRATE_LOCK_TIMEOUT": 5, "PGMIGRATE_STATEMENT_TIMEOUT": 60}
#: A migrate lock left behind makes the next migrate fail at once rather than wait forever.
FAIL_IF_LOCKED = {"PGMIGRATE_CONCURRENT_MIGRATE": "fail"}
#: What the RunPython of the ``idle_wait`` scenario prints once it waits.
WAITING = "idle_wait: waiting"
#: Migrate runs tried through the transaction pooler while the app queries through it.
ATTEMPTS = 5
POOLER_ERROR = re.compile(
    r"pgmigrate: database 'pgbouncer' \(HOST '127\.0\.0\.1', PORT '\d+'\) goes through a "
    r"transaction pooler \(such as PgBouncer with pool_mode = transaction\): .+ so it stopped "
    r"before taking or setting anything\. Migrate over a direct or session-pooled connection"
)


def fresh_settings(sessions: list) -> tuple[str, str, str | None, str, str, int]:
    """The settings pgmigrate changes, as a new direct session has them."""
    session = Session(application_name="fresh")
    sessions.append(session)
    return pgbouncer.state(session.connection).settings()


def advisory_locks() -> list[tuple]:
    """Advisory locks held or awaited in the test database (pgmigrate's migrate lock)."""
    return query(
        "SELECT pid, classid, objid FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )


def assert_nothing_left(
    bouncer: pgbouncer.PgBouncer, expected: tuple, *, watcher: bool = True
) -> list[int]:
    """No advisory lock in the database, and every server connection of the pool has the
    settings of a fresh session (``watcher=False``: those the migrating connection sets).
    Returns the pids of the pool's server connections."""
    assert advisory_locks() == []
    backends = pool_backends(bouncer)
    cut = None if watcher else pgbouncer.MIGRATION
    assert [(b.pid, b.settings()[:cut], b.advisory_locks) for b in backends] == [
        (b.pid, expected[:cut], 0) for b in backends
    ]
    return [b.pid for b in backends]


def migrate_through(alias: str, *args: str) -> tuple[str, BaseException | None]:
    """``migrate`` on ``alias``: what it printed, and the error it raised (if any)."""
    out = io.StringIO()
    try:
        call_command("migrate", *args, database=alias, stdout=out, stderr=out, no_color=True)
    except Exception as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_transaction_pooling_stops_before_taking_anything(scenario, sessions):
    migrate("tests", "0001", verbosity=0)
    expected = fresh_settings(sessions)
    with (
        pgbouncer.started("transaction", pool_size=4) as bouncer,
        pooled_alias(bouncer) as alias,
        override_settings(**TIMEOUTS, **FAIL_IF_LOCKED),
    ):
        with AppTraffic(bouncer, clients=3, expected=expected) as app:
            outcomes = [migrate_through(alias, "tests") for _ in range(ATTEMPTS)]
        outcomes.append(migrate_through(alias, "tests"))  # and on an idle pool

        for output, error in outcomes:
            assert isinstance(error, CommandError), (output, error)
            assert POOLER_ERROR.search(str(error)), str(error)
            assert "backend pid" not in output  # it stopped before its set-up
        assert app.errors == []
        assert app.leaks == []  # no app query saw the lock or a timeout
        assert applied() == ["0001_initial"]
        assert_nothing_left(bouncer, expected)

    # The next migrate, over a direct connection, is not held up.
    with override_settings(**FAIL_IF_LOCKED):
        output = migrate("tests")
    assert "another migrate" not in output
    assert applied() == ["0001_initial", "0002_add_fields", "0003_alpha_note"]


@pytest.mark.parametrize(("mode", "pool_size"), [("transaction", 2), ("session", 1)])
def test_nothing_to_apply_through_a_pooler_starts_no_watcher(scenario, sessions, mode, pool_size):
    """Through a pooler the watcher starts only once pgmigrate has checked the pooling and
    has something to do: a transaction pooler would hand its session settings (PREPAREs,
    plan_cache_mode) to the app's clients, and the server connection of a small session pool
    would be taken from the migration."""
    migrate("tests", "0001", verbosity=0)
    expected = fresh_settings(sessions)
    with pgbouncer.started(mode, pool_size=pool_size) as bouncer, pooled_alias(bouncer) as alias:
        for _ in range(3):
            output, error = migrate_through(alias, "tests", "0001")
            assert error is None, output
            assert "No migrations to apply" in output and "pgmigrate" not in output, output
            assert not watcher_threads()
        connections[alias].close()
        assert_nothing_left(bouncer, expected)


def test_transaction_pooling_error_on_the_command_line(scenario):
    with (
        pgbouncer.started("transaction") as bouncer,
        ManageProcess(
            "migrate",
            "tests",
            PGMIGRATE_TEST_DATABASE=json.dumps({"HOST": "127.0.0.1", "PORT": str(bouncer.port)}),
        ) as child,
    ):
        assert child.wait() == 1, child.stdout + child.stderr
    assert "Traceback" not in child.stderr
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1, child.stderr
    assert lines[0].startswith(
        f"CommandError: pgmigrate: database 'default' (HOST '127.0.0.1', PORT '{bouncer.port}') "
        "goes through a transaction pooler"
    ), child.stderr
    assert applied() == []


def test_transaction_pooling_inside_the_callers_transaction(scenario, sessions):
    """Inside the caller's transaction the pooler keeps one server connection throughout:
    pgmigrate runs, and leaves nothing of the migration's behind when that transaction ends.
    (Known left: the watcher's own connection goes through the pooler too, and its session
    settings, plan_cache_mode and PREPAREs, land on whichever server connections the pooler
    gives its statements: not counted here.)"""
    migrate("tests", "0001", verbosity=0)
    expected = fresh_settings(sessions)
    with (
        pgbouncer.started("transaction", pool_size=4) as bouncer,
        pooled_alias(bouncer) as alias,
        override_settings(**TIMEOUTS, **FAIL_IF_LOCKED),
    ):
        traffic = AppTraffic(bouncer, clients=3, expected=expected, watcher=False)
        with traffic as app, atomic(alias):
            output, error = migrate_through(alias, "tests")
        assert error is None, output
        assert "migrating with PostgreSQL backend pid" in output
        assert app.errors == []
        assert app.leaks == []
        assert applied() == ["0001_initial", "0002_add_fields", "0003_alpha_note"]
        assert_nothing_left(bouncer, expected, watcher=False)


def test_check_without_a_second_connection(scenario, monkeypatch):
    """When the check's second connection cannot connect, the check watches the migrating
    connection alone (and a direct connection passes it)."""
    settings_dict = connections[pgbouncer.ALIAS].settings_dict
    with monkeypatch.context() as patched:
        patched.setitem(settings_dict, "PORT", str(pgbouncer.free_port()))  # nobody listens
        assert pooling._second_connection(pgbouncer.ALIAS) is None
    monkeypatch.setattr(pooling, "_second_connection", lambda using: None)
    output = migrate("tests")
    assert "backend pid" in output
    assert applied() == ["0001_initial", "0002_add_fields", "0003_alpha_note"]


def test_pool_check_sees_what_a_client_left(sessions):
    """The check of the tests below can fail: without a reset query, a server connection's
    next client sees a setting and an advisory lock that the last client left."""
    expected = fresh_settings(sessions)
    with pgbouncer.started("session", pool_size=2, reset_query="") as bouncer:
        client = PoolClient(bouncer)
        sessions.append(client)
        pid = client.pid()
        client.execute("SELECT set_config('lock_timeout', '7s', false), pg_advisory_lock(42)")
        client.close()
        backends = {b.pid: b for b in pool_backends(bouncer)}
        assert backends[pid].lock_timeout == "7s" != expected[0]
        assert backends[pid].advisory_locks == 1
        with pytest.raises(AssertionError):
            assert_nothing_left(bouncer, expected)
        # Leave the pool clean.
        client = PoolClient(bouncer)
        sessions.append(client)
        client.execute("SELECT pg_advisory_unlock_all()")


def test_session_pooling_works_and_leaves_nothing(scenario, sessions):
    """Through a session pooler that does not reset server connections (no
    ``server_reset_query``), the next client of the server connection pgmigrate used sees
    exactly what pgmigrate left: nothing."""
    migrate("tests", "0001", verbosity=0)
    expected = fresh_settings(sessions)
    with (
        pgbouncer.started("session", pool_size=6, reset_query="") as bouncer,
        pooled_alias(bouncer) as alias,
        override_settings(**TIMEOUTS, **FAIL_IF_LOCKED),
    ):
        with AppTraffic(bouncer, clients=2, expected=expected) as app:
            blocker = PoolClient(bouncer, "report").hold("tests_beta")
            sessions.append(blocker)
            blocker_pid = blocker.pid()
            run = MigrateThread("tests", "0002", database=alias)
            backend_pid = run.backend_pid
            output = run.finish()
        blocker.close()

        assert f"terminated 1 session blocking the migration: pid {blocker_pid}" in output
        assert "transaction pooler" not in output and "transaction-pooling" not in output
        assert applied() == ["0001_initial", "0002_add_fields"]
        assert app.errors == []
        assert app.leaks == []
        assert backend_pid in assert_nothing_left(bouncer, expected)

    with override_settings(**FAIL_IF_LOCKED):
        output = migrate("tests")
    assert "another migrate" not in output
    assert applied() == ["0001_initial", "0002_add_fields", "0003_alpha_note"]


def _manage_through(bouncer: pgbouncer.PgBouncer, *args: str, **env: str) -> ManageProcess:
    return ManageProcess(
        *args,
        PGMIGRATE_TEST_DATABASE=json.dumps({"HOST": "127.0.0.1", "PORT": str(bouncer.port)}),
        **{"PGMIGRATE_TEST_SETTINGS": json.dumps(TIMEOUTS), **env},
    )


def _holds_migrate_lock(pid: int) -> bool:
    return any(row[0] == pid for row in advisory_locks())


@pytest.mark.scenario("idle_wait")
def test_session_pooling_kill_between_statements(scenario, sessions, tmp_path, monkeypatch):
    """migrate killed while its session is idle (between two operations, outside a
    transaction) with its lock and timeouts set: PgBouncer resets the server connection
    (``server_reset_query``, DISCARD ALL by default) and lends it to the next client clean."""
    migrate("tests", "0001", verbosity=0)
    expected = fresh_settings(sessions)
    go = tmp_path / "go"
    monkeypatch.setenv("PGMIGRATE_TEST_GO_FILE", str(go))
    with pgbouncer.started("session", pool_size=4) as bouncer:
        with _manage_through(
            bouncer, "migrate", "tests", PGMIGRATE_TEST_SCENARIO="idle_wait"
        ) as child:
            backend_pid = child.backend_pid
            wait_until(
                lambda: WAITING in child.stdout or child.process.poll() is not None,
                what="the migration waits between two operations",
            )
            assert WAITING in child.stdout, child.stdout + child.stderr
            assert _holds_migrate_lock(backend_pid)
            assert query("SELECT state FROM pg_stat_activity WHERE pid = %s", [backend_pid]) == [
                ("idle",)
            ]
            child.kill()
            assert child.wait() == -9
        wait_until(lambda: not advisory_locks(), what="the killed migrate's lock is released")
        assert is_alive(backend_pid)  # reset and back in the pool, not closed
        assert backend_pid in assert_nothing_left(bouncer, expected)

    go.touch()
    with override_settings(**FAIL_IF_LOCKED):
        output = migrate("tests")
    assert "another migrate" not in output
    assert applied() == ["0001_initial", "0002_wait"]


def test_session_pooling_kill_while_waiting_on_a_lock(scenario, sessions):
    """migrate killed while its statement waits on a lock: PgBouncer closes the server
    connection, whose backend ends (``client_connection_check_interval``) with its lock."""
    migrate("tests", "0001", verbosity=0)
    expected = fresh_settings(sessions)
    blocker = Session(application_name="report").hold("tests_beta")
    sessions.append(blocker)
    with pgbouncer.started("session", pool_size=4) as bouncer:
        in_queue = json.dumps({**TIMEOUTS, "PGMIGRATE_STEP_ASIDE": False})
        with _manage_through(
            bouncer, "migrate", "tests", PGMIGRATE_TEST_ACTION="", PGMIGRATE_TEST_SETTINGS=in_queue
        ) as child:
            backend_pid = child.backend_pid
            wait_until(
                lambda: is_waiting_on_lock(backend_pid), what="the migration waits on a lock"
            )
            assert _holds_migrate_lock(backend_pid)
            child.kill()
            assert child.wait() == -9
        wait_until(lambda: not is_alive(backend_pid), what="the killed migrate's backend ended")
        assert backend_pid not in assert_nothing_left(bouncer, expected)
    blocker.release()

    with override_settings(**FAIL_IF_LOCKED):
        output = migrate("tests")
    assert "another migrate" not in output
    assert applied() == ["0001_initial", "0002_add_fields", "0003_alpha_note"]


def test_a_direct_connection_is_recognised_without_a_query(transactional_db):
    """The driver's backend pid (from the server's start-up message) is the backend's own:
    no pooler in between, so the check costs no statement and no second connection. When
    they differ (as through any pooler), the transactions are looked at."""
    connection = connections["default"]
    connection.ensure_connection()
    backend_pid = query("SELECT pg_backend_pid()")[0][0]
    seen: list[str] = []

    def record(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        pooling.ensure_one_session("default", backend_pid)
        assert seen == []
        pooling.ensure_one_session("default", -1)  # a pooler's own key: look, find one session
    assert len(seen) == pooling.ROUNDS + 1
