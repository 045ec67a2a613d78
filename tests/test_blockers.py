"""Which blockers pgmigrate ends, and what it says about the others, for a superuser and
for a least-privilege migrating role (no superuser, granted ``pg_signal_backend`` only, as
on managed PostgreSQL): hidden columns, replication senders, autovacuum, prepared
transactions, sessions queued ahead of the migration, Cancel against idle sessions, and
sessions that are no longer the ones seen."""

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core import checks
from django.core.management.base import CommandError
from django.db import connections
from django.test import override_settings

import pgmigrate
from pgmigrate import lockgraph
from pgmigrate.text import printable
from pgmigrate.watcher import GRAPH_AND_SESSIONS
from tests import actions, roles
from tests.helpers import (
    MigrateThread,
    Session,
    applied,
    is_alive,
    is_waiting_on_lock,
    locked_tables,
    migrate,
    query,
    slow_autovacuum_on_beta,
    wait_until,
)
from tests.roles import (
    APP,
    GID_PREFIX,
    MIGRATOR,
    REPLICATOR,
    apply_0001,
    prepare,
    run_in_thread,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other", "migrator"])

#: A safety net so that a broken watcher fails a test instead of hanging it.
SAFETY_LOCK_TIMEOUT = 30


@pytest.fixture
def app_roles(scenario) -> Iterator[None]:
    with roles.created():
        yield


@pytest.fixture(params=sorted(roles.ALIASES))
def migrating(request, app_roles) -> str:
    """The database alias migrate runs with: a superuser's, or the least-privilege role's."""
    return roles.ALIASES[request.param]


def _waiting_out_of_the_queue(migrating: str, what: str) -> MigrateThread:
    """tests 0002 applied on ``migrating``, once it has waited out of the lock queue long
    enough to say so again (``what``: for whom, in the wait's description)."""
    run = MigrateThread("tests", "0002", database=migrating)
    out_of_the_queue(run)
    wait_until(
        lambda: "still out of the lock queue after" in run.output.getvalue(),
        what=f"the migration waits out of the queue {what}",
    )
    return run


def out_of_the_queue(run: MigrateThread) -> None:
    """Wait until ``run`` waits out of the lock queue (``pgmigrate.aside``)."""
    wait_until(
        lambda: "stepped out of the lock queue" in run.output.getvalue(),
        what="migrate stepped out of the lock queue",
    )
    wait_until(lambda: not is_waiting_on_lock(run.backend_pid), what="out of the lock queue")


def terminated_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "pgmigrate: terminated" in line]


# Protection rules and hidden columns -------------------------------------------------------


@override_settings(
    PGMIGRATE_PROTECTED={"query": ["*nightly-export*"]},
    PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT,
)
def test_a_rule_on_a_hidden_column_never_fails_open(migrating, sessions):
    apply_0001(migrating)
    export = Session(user=APP, application_name="exporter")
    sessions.append(export)
    export.connection.set_autocommit(False)
    export.execute("SELECT count(*) /* nightly-export */ FROM tests_beta")
    web = Session(user=APP, application_name="web").hold("tests_beta")
    own = Session(user=MIGRATOR, application_name="own").hold("tests_beta")
    sessions += [web, own]

    run = MigrateThread("tests", "0002", database=migrating)
    # The migrating role sees all of its own sessions: they are judged, and ended.
    wait_until(lambda: not is_alive(own.pid), what="the migrating role's own session ended")
    if migrating == "default":
        wait_until(lambda: not is_alive(web.pid), what="the unprotected session was ended")
        wait_until(lambda: "is protected" in run.output.getvalue(), what="protected shown")
    else:
        wait_until(
            lambda: run.output.getvalue().count("cannot tell whether it is protected") == 2,
            what="both sessions of the other role shown as undecidable",
        )
        out_of_the_queue(run)
        assert is_alive(web.pid)
        web.release()
    assert is_alive(export.pid)
    export.release()
    out = run.finish()

    assert is_alive(export.pid)
    assert applied() == ["0001_initial", "0002_add_fields"]
    if migrating == "default":
        assert (
            f"session pid {export.pid} (user '{APP}', application 'exporter') blocks the "
            "migration but is protected (PGMIGRATE_PROTECTED: query" in out
        )
    else:
        for session, name in ((export, "exporter"), (web, "web")):
            assert (
                f"session pid {session.pid} (user '{APP}', application '{name}') blocks the "
                "migration, but pgmigrate cannot tell whether it is protected: "
                "PGMIGRATE_PROTECTED names query, which PostgreSQL hides from the migrating "
                f'role "{MIGRATOR}"' in out
            )
        assert f'to let pgmigrate see them: GRANT pg_read_all_stats TO "{MIGRATOR}";' in out
        assert out.count("cannot tell whether it is protected") == 2  # once each
        assert is_alive(web.pid)
    assert f"pid {own.pid} (application 'own'" in out


