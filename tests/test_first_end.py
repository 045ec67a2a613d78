"""Ending the blockers in the statement of the first look (``watcher.FIRST_END``): where
``Terminate`` would end each of them for sure, the look that sees the wait ends them and the
watcher reports them as read; where anything is in doubt, it ends none and decides in
Python, as for the later looks (its signal statement then runs)."""

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DatabaseError, connections
from django.test import override_settings

from pgmigrate import Terminate, lockgraph, watcher
from pgmigrate.prepared import prepare_all
from tests.helpers import (
    TERMINATE_SIGNAL,
    WAIT_TIMEOUT,
    MigrateThread,
    Session,
    WatcherStatements,
    applied,
    is_alive,
    is_waiting_on_lock,
    migrate,
    query,
    wait_until,
)
from tests.roles import run_in_thread
from tests.test_observability import events_of
from tests.test_privileges import APP
from tests.test_privileges import roles as roles  # a fixture

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other", "migrator"])


@pytest.fixture
def recorder() -> Iterator[WatcherStatements]:
    with WatcherStatements().recording() as statements:
        yield statements


#: (One blocker out of reach: tests/test_privileges.py, ``test_other_blockers_are_still_ended``.)
SIGNAL = TERMINATE_SIGNAL

#: For the tests where the first look at the ``ALTER`` must see it wait: it comes a fifth of
#: an interval (50 ms here) after the statement starts. With the default 5 ms interval, on a
#: loaded machine (the CI's cells side by side) the server could take longer than 1 ms to
#: reach the lock wait: a later look then saw it, and the action ended the blocker.
FIRST_LOOK_SEES_THE_WAIT = {"PGMIGRATE_BLOCKING_ACTION_INTERVAL": 0.25}


def holding(sessions: list, *names: str, table: str = "tests_beta") -> list[Session]:
    held = [Session(application_name=name).hold(table) for name in names]
    sessions += held
    return held


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=30, **FIRST_LOOK_SEES_THE_WAIT)
def test_the_look_that_sees_the_wait_ends_the_blocker(scenario, sessions, recorder, caplog):
    caplog.set_level(logging.INFO, logger="pgmigrate")
    migrate("tests", "0001", verbosity=0)
    (blocker,) = holding(sessions, "report")

    out = migrate("tests", "0002")

    assert not is_alive(blocker.pid)
    assert recorder.beyond_warm_up(SIGNAL) == 0, recorder.statements
    # Reported as the look read it, before it ended it.
    assert (
        f"pgmigrate: terminated 1 session blocking the migration: pid {blocker.pid} "
        "(application 'report', idle in transaction" in out
    )
    ended = [r for r in events_of(caplog) if r.event == "blocker_ended"]
    assert [(r.blocker_pid, r.action) for r in ended] == [(blocker.pid, "Terminate")]
    assert applied() == ["0001_initial", "0002_add_fields"]


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=30, **FIRST_LOOK_SEES_THE_WAIT)
def test_fewer_than_a_crowd_are_ended_together(scenario, sessions, recorder):
    migrate("tests", "0001", verbosity=0)
    names = [f"worker-{n}" for n in range(watcher.CROWD - 1)]
    held = holding(sessions, *names)

    out = migrate("tests", "0002")

    assert not any(is_alive(session.pid) for session in held)
    assert recorder.beyond_warm_up(SIGNAL) == 0, recorder.statements
    assert f"terminated {len(held)} sessions blocking the migration" in out
    assert applied() == ["0001_initial", "0002_add_fields"]


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=30, **FIRST_LOOK_SEES_THE_WAIT)
def test_what_it_ended_is_told_from_its_own_read_however_late(
    scenario, sessions, recorder, monkeypatch
):
    """A slow receiver of the ``blocked`` event makes the look's read too old to act on; the
    sessions the look ended are still told from it (a new read would miss them)."""
    monkeypatch.setattr(watcher, "READ_ALONG_FRESH", -1.0)  # always too old
    migrate("tests", "0001", verbosity=0)
    (blocker,) = holding(sessions, "report")

    out = migrate("tests", "0002")

    assert not is_alive(blocker.pid)
    assert recorder.beyond_warm_up(SIGNAL) == 0, recorder.statements
    assert out.count(f"terminated 1 session blocking the migration: pid {blocker.pid}") == 1


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=30, PGMIGRATE_PROTECTED={"application_name": ["backup"]})
def test_protection_rules_leave_it_to_python(scenario, sessions, recorder):
    """Rules are judged in Python only: with any set, the look ends nobody."""
    migrate("tests", "0001", verbosity=0)
    (blocker,) = holding(sessions, "report")

    out = migrate("tests", "0002")

    assert not is_alive(blocker.pid)
    assert recorder.beyond_warm_up(SIGNAL) == 1, recorder.statements
    assert f"terminated 1 session blocking the migration: pid {blocker.pid}" in out


