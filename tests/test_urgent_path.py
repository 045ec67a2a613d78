"""The watcher's urgent path, from the migration's wait to the action: the first look at a
statement reads the lock graph in the same statement, the protection patterns are compiled
before any wait, and the queryset handed to actions is filtered only when read."""

import fnmatch
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from django.db import connections
from django.test import override_settings

from pgmigrate import actions, protection, watcher
from pgmigrate.command import MigrateCommand
from pgmigrate.prepared import Prepared, prepare_all
from pgmigrate.watcher import CONNECTED, GRAPH_AND_SESSIONS_P, LOOK_AND_END_P, Watcher
from tests.helpers import (
    Session,
    WatcherStatements,
    applied,
    blocked_migrate,
    is_alive,
    is_waiting_on_lock,
    migrate,
    query,
    wait_until,
)
from tests.roles import run_in_thread

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

T = TypeVar("T")


def in_a_thread(func: Callable[[], T]) -> T:
    """``func()`` on a connection of its own (a thread's), closed afterwards."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(func())
        except BaseException as exc:  # re-raised in the test's thread
            result.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def looking_at(pid: int) -> Watcher:
    """A watcher of the backend ``pid`` (its thread not started: the test calls it)."""
    return Watcher(MigrateCommand(), using="default", backend_pid=pid, action=None, interval=1)


@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False)
def test_a_look_with_the_graph_reads_what_the_graph_query_reads(scenario, sessions):
    blocker, run = blocked_migrate(sessions)
    observer = looking_at(run.backend_pid)
    statement = watcher._Statement(None, None)

    def look() -> tuple[Any, ...]:
        fused = observer._look(statement, with_graph=True)
        light = observer._look(statement)
        return fused, light, observer._graph_and_sessions()

    (waiting, pids, read), light, (graph, sessions_read) = in_a_thread(look)
    assert (waiting, pids) == (True, frozenset({blocker.pid}))
    assert light == (True, frozenset({blocker.pid}), None)  # the light look reads no graph
    assert read is not None
    fused_graph, fused_sessions = read
    assert fused_graph is not None and graph is not None
    assert fused_graph.holders == graph.holders == {blocker.pid: fused_graph.holders[blocker.pid]}
    assert (fused_graph.mode, fused_graph.locktag) == (graph.mode, graph.locktag)
    assert fused_sessions.keys() == sessions_read.keys() == {blocker.pid}
    for column in ("application_name", "state", "backend_start", "visible", "in_database"):
        assert fused_sessions[blocker.pid][column] == sessions_read[blocker.pid][column]

    blocker.release()
    run.finish()
    assert applied() == ["0001_initial", "0002_add_fields"]


def test_a_look_at_a_backend_that_waits_for_nothing_reads_no_graph(scenario):
    own = Session()
    try:
        statement = watcher._Statement(None, None)
        looked = in_a_thread(lambda: looking_at(own.pid)._look(statement, with_graph=True))
        assert looked == (False, None, None)  # idle: not running a statement
    finally:
        own.close()


@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False)
def test_the_looks_follow_the_backend_attached(scenario, sessions):
    """The looks' statements are bound once per backend (``Watcher._bound``): attached to
    another backend, the watcher looks at that one."""
    blocker, run = blocked_migrate(sessions)
    idle = Session()
    sessions.append(idle)
    observer = looking_at(idle.pid)
    statement = watcher._Statement(None, None)

    def look() -> tuple[Any, ...]:
        before = [observer._look(statement, with_graph=graph) for graph in (True, False)]
        observer.attach(run.backend_pid)
        after = [observer._look(statement, with_graph=graph) for graph in (True, False)]
        return before, after

    before, after = in_a_thread(look)
    assert before == [(False, None, None)] * 2  # idle: not running a statement
    assert [looked[:2] for looked in after] == [(True, frozenset({blocker.pid}))] * 2
    blocker.release()
    run.finish()


@pytest.fixture
def recorder() -> Iterator[WatcherStatements]:
    with WatcherStatements().recording() as statements:
        yield statements


# A long interval: the first look comes 0.2 s after the ALTER starts, when it waits for sure.
@override_settings(PGMIGRATE_BLOCKING_ACTION_INTERVAL=1.0)
def test_the_action_runs_on_the_graph_the_first_look_read(scenario, sessions, recorder):
    blocker, run = blocked_migrate(sessions)
    wait_until(lambda: not is_alive(blocker.pid), what="the blocker was terminated")
    run.finish()
    assert applied() == ["0001_initial", "0002_add_fields"]
    # Once each when a watcher connected (the runs to 0001 and to 0002 warm up their
    # statements); then only the look read the graph.
    connected = recorder.statements.count(CONNECTED)
    assert connected == 2, recorder.statements
    assert recorder.executed(GRAPH_AND_SESSIONS_P.name) == connected, recorder.statements
    # (The default action's first look is the one that may end the blockers itself.)
    assert recorder.executed(LOOK_AND_END_P.name) > connected, recorder.statements


@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False)
def test_blocked_locks_reads_the_blockers_given(scenario, sessions):
    blocker, run = blocked_migrate(sessions)
    other = Session().hold("tests_alpha")  # locks another table: not in the migration's way
    sessions.append(other)
    observer = looking_at(run.backend_pid)

    def read() -> tuple[list[int], list[int], list[int]]:
        def pids(locks: Any) -> list[int]:
            return sorted(set(locks.values_list("blocking_activity_id", flat=True)))

        return (
            pids(observer.blocked_locks([blocker.pid])),
            pids(observer.blocked_locks([other.pid])),
            pids(observer.blocked_locks([blocker.pid]).filter(activity_id=run.backend_pid)),
        )

    assert in_a_thread(read) == ([blocker.pid], [], [blocker.pid])
    blocker.release()
    run.finish()


@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False)
def test_blocked_locks_made_before_the_watcher_is_attached_are_made_again(scenario, sessions):
    """The watcher warms its action up while Django plans (before ``attach``): the queryset
    it made then, for no backend, is not the one actions get for the migrating backend."""
    blocker, run = blocked_migrate(sessions)
    observer = Watcher(MigrateCommand(), using="default", action=None, interval=1)
    observer.blocked_locks([])  # as the warm-up does, before the backend is known
    observer.attach(run.backend_pid)

    def read() -> list[int]:
        locks = observer.blocked_locks([blocker.pid])
        return sorted(set(locks.values_list("blocking_activity_id", flat=True)))

    assert in_a_thread(read) == [blocker.pid]
    blocker.release()
    run.finish()


PATTERNS = ["nightly-*", "a?c", "[!x]*", "x[ab]z", "*backup*", "literal", "*\n", "[*]"]
TEXTS = ["nightly-export", "abc", "xaz", "a backup", "literal", "\n", "*"]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("text", TEXTS)
def test_compiled_patterns_match_as_fnmatch_does(pattern: str, text: str):
    protection.compile_patterns({"application_name": [pattern]})
    verdict = protection.judge(
        {"application_name": text, "usesysid": 10},
        {"application_name": [pattern]},
        visible=True,
        replication=False,
    )
    assert (verdict.reason is not None) == fnmatch.fnmatchcase(text, pattern)


def test_the_watcher_compiles_the_patterns_when_it_connects(scenario):
    rules = {"application_name": ["compiled-at-start-*"]}
    protection._compiled.cache_clear()
    observer = Watcher(
        MigrateCommand(),
        using="default",
        backend_pid=0,
        action=None,
        interval=1,
        protected=rules,
    )
    in_a_thread(observer._ensure_connected)
    compiled = protection._compiled.cache_info().currsize
    # The rule's pattern and those of ALWAYS_PROTECTED, before any session was judged.
    assert compiled == 1 + sum(len(p) for p in protection.ALWAYS_PROTECTED.values())


def test_prepare_all_prepares_and_runs_in_one_query():
    """Statements with a literal ``%`` and parameters, prepared and run in one query string
    (psycopg 3 and psycopg 2 merge the parameters on the client)."""
    percent = Prepared("test_percent", "SELECT %s::text || '%%' || %s::int", ("text", "int"))
    plain = Prepared("test_plain", "SELECT current_setting('plan_cache_mode') || %s", ("text",))

    def run() -> tuple[Any, ...]:
        with connections["default"].cursor() as cursor:
            prepare_all(cursor, [percent, plain], [(percent, ["a", 1]), (plain, ["!"])])
            cursor.execute(
                "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements"
                " ORDER BY name"
            )
            ran = cursor.fetchall()
            percent.execute(cursor, ["b", 2])
            again = cursor.fetchone()
            plain.execute(cursor, ["?"])
            setting = cursor.fetchone()
        return ran, again, setting

    ran, again, setting = in_a_thread(run)
    # Both prepared, run once each with a generic plan (``GENERIC_PLANS`` was set first).
    assert ran == [("pgmigrate_test_percent", 1, 0), ("pgmigrate_test_plain", 1, 0)]
    assert again == ("b%2",)
    assert setting == ("force_generic_plan?",)


@override_settings(PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False)
def test_the_watchers_statements_are_never_jit_compiled(scenario, sessions):
    """Their generic plans cost more than ``jit_above_cost`` (the estimates of ``pg_locks``
    and ``pg_stat_get_activity``): on a server with JIT (Debian's packages), each look was
    compiled, a second or more (the PostgreSQL 15 cell's failures). Here JIT is made as eager
    as a server can be set (every plan above its thresholds)."""
    blocker, run = blocked_migrate(sessions)
    observer = looking_at(run.backend_pid)

    def plans() -> tuple[str, list[Any], Any, bool]:
        observer._ensure_connected()
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "SET jit_above_cost = 0; SET jit_inline_above_cost = 0;"
                " SET jit_optimize_above_cost = 0"
            )
            cursor.execute("SELECT current_setting('jit'), pg_jit_available()")
            jit, available = cursor.fetchone()
            explained = []
            look_and_end = [run.backend_pid, run.backend_pid, [], 0]
            # This watcher's first look is LOOK_AND_GRAPH (no action): the other one is not
            # prepared in its session.
            LOOK_AND_END_P.prepare(cursor)
            for prepared, params in [
                (watcher.LOOK_P, [run.backend_pid]),
                (watcher.LOOK_AND_GRAPH_P, look_and_end[:3]),
                (LOOK_AND_END_P, look_and_end),
                (GRAPH_AND_SESSIONS_P, [run.backend_pid, []]),
            ]:
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + prepared.call(), params)
                explained.append(cursor.fetchone()[0])
            # What the same session compiles with JIT on (when the server has JIT).
            cursor.execute("SET jit = on")
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + LOOK_AND_END_P.call(), look_and_end)
            with_jit = cursor.fetchone()[0]
        return jit, explained, with_jit, available

    jit, explained, with_jit, available = in_a_thread(plans)
    assert jit == "off"
    for plan in explained:
        plan = json.loads(plan) if isinstance(plan, str) else plan
        assert "JIT" not in plan[0], plan[0]["JIT"]
    with_jit = json.loads(with_jit) if isinstance(with_jit, str) else with_jit
    assert ("JIT" in with_jit[0]) == available  # what the check above would have caught

    blocker.release()
    run.finish()
    assert applied() == ["0001_initial", "0002_add_fields"]


def _signal_plan(blocker: Session, *, xact_start: bool) -> str:
    """``EXPLAIN ANALYZE`` of the signal statement as the watcher sends it for ``blocker``
    (idle in a transaction), with ``abs`` for the signal: nothing is signalled."""
    row = query(
        "SELECT backend_start, xact_start FROM pg_stat_activity WHERE pid = %s", [blocker.pid]
    )[0]
    vxid = query(
        "SELECT virtualxid FROM pg_locks WHERE pid = %s AND locktype = 'virtualxid'",
        [blocker.pid],
    )[0][0]
    sql = actions.signal_sql("abs")
    params = [None, [blocker.pid], [vxid], [row[0]], [row[1] if xact_start else None], [None]]
    plan = query("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
    matched = query(sql, params)
    assert matched == [(blocker.pid, blocker.pid)]  # still the session and transaction seen
    return "\n".join(line for (line,) in plan)


def _pg_lock_status_ran(plan: str) -> bool:
    line = next(line for line in plan.splitlines() if "pg_lock_status" in line)
    return "never executed" not in line


def test_the_signal_tells_a_visible_transaction_by_its_start_without_pg_locks(sessions):
    """Where the migrating role sees the blocker's ``xact_start``, the statement that
    signals it checks the transaction by it and never copies the lock table; otherwise it
    reads the virtual transaction in ``pg_locks``. A later transaction of the session is
    told apart either way."""
    blocker = Session(application_name="report").hold("pg_class")
    sessions.append(blocker)
    assert not _pg_lock_status_ran(_signal_plan(blocker, xact_start=True))
    assert _pg_lock_status_ran(_signal_plan(blocker, xact_start=False))

    row = query(
        "SELECT backend_start, xact_start FROM pg_stat_activity WHERE pid = %s", [blocker.pid]
    )[0]
    blocker.release()
    blocker.hold("pg_class")  # the same session, another transaction
    sql = actions.signal_sql("abs")
    params = [None, [blocker.pid], ["0/0"], [row[0]], [row[1]], [None]]
    assert query(sql, params) == []
    blocker.release()


def test_the_signal_spares_a_session_that_let_go_in_the_same_transaction(scenario, sessions):
    """Given the migrating backend's pid, the statement that signals a blocker checks that
    it still blocks that backend: one that let go of the lock in the same transaction (a
    rollback to a savepoint), after the watcher read it, is not signalled."""
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="report").hold("pg_class")  # in a transaction
    waiter = Session(application_name="migrating").hold("pg_class")
    sessions.extend([blocker, waiter])
    blocker.execute("SAVEPOINT held")
    blocker.execute("LOCK TABLE tests_beta IN ACCESS SHARE MODE")
    thread, outcome = run_in_thread(
        lambda: waiter.execute("LOCK TABLE tests_beta IN ACCESS EXCLUSIVE MODE")
    )
    try:
        wait_until(lambda: is_waiting_on_lock(waiter.pid), what="the waiter waits")
        row = query(
            "SELECT backend_start, xact_start FROM pg_stat_activity WHERE pid = %s",
            [blocker.pid],
        )[0]
        sql = actions.signal_sql("abs")
        params = [waiter.pid, [blocker.pid], [None], [row[0]], [row[1]], [None]]
        assert query(sql, params) == [(blocker.pid, blocker.pid)]  # it blocks: signalled
        blocker.execute("ROLLBACK TO SAVEPOINT held")  # the same transaction goes on
        thread.join(10)
        assert not thread.is_alive() and "error" not in outcome, outcome
        assert query(sql, params) == []  # it no longer blocks: spared
    finally:
        waiter.release()
        blocker.release()


def test_the_watchers_timestamps_go_back_as_the_instants_read_without_use_tz():
    """Without ``USE_TZ``, Django reads ``timestamptz`` values as naive datetimes of
    ``TIME_ZONE``. In the hour that the end of summer time repeats, the server takes one
    sent back for the other instant (an hour later): the signal statement would miss the
    session seen (its ``backend_start``, ``xact_start``) and the step out of the lock queue
    the migration's statement (``query_start``). The watcher reads them aware."""
    first = "2026-11-01 05:30:00+00"  # 01:30 EDT: the first of New York's two 01:30s

    def round_trip(graph: bool) -> bool:
        with connections["default"].cursor() as cursor:
            watcher._native_timestamps(cursor, graph=graph)
            cursor.execute(f"SELECT '{first}'::timestamptz")
            (seen,) = cursor.fetchone()
            cursor.execute("SELECT %s::timestamptz[] = ARRAY[%s::timestamptz]", [[seen], first])
            return cursor.fetchone()[0]

    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        assert in_a_thread(lambda: round_trip(graph=True))
        assert in_a_thread(lambda: round_trip(graph=False))


@pytest.mark.parametrize(
    "backend_type",
    [
        "logical replication worker",  # PostgreSQL 14, 15
        "logical replication apply worker",  # 16+
        "logical replication tablesync worker",
        "logical replication parallel worker",
        "logical replication launcher",
    ],
)
def test_a_subscriptions_workers_are_always_protected(backend_type: str):
    """A subscription's workers have a user (the subscription's owner) and may hold locks
    on the tables they apply changes to; ending one breaks replication."""
    row = {"backend_type": backend_type, "usesysid": 10, "application_name": ""}
    verdict = protection.judge(row, {}, visible=True, replication=False)
    assert verdict.reason is not None
    assert verdict.reason.startswith(f"always protected: backend_type {backend_type!r}")
    # Hidden from a least-privilege role: pg_stat_subscription lists its pid to every role.
    hidden = {"backend_type": None, "usesysid": 10, "application_name": ""}
    verdict = protection.judge(hidden, {}, visible=False, replication=True)
    assert verdict.reason is not None and "pg_stat_subscription" in verdict.reason


@pytest.mark.parametrize(
    ("action", "direct", "first_look"),
    [
        (actions.Terminate(), True, watcher.LOOK_AND_END_P),
        (actions.Terminate(), False, watcher.LOOK_AND_GRAPH_P),  # through a pooler
        (None, True, watcher.LOOK_AND_GRAPH_P),
    ],
)
def test_the_watcher_plans_only_the_first_look_it_sends(action, direct, first_look):
    """Planning a first look takes milliseconds, while the migration waits for the watcher
    to be ready: it plans the one its first looks send (``Watcher._look``), not the other."""
    pid = query("SELECT pg_backend_pid()")[0][0]
    observer = Watcher(
        MigrateCommand(), using="default", backend_pid=pid, action=action, interval=1
    )
    observer.direct = direct

    def prepared() -> set[str]:
        observer._ensure_connected()
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT name FROM pg_prepared_statements WHERE generic_plans > 0")
            return {name for (name,) in cursor.fetchall()}

    planned = in_a_thread(prepared)
    other = ({watcher.LOOK_AND_END_P, watcher.LOOK_AND_GRAPH_P} - {first_look}).pop()
    assert first_look.name in planned and watcher.LOOK_P.name in planned
    assert other.name not in planned