@override_settings(
    PGMIGRATE_PROTECTED={"application_name": ["nightly-*"]},
    PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT,
)
def test_a_rule_on_a_column_every_role_sees_decides(migrating, sessions):
    apply_0001(migrating)
    backup = Session(user=APP, application_name="nightly-backup").hold("tests_beta")
    web = Session(user=APP, application_name="web").hold("tests_beta")
    sessions += [backup, web]

    run = MigrateThread("tests", "0002", database=migrating)
    wait_until(lambda: not is_alive(web.pid), what="the unprotected session was ended")
    wait_until(lambda: "is protected" in run.output.getvalue(), what="the protected one shown")
    assert is_alive(backup.pid)
    backup.release()
    out = run.finish()

    assert "cannot tell" not in out
    assert (
        f"session pid {backup.pid} (user '{APP}', application 'nightly-backup') blocks the "
        "migration but is protected (PGMIGRATE_PROTECTED: application_name" in out
    )


def test_check_warns_of_rules_on_hidden_columns(app_roles):
    def warnings(using: str) -> list[checks.CheckMessage]:
        found = checks.run_checks(databases=[using])
        return [message for message in found if message.id == "pgmigrate.W005"]

    with override_settings(PGMIGRATE_PROTECTED={"query": ["*x*"], "usename": ["backup"]}):
        (warning,) = warnings("migrator")
        assert "PGMIGRATE_PROTECTED names query" in warning.msg
        assert f'GRANT pg_read_all_stats TO "{MIGRATOR}";' in warning.hint
        assert not warnings("default")  # a superuser sees every column
        query(f"GRANT pg_read_all_stats TO {MIGRATOR}")
        assert not warnings("migrator")
        query(f"REVOKE pg_read_all_stats FROM {MIGRATOR}")
    with override_settings(PGMIGRATE_PROTECTED={"application_name": ["x"], "usename": ["y"]}):
        assert not warnings("migrator")


# PostgreSQL's own processes ----------------------------------------------------------------


@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_logical_replication_sender_is_never_ended(migrating, sessions):
    """A subscription's table sync: a walsender that copies the table in a transaction
    holding ACCESS SHARE (here with a logical slot, as PostgreSQL's subscriber makes)."""
    psycopg = pytest.importorskip("psycopg")
    apply_0001(migrating)
    params = connections["default"].get_connection_params()
    for key in ("cursor_factory", "context", "user", "application_name"):
        params.pop(key, None)
    sender = psycopg.connect(
        **params, user=REPLICATOR, application_name="sub-sync", replication="database"
    )
    try:
        statements = ["BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ"]
        # Making a logical slot waits for every transaction that has an xid (a leftover
        # prepared transaction would make it wait forever).
        busy = query(
            "SELECT 1 FROM pg_stat_activity WHERE backend_xid IS NOT NULL"
            " UNION ALL SELECT 1 FROM pg_prepared_xacts"
        )
        if query("SHOW wal_level") == [("logical",)] and not busy:
            statements.append(
                "CREATE_REPLICATION_SLOT pgm_sync TEMPORARY LOGICAL pgoutput (SNAPSHOT 'use')"
                if connections["default"].pg_version >= 150000
                else "CREATE_REPLICATION_SLOT pgm_sync TEMPORARY LOGICAL pgoutput USE_SNAPSHOT"
            )
        statements.append("SELECT count(*) FROM tests_beta")  # what the sync's COPY locks
        for statement in statements:
            result = sender.pgconn.exec_(statement.encode())
            assert result.error_message == b"", result.error_message
        pid = sender.pgconn.backend_pid
        if len(statements) == 3:  # a logical replication slot, used by this sender
            assert query(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'pgm_sync'"
            ) == [(pid,)]
        run = MigrateThread("tests", "0002", database=migrating)
        wait_until(lambda: "always protected" in run.output.getvalue(), what="sender shown")
        out_of_the_queue(run)
        assert is_alive(pid)
    finally:
        sender.close()
    out = run.finish()

    assert not terminated_lines(out)
    assert f"session pid {pid} (user '{REPLICATOR}', application 'sub-sync')" in out
    if migrating == "migrator":  # backend_type is hidden from it: pg_stat_replication tells
        assert "always protected: a WAL sender (replication)" in out
    assert applied() == ["0001_initial", "0002_add_fields"]


def test_autovacuum_is_never_ended(migrating):
    """An autovacuum worker has no user, and hides its backend_type from a least-privilege
    role. (PostgreSQL itself cancels it after deadlock_timeout: then migrate goes on.)"""
    apply_0001(migrating)
    with slow_autovacuum_on_beta() as worker:
        out = migrate("tests", "0002", database=migrating)
    assert f"session pid {worker} " in out
    assert "always protected" in out
    assert not terminated_lines(out)


# Prepared transactions ---------------------------------------------------------------------