class CarefulTerminate(Terminate):
    """A subclass may decide otherwise (here it does not): the look leaves it to it."""


@pytest.mark.scenario("basic")
@pytest.mark.parametrize(
    "action",
    [
        Terminate(blocking_activity__application_name="report"),
        CarefulTerminate(),
    ],
    ids=["filtered", "subclass"],
)
def test_another_terminate_is_left_to_run(scenario, sessions, recorder, action):
    migrate("tests", "0001", verbosity=0)
    (blocker,) = holding(sessions, "report")

    with override_settings(PGMIGRATE_LOCK_TIMEOUT=30, PGMIGRATE_BLOCKING_ACTION=action):
        out = migrate("tests", "0002")

    assert not is_alive(blocker.pid)
    assert recorder.beyond_warm_up(SIGNAL) == 1, recorder.statements
    assert f"terminated 1 session blocking the migration: pid {blocker.pid}" in out


@pytest.mark.scenario("indexes")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=30)
def test_a_wait_for_a_weaker_lock_is_left_to_python(scenario, sessions, recorder):
    """``CREATE INDEX`` waits for a SHARE lock behind a writer: not every lock on the table
    conflicts with it, so the look leaves the judging to Python."""
    migrate("tests", "0001", verbosity=0)
    writer = Session(application_name="writer")
    sessions.append(writer)
    writer.connection.set_autocommit(False)
    writer.execute("INSERT INTO tests_alpha (name) VALUES ('x')")  # ROW EXCLUSIVE, open

    out = migrate("tests", "0002")

    assert not is_alive(writer.pid)
    assert recorder.beyond_warm_up(SIGNAL) == 1, recorder.statements
    assert f"terminated 1 session blocking the migration: pid {writer.pid}" in out
    assert applied() == ["0001_initial", "0002_indexes"]


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=0.5, PGMIGRATE_STEP_ASIDE=False)
def test_a_backend_whose_activity_is_not_tracked_is_left_alone(scenario, sessions):
    """With ``track_activities`` off, the backend's state reads ``disabled`` (while it still
    shows its lock wait): the watcher acts on nothing, and neither does the look."""
    migrate("tests", "0001", verbosity=0)
    (blocker,) = holding(sessions, "report")
    database = connections["default"].settings_dict["NAME"]
    query(f'ALTER DATABASE "{database}" SET track_activities = off')
    try:
        connections["default"].close()  # the migration's next connection has it off
        run = MigrateThread("tests", "0002")
        run.join(WAIT_TIMEOUT)
    finally:
        query(f'ALTER DATABASE "{database}" RESET track_activities')
    assert run.error is not None and "lock timeout" in str(run.error)
    assert blocker.execute("SELECT 1") == [(1,)]  # not ended
    assert "terminated" not in run.output.getvalue()


@pytest.mark.scenario("basic")
@override_settings(**FIRST_LOOK_SEES_THE_WAIT)
def test_one_parallel_query_is_one_blocker(scenario, sessions, recorder):
    """``pg_blocking_pids`` names a parallel query's leader once per worker that holds the
    lock: one session, not a crowd, which the look ends."""
    migrate("tests", "0001", verbosity=0)
    query("INSERT INTO tests_beta (name) SELECT 'x' FROM generate_series(1, 20000)")
    leader = Session(application_name="report")
    sessions.append(leader)
    leader.execute(
        "SET max_parallel_workers_per_gather = 3; SET parallel_setup_cost = 0;"
        " SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0"
    )
    scan, _ = run_in_thread(
        lambda: leader.execute(
            "SELECT count(*) FROM tests_beta WHERE pg_sleep(0.0005) IS NOT NULL"
        )
    )
    workers = wait_until(
        lambda: query(
            "SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid"
            " WHERE a.leader_pid = %s AND a.pid <> %s AND l.relation = 'tests_beta'::regclass"
            " HAVING count(*) >= 2",
            [leader.pid, leader.pid],
        ),
        what="the parallel workers hold tests_beta",
    )
    assert workers

    out = migrate("tests", "0002")

    scan.join(WAIT_TIMEOUT)
    assert recorder.beyond_warm_up(SIGNAL) == 0, recorder.statements
    assert f"terminated 1 session blocking the migration: pid {leader.pid}" in out
    assert applied() == ["0001_initial", "0002_add_fields"]