def test_a_prepared_transactions_literal_is_printable_and_names_it(app_roles):
    """A gid with control characters, a line break, a quote and a backslash is printed as
    an escape string with nothing a terminal would act on, and the printed literal, pasted
    back, ends that prepared transaction."""
    if not roles.prepared_transactions_allowed():
        pytest.skip("the server does not allow prepared transactions")
    gid = f"{GID_PREFIX} it's\\odd\n\x1b[2J\u2028\x85"
    prepare(gid, user=APP, table="pg_class")
    try:
        literal = lockgraph.PreparedTransaction(gid, None, None, None, None).literal
        assert literal.startswith("E'") and printable(literal) == literal
        query(f"ROLLBACK PREPARED {literal}")
        assert not query("SELECT 1 FROM pg_prepared_xacts WHERE gid = %s", [gid])
    finally:
        roles.rollback_prepared()
    plain = lockgraph.PreparedTransaction("it's plain", None, None, None, None).literal
    assert plain == "'it''s plain'"


@pytest.mark.parametrize("action", ["terminate", "show"])
@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_prepared_transaction_is_named_and_never_ended(migrating, action):
    if not roles.prepared_transactions_allowed():
        pytest.skip("the server does not allow prepared transactions")
    apply_0001(migrating)
    gid = f"{GID_PREFIX} 'forgotten'"
    literal = f"'{GID_PREFIX} ''forgotten'''"
    prepare(gid, user=APP)
    run = MigrateThread("tests", "0002", database=migrating, blocking_action=action)
    try:
        wait_until(
            lambda: f"prepared transaction {literal}" in run.output.getvalue(),
            what="the prepared transaction was named",
        )
        out_of_the_queue(run)
        assert query("SELECT 1 FROM pg_prepared_xacts WHERE gid = %s", [gid])
    finally:
        roles.rollback_prepared()
    out = run.finish()

    database = connections["default"].settings_dict["NAME"]
    assert out.count("pgmigrate: prepared transaction") == 1
    assert (
        f"pgmigrate: prepared transaction {literal} (owner '{APP}', database '{database}', "
        "prepared 0:00:" in out
    )
    assert (
        "blocks the migration: it holds a lock the migration needs (AccessExclusiveLock on "
        "tests_beta)" in out
    )
    assert "cannot be terminated or cancelled" in out
    assert f"to end it: ROLLBACK PREPARED {literal}; (or COMMIT PREPARED {literal};" in out
    assert not terminated_lines(out)
    assert "shown 1 blocker(s)" in out
    assert applied() == ["0001_initial", "0002_add_fields"]


def test_a_prepared_transaction_joins_no_session_in_the_lock_graph(app_roles):
    """The watcher reads the lock graph with each row's session in one statement; a prepared
    transaction's rows have no pid and must join no session (``pg_stat_get_activity`` of
    NULL or of a negative pid returns every session: hundreds of rows on a busy server,
    while the app waits)."""
    if not roles.prepared_transactions_allowed():
        pytest.skip("the server does not allow prepared transactions")
    apply_0001("default")
    prepare(f"{GID_PREFIX} graph", user=APP)
    waiter, bystander = Session(application_name="waiter"), Session(application_name="idle")
    try:
        thread, _ = run_in_thread(lambda: waiter.hold("tests_beta", "ACCESS EXCLUSIVE"))
        wait_until(
            lambda: query("SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", [waiter.pid]),
            what="the session waits behind the prepared transaction",
        )
        graph = query(lockgraph.LOCK_GRAPH, [waiter.pid, lockgraph.STRONG_MODES])
        joined = query(GRAPH_AND_SESSIONS, [waiter.pid, lockgraph.STRONG_MODES])
        assert any(row[0] is None for row in graph)  # the prepared transaction's row
        assert len(joined) == len(graph)
    finally:
        roles.rollback_prepared()
        thread.join()
        waiter.close()
        bystander.close()


@override_settings(PGMIGRATE_LOCK_TIMEOUT=0.5)
def test_a_prepared_transaction_is_named_before_the_lock_timeout(migrating):
    if not roles.prepared_transactions_allowed():
        pytest.skip("the server does not allow prepared transactions")
    apply_0001(migrating)
    prepare(f"{GID_PREFIX}-2", user=MIGRATOR)
    try:
        run = MigrateThread("tests", "0002", database=migrating)
        with pytest.raises(CommandError, match="lock timeout"):
            run.finish()
    finally:
        roles.rollback_prepared()
    out = run.output.getvalue()
    assert f"pgmigrate: prepared transaction '{GID_PREFIX}-2' (owner '{MIGRATOR}'" in out
    assert "waits for it to end (or the lock timeout, 0.5 s)" in out
    assert "stepped out of the lock queue" in out


# Sessions queued ahead of the migration ----------------------------------------------------


@override_settings(
    PGMIGRATE_PROTECTED={"application_name": ["nightly-*"]},
    PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT,
)
def test_a_queued_session_is_not_ended_behind_a_holder_that_stays(migrating, sessions):
    apply_0001(migrating)
    holder = Session(user=APP, application_name="nightly-index").hold("tests_beta", "SHARE")
    writer = Session(user=APP, application_name="writer")
    sessions += [holder, writer]
    thread, outcome = run_in_thread(
        lambda: writer.execute("INSERT INTO tests_beta (name) VALUES ('w')")
    )
    wait_until(lambda: is_waiting_on_lock(writer.pid), what="the writer queues")

    run = MigrateThread("tests", "0002", database=migrating)
    wait_until(
        lambda: "waits in the lock queue ahead of the migration" in run.output.getvalue(),
        what="the queued writer was shown",
    )
    out_of_the_queue(run)
    assert is_alive(writer.pid) and is_waiting_on_lock(writer.pid)
    # The test, not pgmigrate, ends the writer's wait (it would otherwise get its lock, and
    # be done, before the migration).
    query("SELECT pg_cancel_backend(%s)", [writer.pid])
    thread.join(SAFETY_LOCK_TIMEOUT)
    assert "canceling statement due to user request" in str(outcome.get("error"))
    holder.release()
    out = run.finish()

    assert is_alive(writer.pid) and is_alive(holder.pid)
    assert (
        f"session pid {writer.pid} (user '{APP}', application 'writer') waits in the lock "
        f"queue ahead of the migration but holds no lock it needs; it is left alone: pid "
        f"{holder.pid} (protected) stay(s) in the migration's way" in out
    )
    assert not terminated_lines(out)


@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_queued_session_goes_ahead_once_the_holders_are_ended(migrating, sessions):
    """Ending the holder lets the queued writer have its lock first: it writes and is done,
    and the migration follows. The writer is not ended for merely queueing."""
    apply_0001(migrating)
    holder = Session(user=APP, application_name="index-build").hold("tests_beta", "SHARE")
    writer = Session(user=APP, application_name="writer")
    sessions += [holder, writer]
    thread, outcome = run_in_thread(
        lambda: writer.execute("INSERT INTO tests_beta (name) VALUES ('w')")
    )
    wait_until(lambda: is_waiting_on_lock(writer.pid), what="the writer queues")

    out = migrate("tests", "0002", database=migrating)
    thread.join(SAFETY_LOCK_TIMEOUT)

    assert not is_alive(holder.pid)
    assert "queued ahead of the migration" not in "\n".join(terminated_lines(out))
    assert (
        f"session pid {writer.pid} (user '{APP}', application 'writer') waits in the lock "
        "queue ahead of the migration but holds no lock it needs; it is left alone: once the "
        "sessions holding the lock are gone it gets its lock before the migration" in out
    )
    if "error" not in outcome:  # it wrote (unless it kept its lock long enough to be ended)
        assert query("SELECT count(*) FROM tests_beta WHERE name = 'w'") == [(1,)]


@pytest.mark.scenario("share_update_lock")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_queued_session_alone_in_the_way_is_ended(migrating, sessions):
    """The migration wants SHARE UPDATE EXCLUSIVE (as CREATE INDEX CONCURRENTLY does); a
    reader's ACCESS SHARE does not conflict with it, but an ALTER queued behind the reader
    does, and is ahead of the migration: ending that ALTER lets the migration go on."""
    apply_0001(migrating)
    reader = Session(user=APP, application_name="report").hold("tests_beta")
    alter = Session(user=APP, application_name="admin-alter")
    sessions += [reader, alter]
    thread, _ = run_in_thread(lambda: alter.hold("tests_beta", "ACCESS EXCLUSIVE"))
    wait_until(lambda: is_waiting_on_lock(alter.pid), what="the ALTER queues")

    out = migrate("tests", "0002", database=migrating)
    thread.join(SAFETY_LOCK_TIMEOUT)

    assert not is_alive(alter.pid)
    assert is_alive(reader.pid)
    (line,) = terminated_lines(out)
    assert f"pid {alter.pid} (application 'admin-alter', " in line
    assert line.endswith("queued ahead of the migration)")


# What the actions do -----------------------------------------------------------------------