@pytest.mark.scenario("basic")
def test_texts_the_client_cannot_read_end_nobody(scenario, sessions):
    """In a ``SQL_ASCII`` database a session's query may hold bytes that are not the
    client's encoding: the look fails on them before it ends anyone (it would otherwise end
    sessions that the failed statement cannot report)."""
    name = "pgmigrate_test_sql_ascii"
    query(f"DROP DATABASE IF EXISTS {name}")
    query(
        f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'"
        " TEMPLATE template0"
    )
    try:
        _texts_the_client_cannot_read_end_nobody(sessions, name)
    finally:
        for session in sessions:
            session.close()
        query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            [name],
        )
        query(f"DROP DATABASE IF EXISTS {name}")


def _texts_the_client_cannot_read_end_nobody(sessions: list, name: str) -> None:
    blocker, waiter, looker = (
        Session(database=name, application_name=role) for role in ("report", "alter", "look")
    )
    sessions += [blocker, waiter, looker]
    waiter.execute("CREATE TABLE t (id int)")
    blocker.connection.set_autocommit(False)
    raw = blocker.connection.connection.cursor()
    raw.execute("SET client_encoding = 'SQL_ASCII'")  # bytes as they are
    raw.execute(b"LOCK TABLE t IN ACCESS SHARE MODE /* caf\xe9 */")  # a Latin-1 byte
    alter, outcome = run_in_thread(lambda: waiter.execute("ALTER TABLE t ADD COLUMN c int"))
    wait_until(lambda: is_waiting_on_lock(waiter.pid), what="the ALTER waits")
    with looker.connection.cursor() as cursor:
        prepare_all(cursor, watcher.PREPARED, [])
        with pytest.raises(DatabaseError, match="invalid byte sequence"):
            watcher.LOOK_AND_END_P.execute(
                cursor, [waiter.pid, waiter.pid, lockgraph.STRONG_MODES, watcher.CROWD]
            )
    raw.execute("SELECT 1")  # still connected: not ended
    blocker.release()
    alter.join(WAIT_TIMEOUT)
    assert "error" not in outcome


@pytest.mark.scenario("basic")
@override_settings(
    PGMIGRATE_LOCK_TIMEOUT=30,
    PGMIGRATE_BLOCKING_ACTION="pgmigrate.Show",
    PGMIGRATE_STEP_ASIDE=False,
)
def test_a_role_that_may_not_run_pg_terminate_backend_is_still_watched(roles, sessions):
    """PostgreSQL checks the privilege to run a function whether or not a statement calls
    it: the look that may end blockers is run only where the role may (a DBA who revoked
    ``pg_terminate_backend`` still gets Show, cancels, stepping aside)."""
    function = "pg_terminate_backend(integer, bigint)"
    query(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
    try:
        MigrateThread("tests", "0001", database="migrator").finish()
        app_session = Session(user=APP, application_name="app").hold("tests_beta")
        sessions.append(app_session)
        run = MigrateThread("tests", "0002", database="migrator")
        wait_until(
            lambda: f"session pid {app_session.pid} blocks the migration" in run.output.getvalue(),
            what="Show told the blocker",
        )
        app_session.release()
        run.finish()  # and no watcher error
    finally:
        query(f"GRANT EXECUTE ON FUNCTION {function} TO PUBLIC")


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=30)
def test_the_wait_counts_when_the_look_returns_after_the_migration_went_on(
    scenario, sessions, monkeypatch, caplog
):
    """The look that ends the blocker may return after the statement it freed has ended,
    and the next one has begun: statements never wait for the watcher (here they would wait
    for good), and the look counts the wait it saw, before the migration's
    ``migration_finished`` event tells it (``Watcher.settle``)."""
    caplog.set_level(logging.INFO, logger="pgmigrate")
    monkeypatch.setattr(watcher, "LOOK_TOLD_WITHIN", 3600.0)
    look = watcher.Watcher._look
    statements: list[Any] = []

    class Statement(watcher._Statement):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            statements.append(self)

    def slow_look(self: watcher.Watcher, statement: Any, **kwargs: Any) -> Any:
        looked = look(self, statement, **kwargs)
        if kwargs.get("with_graph") and looked[0]:
            wait_until(
                lambda: statement.ended is not None and statements[-1] is not statement,
                what="the migration's next statement began",
            )
        return looked

    monkeypatch.setattr(watcher, "_Statement", Statement)
    monkeypatch.setattr(watcher.Watcher, "_look", slow_look)
    migrate("tests", "0001", verbosity=0)
    (blocker,) = holding(sessions, "report")

    out = migrate("tests", "0002")

    assert f"terminated 1 session blocking the migration: pid {blocker.pid}" in out
    finished = [r for r in events_of(caplog) if r.event == "migration_finished"][-1]
    assert finished.migration == "tests.0002_add_fields" and finished.lock_wait > 0