@override_settings(PGMIGRATE_BLOCKING_ACTION=pgmigrate.Cancel)
def test_cancel_says_it_cannot_free_an_idle_transaction(migrating, sessions, tmp_path):
    apply_0001(migrating)
    idle = Session(user=APP, application_name="forgotten").hold("tests_beta")
    sessions.append(idle)
    report = tmp_path / "report.json"
    run = MigrateThread("tests", "0002", database=migrating, pgmigrate_report=str(report))
    said = "cannot cancel" if migrating == "default" else "PostgreSQL hides the state of pid"
    wait_until(lambda: said in run.output.getvalue(), what="Cancel said it")
    out_of_the_queue(run)  # after the cancel, which could not free its locks
    assert is_alive(idle.pid)
    idle.release()
    out = run.finish()

    figures = json.loads(report.read_text())["migrations"][0]
    if migrating == "default":
        assert out.count("cannot cancel") == 1
        assert (
            f"pgmigrate: cannot cancel pid {idle.pid} (application 'forgotten', idle in "
            "transaction): it runs no query, so pg_cancel_backend would not free the locks "
            "it holds" in out
        )
        assert f"to end it: SELECT pg_terminate_backend({idle.pid});" in out
        assert "cancelled the query of" not in out
        assert figures["blockers_cancelled"] == []
        assert figures["blockers_shown"] == [idle.pid]
    else:  # its state is hidden: cancelled, with a word on what that cannot do
        assert f"cancelled the query of 1 session blocking the migration: pid {idle.pid}" in out
        assert "if it sits idle in a transaction, cancelling does not free its locks" in out


@contextlib.contextmanager
def _held_at_the_door(migrating: str) -> Iterator[MigrateThread]:
    """Apply tests 0002 on ``migrating`` with its action held right before it signals the
    blockers it was given (``tests.actions.GatedAtTheDoor``): the block runs there, and lets
    the action go on with ``GatedAtTheDoor.gate.set()`` (at its end at the latest)."""
    door = actions.GatedAtTheDoor
    door.entered.clear()
    door.gate.clear()
    with override_settings(
        PGMIGRATE_BLOCKING_ACTION="tests.actions.GatedAtTheDoor",
        PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT,
    ):
        run = MigrateThread("tests", "0002", database=migrating)
        try:
            wait_until(door.entered.is_set, what="the action is about to terminate")
            yield run
        finally:
            door.gate.set()


def _migrate_held_at_the_door(migrating: str, meanwhile: Callable[[], None]) -> str:
    """``_held_at_the_door``, running ``meanwhile`` there. Returns migrate's output."""
    with _held_at_the_door(migrating) as run:
        meanwhile()
        actions.GatedAtTheDoor.gate.set()
        return run.finish()


def test_a_session_is_ended_only_while_it_is_the_one_seen(migrating, sessions):
    """The blocker's transaction ends between the look and the signal, and the session goes
    on with another transaction (as a new session that got its pid would): not ended."""
    apply_0001(migrating)
    blocker = Session(user=APP, application_name="quick").hold("tests_beta")
    sessions.append(blocker)

    def another_transaction() -> None:
        blocker.release()
        blocker.connection.set_autocommit(False)
        blocker.execute("SELECT 1")  # another transaction of the same session

    out = _migrate_held_at_the_door(migrating, another_transaction)
    assert is_alive(blocker.pid)
    assert not terminated_lines(out)
    assert "tests_beta" not in locked_tables(blocker.pid)
    blocker.release()
    assert applied() == ["0001_initial", "0002_add_fields"]


def _waits_for_advisory_lock(pid: int, key: int) -> bool:
    return bool(
        query(
            "SELECT 1 FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND objid = %s"
            " AND NOT granted",
            [pid, key],
        )
    )


def test_a_later_transaction_of_the_same_query_string_is_not_ended(migrating, sessions):
    """Several statements sent in one query string (psql -c, a script, psycopg 2) run their
    transactions under one statement timestamp: each has the same ``xact_start``. The
    blocker's transaction ends between the look and the signal and the next one of the same
    string begins, holding nothing the migration needs: not ended."""
    apply_0001(migrating)
    gatekeeper = Session(application_name="gatekeeper")
    sessions.append(gatekeeper)
    gatekeeper.execute("SELECT pg_advisory_lock(1501), pg_advisory_lock(1502)")
    blocker = Session(user=APP, application_name="script")
    sessions.append(blocker)
    script = (
        "BEGIN; LOCK TABLE tests_beta IN ACCESS SHARE MODE; SELECT pg_advisory_xact_lock(1501);"
        " COMMIT; BEGIN; SELECT pg_advisory_xact_lock(1502); COMMIT"
    )
    thread, outcome = run_in_thread(lambda: blocker.execute(script))
    wait_until(lambda: _waits_for_advisory_lock(blocker.pid, 1501), what="the script waits")

    def next_transaction_of_the_string() -> None:
        gatekeeper.execute("SELECT pg_advisory_unlock(1501)")
        wait_until(
            lambda: _waits_for_advisory_lock(blocker.pid, 1502),
            what="the script's next transaction",
        )

    out = _migrate_held_at_the_door(migrating, next_transaction_of_the_string)
    assert is_alive(blocker.pid)
    assert not terminated_lines(out)
    gatekeeper.execute("SELECT pg_advisory_unlock(1502)")
    thread.join(10)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert applied() == ["0001_initial", "0002_add_fields"]


def _lock_graph(pid: int) -> lockgraph.LockGraph | None:
    rows = query(lockgraph.LOCK_GRAPH, [pid, lockgraph.STRONG_MODES])
    return lockgraph.from_rows([row[: lockgraph.COLUMNS] for row in rows])


def _lock_graph_while(waiter: Session, wait: Any, release: Any) -> lockgraph.LockGraph | None:
    """The lock graph of ``waiter`` once ``wait`` (run in a thread) waits on a lock; then
    ``release`` lets it through."""
    thread, outcome = run_in_thread(wait)
    try:
        wait_until(lambda: is_waiting_on_lock(waiter.pid), what="the session waits")
        return _lock_graph(waiter.pid)
    finally:
        release()
        thread.join(10)
        assert not thread.is_alive() and "error" not in outcome, outcome


def test_lock_graph_of_a_row_lock_and_of_a_prepared_transaction(app_roles, sessions):
    """The lock graph of a session that waits for nothing is none; of one that waits for a
    row another transaction updated, the other transaction's ``transactionid`` lock; of one
    that waits behind a prepared transaction holding two conflicting table locks, that
    prepared transaction once."""
    if not roles.prepared_transactions_allowed():
        pytest.skip("the server does not allow prepared transactions")
    apply_0001("default")
    query("INSERT INTO tests_gamma (id, name) VALUES (1, 'row')")
    writer, waiter = Session(application_name="writer"), Session(application_name="waiter")
    sessions += [writer, waiter]
    assert _lock_graph(waiter.pid) is None
    writer.connection.set_autocommit(False)
    writer.execute("UPDATE tests_gamma SET name = 'writer' WHERE id = 1")
    graph = _lock_graph_while(
        waiter,
        lambda: waiter.execute("UPDATE tests_gamma SET name = 'waiter' WHERE id = 1"),
        writer.release,
    )
    assert graph is not None and graph.locktype == "transactionid"
    assert graph.target == "ShareLock on a transactionid lock"
    assert list(graph.holders) == [writer.pid] and not graph.blocks_app
    two_phase = Session(user=APP, application_name="two-phase")
    try:
        two_phase.connection.set_autocommit(False)
        two_phase.execute("SELECT count(*) FROM tests_beta")  # ACCESS SHARE
        two_phase.execute("INSERT INTO tests_beta (name) VALUES ('prepared')")  # ROW EXCLUSIVE
        two_phase.execute(f"PREPARE TRANSACTION '{GID_PREFIX}-two-modes'")
    finally:
        two_phase.close()
    try:
        graph = _lock_graph_while(
            waiter, lambda: waiter.hold("tests_beta", "ACCESS EXCLUSIVE"), roles.rollback_prepared
        )
    finally:
        waiter.release()
    assert graph is not None and graph.target == "AccessExclusiveLock on tests_beta"
    assert [prepared.gid for prepared in graph.prepared] == [f"{GID_PREFIX}-two-modes"]
    assert graph.holders == {}


# Sessions in the way through others: parallel workers, row queues, session-level locks ----


#: A function that reads ``tests_beta`` (ACCESS SHARE) and takes 10 ms a row, safe to run in
#: a parallel query's workers.
PARALLEL_READ = """
CREATE FUNCTION tests_parallel_read(i int) RETURNS bool LANGUAGE plpgsql PARALLEL SAFE AS $$
BEGIN
    PERFORM count(*) FROM tests_beta;
    PERFORM pg_sleep(0.01);
    RETURN true;
END $$
"""


def _workers_hold_beta(leader: int) -> list[tuple[int, str]]:
    """The parallel workers of ``leader`` holding a lock on ``tests_beta``, with their vxids."""
    return query(
        "SELECT l.pid, l.virtualtransaction FROM pg_locks AS l"
        " JOIN pg_stat_activity AS a ON a.pid = l.pid"
        " WHERE l.relation = 'tests_beta'::regclass AND l.granted AND a.leader_pid = %s",
        [leader],
    )


@pytest.fixture
def parallel_reader(migrating, sessions) -> Iterator[Session]:
    """Once tests 0001 is applied by ``migrating``, a session of the app's role running a
    parallel query whose workers alone (the leader does not take part) hold ACCESS SHARE on
    ``tests_beta`` for a minute; yields it."""
    apply_0001(migrating)
    query("CREATE TABLE tests_parallel (id int)")
    query("INSERT INTO tests_parallel SELECT g FROM generate_series(1, 12000) AS g")
    query("ANALYZE tests_parallel")
    query(f"GRANT SELECT ON tests_parallel TO {APP}")
    query(PARALLEL_READ)
    reader = Session(user=APP, application_name="report")
    sessions.append(reader)
    for setting in (
        "max_parallel_workers_per_gather = 2",
        "parallel_setup_cost = 0",
        "parallel_tuple_cost = 0",
        "min_parallel_table_scan_size = 0",
        "parallel_leader_participation = off",
    ):
        reader.execute(f"SET {setting}")
    thread, _ = run_in_thread(
        lambda: reader.execute("SELECT count(*) FROM tests_parallel WHERE tests_parallel_read(id)")
    )
    try:
        wait_until(lambda: _workers_hold_beta(reader.pid), what="the workers hold tests_beta")
        assert "tests_beta" not in locked_tables(reader.pid)  # the leader holds nothing
        yield reader
    finally:
        query("SELECT pg_cancel_backend(%s)", [reader.pid])
        thread.join(SAFETY_LOCK_TIMEOUT)
        query("DROP FUNCTION IF EXISTS tests_parallel_read(int) CASCADE")


@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_the_leader_of_parallel_workers_holding_the_lock_is_ended(migrating, parallel_reader):
    """``pg_blocking_pids`` names a parallel query's leader, ``pg_locks`` its workers, which
    alone hold the lock: the leader is the blocker. Where PostgreSQL shows the migrating
    role which session leads them (``leader_pid``), it is ended; where it hides it, the
    leader is left alone and the migration steps out of the lock queue."""
    reader = parallel_reader
    if migrating == "default":
        out = migrate("tests", "0002", database=migrating)
        assert f"terminated 1 session blocking the migration: pid {reader.pid}" in out
        wait_until(lambda: not is_alive(reader.pid), what="the leader is gone")
    else:
        run = MigrateThread("tests", "0002", database=migrating)
        out_of_the_queue(run)
        assert is_alive(reader.pid)
        query("SELECT pg_cancel_backend(%s)", [reader.pid])  # the test ends its query
        out = run.finish()
        assert (
            f"session pid {reader.pid} (user '{APP}', application 'report') blocks the "
            "migration through the workers of a parallel query, but PostgreSQL hides" in out
        )
        assert not terminated_lines(out)
    assert applied() == ["0001_initial", "0002_add_fields"]


@override_settings(
    PGMIGRATE_PROTECTED={"application_name": ["report"]},
    PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT,
)
def test_a_protected_leader_of_parallel_workers_is_waited_for_out_of_the_queue(
    migrating, parallel_reader
):
    """Out of the lock queue, the migration waits until the workers let go of their locks
    (they hold them under virtual transactions of their own), not a moment less."""
    reader = parallel_reader
    run = _waiting_out_of_the_queue(migrating, "for the workers")
    assert is_alive(reader.pid) and _workers_hold_beta(reader.pid)
    assert applied() == ["0001_initial"]
    query("SELECT pg_cancel_backend(%s)", [reader.pid])  # the test ends its query
    out = run.finish()
    assert is_alive(reader.pid)
    assert not terminated_lines(out)
    assert applied() == ["0001_initial", "0002_add_fields"]


def _row_queue(sessions: list, holder_name: str) -> tuple[Session, Session, Any, dict]:
    """A session of the app's role (``holder_name``) that holds row 1 of ``tests_gamma``
    (``FOR UPDATE``, idle in transaction) and an app ``UPDATE`` of the row queued for it:
    it holds the row's tuple lock while it waits. Returns both, the updater's thread and its
    outcome."""
    query("INSERT INTO tests_gamma (id, name) VALUES (1, 'row')")
    holder = Session(user=APP, application_name=holder_name)
    updater = Session(user=APP, application_name="web")
    sessions += [holder, updater]
    holder.connection.set_autocommit(False)
    holder.execute("SELECT * FROM tests_gamma WHERE id = 1 FOR UPDATE")
    thread, outcome = run_in_thread(
        lambda: updater.execute("UPDATE tests_gamma SET name = 'web' WHERE id = 1")
    )
    wait_until(lambda: is_waiting_on_lock(updater.pid), what="the app's UPDATE waits")
    return holder, updater, thread, outcome


@pytest.mark.scenario("row_update")
@override_settings(
    PGMIGRATE_PROTECTED={"application_name": ["nightly-*"]},
    PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT,
)
def test_a_session_queued_for_a_row_is_not_ended_behind_a_protected_holder(migrating, sessions):
    """The migration's ``UPDATE`` waits for the row's tuple lock, held by an app ``UPDATE``
    that waits for the row's holder: the app's ``UPDATE`` is only queued ahead of the
    migration. Behind a protected holder, ending it would be in vain: it is left alone."""
    apply_0001(migrating)
    holder, updater, thread, outcome = _row_queue(sessions, "nightly-rows")
    run = MigrateThread("tests", "0002", database=migrating)
    wait_until(
        lambda: "waits in the lock queue ahead of the migration" in run.output.getvalue(),
        what="the queued UPDATE was shown",
    )
    assert is_alive(updater.pid) and is_waiting_on_lock(updater.pid)
    holder.release()  # the app's UPDATE goes first, then the migration's
    out = run.finish()
    thread.join(SAFETY_LOCK_TIMEOUT)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert is_alive(holder.pid) and is_alive(updater.pid)
    assert not terminated_lines(out)
    assert (
        f"session pid {updater.pid} (user '{APP}', application 'web') waits in the lock queue "
        f"ahead of the migration but holds no lock it needs; it is left alone: pid "
        f"{holder.pid} (protected) stay(s) in the migration's way" in out
    )
    assert query("SELECT name FROM tests_gamma WHERE id = 1") == [("migrated",)]


@pytest.mark.scenario("row_update")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_the_holder_of_a_row_is_ended_and_the_session_queued_for_it_spared(migrating, sessions):
    """Behind a holder of the row that may be ended, ending the holder suffices: the app's
    ``UPDATE`` queued for the row goes through, then the migration's."""
    apply_0001(migrating)
    holder, updater, thread, outcome = _row_queue(sessions, "forgotten")
    out = migrate("tests", "0002", database=migrating)
    thread.join(SAFETY_LOCK_TIMEOUT)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert not is_alive(holder.pid) and is_alive(updater.pid)
    (line,) = terminated_lines(out)
    assert f"pid {holder.pid} (application 'forgotten', " in line
    assert line.endswith(f"holding the row pid {updater.pid} waits for)")
    assert query("SELECT name FROM tests_gamma WHERE id = 1") == [("migrated",)]


@pytest.mark.scenario("advisory")
def test_a_session_level_lock_is_ended_in_a_later_transaction_of_its_session(migrating, sessions):
    """A session holds a session-level advisory lock that the migration waits for; between
    the look and the signal it moves on to another transaction (a job worker running short
    statements). The lock is the session's, not the transaction's: it is still ended."""
    apply_0001(migrating)
    holder = Session(user=APP, application_name="job-worker")
    sessions.append(holder)
    holder.execute("SELECT pg_advisory_lock(4242)")
    holder.connection.set_autocommit(False)
    holder.execute("SELECT 1")  # seen in this transaction

    def next_transaction() -> None:
        holder.connection.rollback()
        holder.execute("SELECT 2")  # another transaction of the session, still holding it

    out = _migrate_held_at_the_door(migrating, next_transaction)
    assert f"terminated 1 session blocking the migration: pid {holder.pid}" in out
    assert not is_alive(holder.pid)
    assert applied() == ["0001_initial", "0002_advisory"]


@pytest.mark.scenario("advisory")
@override_settings(PGMIGRATE_PROTECTED={"query": ["*nightly-export*"]})
def test_a_session_level_lock_is_not_ended_in_a_transaction_its_protection_was_not_read_in(
    migrating, sessions
):
    """As above, but a protection rule reads what changes from one transaction to the next
    (``query``): the session's later transaction runs a protected statement. Judged in the
    transaction seen, it is not ended in another one (found by an adversarial review: a job
    worker was terminated while its protected statement ran)."""
    if migrating == roles.ALIASES["least-privilege"]:
        pytest.skip("query is hidden from it: the session is undecidable from the first look")
    apply_0001(migrating)
    holder = Session(user=APP, application_name="job-worker")
    sessions.append(holder)
    holder.execute("SELECT pg_advisory_lock(4242)")
    holder.connection.set_autocommit(False)
    holder.execute("SELECT 1 /* poll */")  # seen in this transaction, not protected
    with _held_at_the_door(migrating) as run:
        holder.connection.rollback()
        holder.execute("SELECT 2 /* nightly-export */")  # a protected statement's turn
        actions.GatedAtTheDoor.gate.set()
        wait_until(
            lambda: (
                f"pid {holder.pid}" in run.output.getvalue()
                and "protected" in run.output.getvalue()
            ),
            what="the holder is left alone, judged in its current transaction",
        )
        assert is_alive(holder.pid)
        holder.connection.rollback()
        holder.execute("SELECT pg_advisory_unlock(4242)")
        out = run.finish()
    assert not terminated_lines(out)
    assert is_alive(holder.pid)
    assert applied() == ["0001_initial", "0002_advisory"]


@pytest.mark.scenario("row_update_strong")
@override_settings(
    PGMIGRATE_PROTECTED={"application_name": ["nightly-*"]},
    PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT,
)
def test_out_of_the_queue_the_migration_waits_for_the_protected_holder_of_a_row(
    migrating, sessions
):
    """The migration holds a SHARE lock (the app's writes queue behind it) while its
    ``UPDATE`` waits for a row's tuple lock, held by an app ``UPDATE`` queued for the row
    behind a protected holder: it steps out of the lock queue and waits there, until the
    holder is gone (not a moment less: it would run its statement again and again)."""
    apply_0001(migrating)
    holder, updater, thread, outcome = _row_queue(sessions, "nightly-rows")
    run = _waiting_out_of_the_queue(migrating, "for the row's holder")
    assert is_alive(updater.pid) and is_waiting_on_lock(updater.pid)
    holder.release()
    out = run.finish()
    thread.join(SAFETY_LOCK_TIMEOUT)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert not terminated_lines(out)
    assert query("SELECT name FROM tests_gamma WHERE id = 1") == [("migrated",)]
