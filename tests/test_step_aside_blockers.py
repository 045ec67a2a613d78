"""Stepping out of the lock queue (``pgmigrate.aside``) for each kind of blocker pgmigrate
does not end: left alone by Show, None or a custom action, not ended by an action that ends
others, protected next to one it ends, prepared transactions, a superuser's session out of a
least-privilege role's reach, undecidable protection, ``--database other``; each retry unit;
blockers that change while the migration waits out of the queue; the waits it never steps
aside from; turning it off; its events, signals, report, lock timeout and Ctrl-C; and what
leaving the queue costs (autovacuum, busy protected sessions).

"The app does not queue" is shown the same way throughout: once migrate said it stepped
aside, its backend has no ungranted lock, and an app session's read and write of the table
return while the blocker still holds its lock (they would wait behind a queued ``ALTER``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.management.base import CommandError
from django.db import OperationalError
from django.test import override_settings

import pgmigrate
from pgmigrate import signals
from tests import actions, roles
from tests.helpers import (
    ROOT,
    MigrateThread,
    Session,
    applied,
    columns,
    is_alive,
    is_waiting_on_lock,
    locked_tables,
    manage,
    manage_env,
    migrate,
    query,
    slow_autovacuum_on_beta,
    wait_until,
    waited_at_least,
)
from tests.roles import APP, GID_PREFIX, apply_0001, prepare, run_in_thread

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other", "migrator"])

#: A safety net so that a broken watcher fails a test instead of hanging it.
SAFETY_LOCK_TIMEOUT = 30
#: Sessions of these applications are protected (where a test sets PGMIGRATE_PROTECTED).
PROTECTED = {"application_name": ["nightly-*"]}
#: How each step-aside line begins.
STEPPED = "pgmigrate: stepped out of the lock queue"
#: How each reminder of whom the migration waits for, out of the queue, begins.
REMINDER = "pgmigrate: still out of the lock queue after "
BOTH = ["0001_initial", "0002_add_fields"]
#: The lock of CREATE INDEX CONCURRENTLY and VACUUM: the app's reads and writes do not wait
#: for it.
SUE = "SHARE UPDATE EXCLUSIVE"


@pytest.fixture
def app_roles(scenario) -> Iterator[None]:
    with roles.created():
        yield


@pytest.fixture(params=sorted(roles.ALIASES))
def migrating(request, app_roles) -> str:
    """The database alias migrate runs with: a superuser's, or the least-privilege role's."""
    return roles.ALIASES[request.param]


def stepped_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(STEPPED)]


def stepped_aside(run: MigrateThread, *, lines: int = 1, using: str = "default") -> str:
    """Wait until migrate printed ``lines`` step-aside lines and its backend left the lock
    queue; the last such line."""
    wait_until(
        lambda: len(stepped_lines(run.output.getvalue())) >= lines,
        what=f"migrate said {lines} time(s) that it stepped out of the lock queue",
    )
    wait_until(
        lambda: not is_waiting_on_lock(run.backend_pid, using),
        what="the migrating backend left the lock queue",
    )
    return stepped_lines(run.output.getvalue())[-1]


def app_does_not_queue(
    run: MigrateThread,
    app: Session,
    holder: Session | None,
    table: str = "tests_beta",
    using: str = "default",
    held: str = "tests_beta",
) -> None:
    """An app's read and write of ``table`` return while ``holder`` (None: a prepared
    transaction the test checks itself) still holds its lock on ``held`` and migrate still
    runs, out of the queue."""
    app.execute("SET lock_timeout = '10s'")  # a safety net: it fails rather than queue long
    assert app.execute(f"SELECT count(*) FROM {table}")
    app.execute(f"INSERT INTO {table} (name) VALUES ('app')")
    if holder is not None:
        assert held in locked_tables(holder.pid, using)
    assert run.is_alive()
    assert not is_waiting_on_lock(run.backend_pid, using)


def app_queues(run: MigrateThread, app: Session, holder: Session) -> None:
    """Migrate stays in the lock queue: it has waited there half a second, and an app query
    on tests_beta queues behind it (giving up at its 100 ms lock timeout) while ``holder``
    keeps its lock."""
    wait_until(lambda: waited_at_least(run.backend_pid, 0.5), what="migrate waited 0.5 s")
    app.execute("SET lock_timeout = '100ms'")
    with pytest.raises(OperationalError, match="lock timeout"):
        app.execute("SELECT count(*) FROM tests_beta")
    assert is_waiting_on_lock(run.backend_pid) and is_alive(holder.pid)


def migrate_aside(
    sessions: list,
    blocker: Session,
    target: str = "0002",
    *,
    database: str | None = None,
    app_user: str | None = None,
    table: str = "tests_beta",
    held: str = "tests_beta",
    meanwhile: Callable[[MigrateThread], None] | None = None,
    **options: Any,
) -> tuple[str, str]:
    """Migrate the tests app to ``target`` while ``blocker`` holds its lock on ``held``: wait
    until migrate stepped aside, check that the app does not queue on ``table`` (as
    ``app_user``), run ``meanwhile``, end the blocker's transaction, let migrate finish.
    Returns the step-aside line and what migrate printed."""
    using = blocker.using
    sessions.append(blocker)
    app = Session(using, user=app_user, application_name="app")
    sessions.append(app)
    run = MigrateThread("tests", target, database=database or using, **options)
    line = stepped_aside(run, using=using)
    app_does_not_queue(run, app, blocker, table=table, using=using, held=held)
    if meanwhile is not None:
        meanwhile(run)
    assert is_alive(blocker.pid, using)
    blocker.release()
    out = run.finish()
    assert is_alive(blocker.pid, using)
    return line, out


def summary_aside(out: str) -> tuple[int, float]:
    """Times and seconds out of the lock queue, from the summary line."""
    match = re.search(r"stepped out of the lock queue (\d+) time\(s\) for ([\d.]+) s", out)
    assert match, out
    return int(match.group(1)), float(match.group(2))


# Blockers left alone by the blocking action --------------------------------------------------


@override_settings(
    PGMIGRATE_BLOCKING_ACTION=pgmigrate.Show, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT
)
def test_show_steps_aside_for_the_blocker_it_shows(scenario, sessions):
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="report").hold("tests_beta")

    line, out = migrate_aside(sessions, blocker)

    assert "flag" in columns("tests_beta")
    assert applied() == BOTH
    assert "AccessExclusiveLock on tests_beta" in line
    assert re.search(
        rf"pid {blocker.pid} \(application 'report', idle in transaction, transaction open "
        rf"{age(line)}, left alone by [\w ]+\)",
        line,
    )
    assert "The app's queries no longer queue behind the migration" in line
    assert f"(or gives up at the lock timeout, {SAFETY_LOCK_TIMEOUT} s)." in line
    # Show's own lines, once, though the statement ran twice.
    assert out.count("blocks the migration") == 1
    assert f"session pid {blocker.pid} blocks the migration" in out
    assert f"to end it: SELECT pg_terminate_backend({blocker.pid});" in out
    assert "terminated" not in out
    assert re.search(
        r"the sessions the migration stepped aside for are gone after [\d.]+ s; running "
        r"operation 2 of tests\.0002_add_fields again",
        out,
    )
    assert len(stepped_lines(out)) == 1
    assert summary_aside(out)[0] == 1
    assert query("SELECT count(*) FROM tests_beta WHERE name = 'app'") == [(1,)]


def age(line: str) -> str:
    """The transaction age a step-aside line gives (``0:00:00.1``)."""
    match = re.search(r"transaction open (\d+:\d\d:\d\d\.\d)", line)
    assert match, line
    return match.group(1)


@pytest.mark.parametrize("how", ["option", "setting"])
def test_no_action_steps_aside_and_says_for_whom(scenario, sessions, how):
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="idle-worker").hold("tests_beta")
    options = {"blocking_action": "none"} if how == "option" else {}
    setting = {"PGMIGRATE_BLOCKING_ACTION": None} if how == "setting" else {}

    with override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT, **setting):
        line, out = migrate_aside(sessions, blocker, **options)

    assert applied() == BOTH
    # No action prints nothing about the blocker: the step-aside line says whom it waits for.
    assert (
        f"pid {blocker.pid} (application 'idle-worker', idle in transaction, transaction open "
        f"{age(line)}, no blocking action)" in line
    )
    assert "blocks the migration" not in out
    assert len(stepped_lines(out)) == 1


@pytest.mark.parametrize(
    "action",
    ["tests.actions.Paging", pgmigrate.Show(blocking_activity__application_name="report")],
    ids=["custom-action", "show-with-a-filter"],
)
def test_an_action_that_ends_nobody_sees_the_blockers_and_steps_aside(scenario, sessions, action):
    """A custom action that only tells (ends_blockers False), or an action with filters:
    both read ``blocked_locks`` through django-pglock, which shows the blockers only while
    the migration waits for them. They see them, and the migration steps aside."""
    actions.Paging.calls.clear()
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="report").hold("tests_beta")

    with override_settings(
        PGMIGRATE_BLOCKING_ACTION=action, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT
    ):
        line, out = migrate_aside(sessions, blocker)

    assert applied() == BOTH
    assert f"pid {blocker.pid} (application 'report', idle in transaction, " in line
    assert re.search(r", left alone by [\w ]+\)", line)
    assert len(stepped_lines(out)) == 1
    if action == "tests.actions.Paging":
        assert actions.Paging.calls == [[blocker.pid]], out
        assert f"paging on-call about [{blocker.pid}]" in out
    else:
        assert out.count(f"session pid {blocker.pid} blocks the migration") == 1, out


@override_settings(
    PGMIGRATE_BLOCKING_ACTION="tests.actions.ClaimsToEnd",
    PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT,
)
def test_an_action_that_says_it_ends_blockers_is_taken_at_its_word(scenario, sessions):
    """``ends_blockers = True`` and the pid returned: pgmigrate counts on the blocker going
    away and keeps its place in the queue, for ``ENDING_GRACE``; a blocker still there then
    is stepped aside for. The action is not run again for the same blocker."""
    actions.ClaimsToEnd.calls.clear()
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="report").hold("tests_beta")
    app = Session(application_name="app")
    sessions += [blocker, app]

    run = MigrateThread("tests", "0002")
    wait_until(lambda: actions.ClaimsToEnd.calls, what="the action ran")
    stepped_aside(run)
    app_does_not_queue(run, app, blocker)
    blocker.release()
    out = run.finish()

    assert applied() == BOTH
    assert actions.ClaimsToEnd.calls == [[blocker.pid]]
    (line,) = stepped_lines(out)
    assert f"pid {blocker.pid} (application 'report'" in line
    assert "not ended by the blocking action" in line


@pytest.mark.parametrize(
    "action",
    [pgmigrate.Cancel(), pgmigrate.Terminate(blocking_activity__application_name="victim")],
    ids=["cancel", "terminate-with-a-filter"],
)
def test_sessions_an_ending_action_leaves_alone_are_stepped_aside_for(scenario, sessions, action):
    """Of two blockers, the action ends one (Cancel: a running query; Terminate: the one its
    filter picks) and not the other (Cancel: idle in transaction, its locks would stay; the
    filter spares it): the migration steps aside for that one only."""
    migrate("tests", "0001", verbosity=0)
    victim = Session(application_name="victim")
    sessions.append(victim)
    cancel = isinstance(action, pgmigrate.Cancel)
    if cancel:  # a long report: cancelling its query frees its lock
        thread, outcome = run_in_thread(
            lambda: victim.execute("SELECT count(*), pg_sleep(60) FROM tests_beta")
        )
        wait_until(lambda: "tests_beta" in locked_tables(victim.pid), what="the report runs")
    else:
        victim.hold("tests_beta")
    keeper = Session(application_name="keeper").hold("tests_beta")

    with override_settings(
        PGMIGRATE_BLOCKING_ACTION=action, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT
    ):
        line, out = migrate_aside(sessions, keeper)

    assert applied() == BOTH
    assert (
        f"pid {keeper.pid} (application 'keeper', idle in transaction, transaction "
        f"open {age(line)}, not ended by the blocking action)" in line
    )
    assert f"pid {victim.pid} (" not in line
    if cancel:
        thread.join(SAFETY_LOCK_TIMEOUT)
        assert "canceling statement due to user request" in str(outcome.get("error"))
        assert is_alive(victim.pid)
        assert f"cancelled the query of 1 session blocking the migration: pid {victim.pid}" in out
        assert f"cannot cancel pid {keeper.pid} (application 'keeper'" in out
    else:
        assert not is_alive(victim.pid)
        assert f"terminated 1 session blocking the migration: pid {victim.pid}" in out


# Blockers pgmigrate may not end --------------------------------------------------------------


@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_ends_whom_it_may_and_steps_aside_for_the_protected_one(scenario, sessions):
    migrate("tests", "0001", verbosity=0)
    backup = Session(application_name="nightly-backup").hold("tests_beta")
    worker = Session(application_name="worker").hold("tests_beta")
    sessions.append(worker)

    line, out = migrate_aside(sessions, backup)

    assert applied() == BOTH
    assert not is_alive(worker.pid)
    assert (
        f"terminated 1 session blocking the migration: pid {worker.pid} (application "
        "'worker', idle in transaction)" in out
    )
    assert f"pid {backup.pid} (application 'nightly-backup', idle in transaction" in line
    assert (
        "protected: PGMIGRATE_PROTECTED: application_name 'nightly-backup' matches 'nightly-*'"
        in line
    )
    assert f"pid {worker.pid} (" not in line
    assert out.count("is protected") == 1
    assert len(stepped_lines(out)) == 1


@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_steps_aside_for_a_prepared_transaction(migrating, sessions):
    if not roles.prepared_transactions_allowed():
        pytest.skip("the server does not allow prepared transactions")
    apply_0001(migrating)
    gid = f"{GID_PREFIX} 'aside'"
    literal = f"'{GID_PREFIX} ''aside'''"
    prepare(gid, user=APP)
    app = Session(user=APP, application_name="app")
    sessions.append(app)

    run = MigrateThread("tests", "0002", database=migrating)
    try:
        line = stepped_aside(run)
        app_does_not_queue(run, app, None)
        assert query("SELECT 1 FROM pg_prepared_xacts WHERE gid = %s", [gid])
        query(f"ROLLBACK PREPARED {roles.literal(gid)}")
    finally:
        roles.rollback_prepared()
    out = run.finish()

    assert applied() == BOTH
    assert "AccessExclusiveLock on tests_beta" in line
    assert f"prepared transaction {literal} (owner '{APP}', prepared 0:00:" in line
    assert out.count(f"to end it: ROLLBACK PREPARED {literal};") == 1
    assert len(stepped_lines(out)) == 1
    assert "running operation 2 of tests.0002_add_fields again" in out


@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_least_privilege_role_steps_aside_for_a_session_it_cannot_end(app_roles, sessions):
    """The migrating role has pg_signal_backend, which does not reach a superuser's session:
    Terminate fails, the session is not ended, and the migration steps aside for it."""
    assert query("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [(True,)]
    apply_0001("migrator")
    admin = Session(application_name="admin-console").hold("tests_beta")  # a superuser's

    line, out = migrate_aside(sessions, admin, database="migrator", app_user=APP)

    assert applied() == BOTH
    assert f"could not run pg_terminate_backend({admin.pid})" in out
    assert "only a superuser can end a superuser's session" in out
    assert not re.search(r"terminated \d+ session", out)
    # PostgreSQL hides the superuser's state from the role; its application name it shows.
    assert (
        f"pid {admin.pid} (application 'admin-console', state hidden, not ended "
        "by the blocking action)" in line
    )


@override_settings(
    PGMIGRATE_PROTECTED={"query": ["*nightly-export*"]},
    PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT,
)
def test_least_privilege_role_steps_aside_where_protection_is_undecidable(app_roles, sessions):
    """The rule names a column PostgreSQL hides from the migrating role for another role's
    sessions: pgmigrate cannot tell whether they are protected, leaves them, steps aside."""
    apply_0001("migrator")
    web = Session(user=APP, application_name="web").hold("tests_beta")

    line, out = migrate_aside(sessions, web, database="migrator", app_user=APP)

    assert applied() == BOTH
    assert out.count("cannot tell whether it is protected") == 1
    assert (
        f"pid {web.pid} (application 'web', state hidden, protection undecidable: "
        "hidden query)" in line
    )


@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_steps_aside_on_the_database_migrated(scenario, sessions):
    migrate("tests", "0001", database="other", verbosity=0)
    blocker = Session("other", application_name="nightly-export").hold("tests_beta")

    line, out = migrate_aside(sessions, blocker)

    assert "(database 'other')" in out
    assert applied("other") == BOTH
    assert applied("default") == []
    assert f"pid {blocker.pid} (application 'nightly-export', " in line
    assert "protected: PGMIGRATE_PROTECTED" in line


# Retry units -----------------------------------------------------------------------------------


@pytest.mark.scenario("runsql_statements")
@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_statement_of_a_non_atomic_migration_runs_again_alone(scenario, sessions):
    """Outside a transaction, each statement commits with its count: stepping aside from
    the second one runs the second one again, not the committed first one."""
    migrate("tests", "0001", verbosity=0)
    query("INSERT INTO tests_alpha (name) VALUES ('first')")
    blocker = Session(application_name="nightly-export").hold("tests_alpha")

    def committed(run: MigrateThread) -> None:
        assert first_row() == [("first+",)]  # statement 1 committed

    _, out = migrate_aside(
        sessions, blocker, table="tests_alpha", held="tests_alpha", meanwhile=committed
    )

    assert applied() == ["0001_initial", "0002_double"]
    assert first_row() == [("first+",)]
    assert query("SELECT name FROM tests_gamma") == [("inserted once",)]
    assert "running statement 2 of operation 2 of tests.0002_double again" in out
    assert len(stepped_lines(out)) == 1


def first_row() -> list[tuple]:
    return query("SELECT name FROM tests_alpha WHERE name LIKE 'first%%'")


@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_steps_aside_when_migrating_backwards(scenario, sessions):
    migrate("tests", "0002", verbosity=0)
    blocker = Session(application_name="nightly-export").hold("tests_beta")

    line, out = migrate_aside(sessions, blocker, "0001")

    assert applied() == ["0001_initial"]
    assert "flag" not in columns("tests_beta")
    assert f"pid {blocker.pid} (application 'nightly-export'" in line
    assert re.search(r"running operation \d of tests\.0002_add_fields again", out)


# Blockers that change while the migration is out of the queue --------------------------------


@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_new_blocker_while_out_of_the_queue_is_stepped_aside_for_in_turn(scenario, sessions):
    migrate("tests", "0001", verbosity=0)
    first = Session(application_name="nightly-a").hold("tests_beta")
    second = Session(application_name="nightly-b")
    app = Session(application_name="app")
    sessions += [first, second, app]

    run = MigrateThread("tests", "0002")
    line = stepped_aside(run)
    assert f"pid {first.pid} (application 'nightly-a'" in line
    # Out of the queue, the migration does not stop a new session from taking a lock.
    second.hold("tests_beta")
    first.release()
    line = stepped_aside(run, lines=2)
    app_does_not_queue(run, app, second)
    second.release()
    out = run.finish()

    assert applied() == BOTH
    assert f"pid {second.pid} (application 'nightly-b'" in line
    assert f"pid {first.pid} (" not in line
    assert len(stepped_lines(out)) == 2
    assert out.count("running operation 2 of tests.0002_add_fields again") == 2
    assert summary_aside(out)[0] == 2
    assert out.count("is protected") == 2  # once for each


@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_only_the_blockers_stepped_aside_for_are_waited_for(scenario, sessions):
    """While out of the queue, an app session that takes and keeps a lock on the table does
    not delay the re-run: it is ended then, like any blocker that may be."""
    migrate("tests", "0001", verbosity=0)
    backup = Session(application_name="nightly-backup").hold("tests_beta")
    late = Session(application_name="late-worker")
    sessions += [backup, late]

    run = MigrateThread("tests", "0002")
    stepped_aside(run)
    late.hold("tests_beta")
    backup.release()
    out = run.finish()

    assert applied() == BOTH
    assert not is_alive(late.pid)
    assert f"terminated 1 session blocking the migration: pid {late.pid}" in out
    assert len(stepped_lines(out)) == 1


# Waits it does not step aside from -----------------------------------------------------------


@pytest.mark.scenario("aside_holds")
@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_steps_aside_when_a_lock_it_holds_holds_the_app_back(scenario, sessions):
    """The awaited lock (SHARE UPDATE EXCLUSIVE on tests_beta) does not make the app queue,
    but the ACCESS EXCLUSIVE lock the operation took on tests_alpha before does."""
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="nightly-vacuum").hold("tests_beta", SUE)

    def rolled_back(run: MigrateThread) -> None:
        assert "tests_alpha" not in locked_tables(run.backend_pid)

    line, out = migrate_aside(sessions, blocker, table="tests_alpha", meanwhile=rolled_back)

    assert "aside" in columns("tests_alpha")
    assert applied() == ["0001_initial", "0002_alter_then_wait"]
    assert "ShareUpdateExclusiveLock on tests_beta" in line
    assert f"pid {blocker.pid} (application 'nightly-vacuum'" in line
    assert "running operation 1 of tests.0002_alter_then_wait again" in out


@pytest.mark.scenario("share_update_lock")
@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_no_step_aside_when_the_wait_does_not_hold_the_app_back(scenario, sessions):
    """SHARE UPDATE EXCLUSIVE (as CREATE INDEX CONCURRENTLY and VACUUM take) does not conflict
    with the app's reads and writes: the migration stays in the queue, the app goes on."""
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="nightly-vacuum").hold("tests_beta", SUE)
    app = Session(application_name="app")
    sessions += [blocker, app]

    run = MigrateThread("tests", "0002")
    wait_until(lambda: "is protected" in run.output.getvalue(), what="the blocker was shown")
    wait_until(lambda: waited_at_least(run.backend_pid, 0.3), what="migrate waited 0.3 s")
    app.execute("SET lock_timeout = '10s'")
    app.execute("INSERT INTO tests_beta (name) VALUES ('app')")
    assert is_waiting_on_lock(run.backend_pid)
    blocker.release()
    out = run.finish()

    assert applied() == ["0001_initial", "0002_lock"]
    assert not stepped_lines(out)
    assert "steps out of the lock queue" not in out  # the protected blocker's message


@pytest.mark.scenario("waits")
@pytest.mark.parametrize("blocker_kind", ["show-snapshot", "protected-lock"])
@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_create_index_concurrently_is_never_cancelled(scenario, sessions, blocker_kind):
    migrate("tests", "0002", verbosity=0)
    if blocker_kind == "show-snapshot":  # CREATE INDEX CONCURRENTLY waits for its snapshot
        blocker = Session(application_name="old-snapshot")
        blocker.connection.set_autocommit(False)
        blocker.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        blocker.execute("SELECT count(*) FROM tests_gamma")
        options = {"blocking_action": "show"}
        shown = "blocks the migration"
    else:  # ... or for its SHARE UPDATE EXCLUSIVE lock on the table
        blocker = Session(application_name="nightly-index").hold("tests_alpha", "SHARE")
        options = {}
        shown = "is protected"
    sessions.append(blocker)

    run = MigrateThread("tests", "0003", **options)
    wait_until(lambda: shown in run.output.getvalue(), what="the blocker was shown")
    wait_until(lambda: waited_at_least(run.backend_pid, 0.3), what="migrate waited 0.3 s")
    assert is_waiting_on_lock(run.backend_pid)
    assert is_alive(blocker.pid)
    blocker.release()
    out = run.finish()

    assert not stepped_lines(out)
    assert "steps out of the lock queue" not in out  # the protected blocker's message
    assert "again" not in out
    assert applied()[-1] == "0003_index_concurrently"
    assert query(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'tests_alpha_name_idx'::regclass"
    ) == [(True,)]


def vacuum_full_behind_a_protected_blocker(sessions: list) -> str:
    """Run the aside_vacuum scenario's VACUUM FULL behind a protected session; what migrate
    printed. Checks that it stays in the queue (the app queues behind it) until the blocker
    goes."""
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="nightly-report").hold("tests_beta")
    app = Session(application_name="app")
    sessions += [blocker, app]

    run = MigrateThread("tests", "0002")
    wait_until(lambda: "is protected" in run.output.getvalue(), what="the blocker was shown")
    app_queues(run, app, blocker)  # behind the VACUUM FULL
    blocker.release()
    out = run.finish()

    assert applied() == ["0001_initial", "0002_vacuum_full"]
    return out


@pytest.mark.scenario("aside_vacuum")
@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_statement_that_cannot_run_in_a_transaction_is_never_cancelled(scenario, sessions):
    """VACUUM FULL waits for ACCESS EXCLUSIVE (the app queues behind it), but it runs outside
    a transaction: pgmigrate does not cancel it to step aside."""
    out = vacuum_full_behind_a_protected_blocker(sessions)

    assert not stepped_lines(out)
    assert "again" not in out


@pytest.mark.scenario("aside_vacuum")
@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_no_step_aside_is_promised_where_none_is_made(scenario, sessions):
    """The message about the protected blocker says what happens: the lock timeout decides
    (the app does queue behind VACUUM FULL)."""
    out = vacuum_full_behind_a_protected_blocker(sessions)

    assert "the app does not queue behind it" not in out
    assert "steps out of the lock queue" not in out
    assert f"it is left alone and the lock timeout ({SAFETY_LOCK_TIMEOUT} s) decides" in out


# Turned off ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "option", "steps_aside"),
    [(False, None, False), (True, False, False), (False, True, True)],
    ids=["setting-off", "option-off", "option-on-over-setting-off"],
)
@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_turned_off_it_queues_as_before(scenario, sessions, setting, option, steps_aside):
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="nightly-export").hold("tests_beta")
    app = Session(application_name="app")
    sessions += [blocker, app]
    options = {} if option is None else {"step_aside": option}

    with override_settings(PGMIGRATE_STEP_ASIDE=setting):
        run = MigrateThread("tests", "0002", **options)
        wait_until(lambda: "is protected" in run.output.getvalue(), what="the blocker was shown")
        if steps_aside:
            stepped_aside(run)
            app_does_not_queue(run, app, blocker)
        else:
            app_queues(run, app, blocker)
        blocker.release()
        out = run.finish()

    assert applied() == BOTH
    assert bool(stepped_lines(out)) is steps_aside
    if not steps_aside:
        assert f"the lock timeout ({SAFETY_LOCK_TIMEOUT} s) decides" in out
        assert "steps out of the lock queue" not in out
        assert "stepped out" not in out


def test_the_option_is_on_the_command_line():
    result = manage("migrate", "--help")
    assert "--step-aside, --no-step-aside" in result.stdout, result.stderr


# Events, signals, the report, the lock timeout -----------------------------------------------


@contextlib.contextmanager
def receiving(*names: str) -> Iterator[dict[str, list[dict]]]:
    """What the named pgmigrate signals send, by signal, while the block runs."""
    received: dict[str, list[dict]] = {name: [] for name in names}
    lock = threading.Lock()
    receivers = {}
    for name in names:

        def receiver(sender, _name=name, **fields):
            with lock:
                received[_name].append(fields)

        receivers[name] = receiver
        getattr(signals, name).connect(receiver)
    try:
        yield received
    finally:
        for name, receiver in receivers.items():
            getattr(signals, name).disconnect(receiver)


@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_events_signals_and_report(scenario, sessions, tmp_path):
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="nightly-export").hold("tests_beta")
    sessions.append(blocker)
    (user,) = query("SELECT current_user")[0]
    report = tmp_path / "report.json"

    with receiving("stepped_aside", "waiting_aside", "stepped_back") as received:
        run = MigrateThread("tests", "0002", pgmigrate_report=str(report))
        stepped_aside(run)
        wait_until(
            lambda: len(received["waiting_aside"]) >= 2,
            what="two reminders",
            timeout=10,
        )
        assert not received["stepped_back"]
        blocker.release()
        out = run.finish()

    (aside,) = received["stepped_aside"]
    assert aside["lock"] == "AccessExclusiveLock on tests_beta"
    assert aside["migration"] == "tests.0002_add_fields"
    assert aside["database"] == "default"
    assert aside["backend_pid"] == run.backend_pid
    assert aside["prepared"] == []
    (who,) = aside["blockers"]
    assert who["pid"] == blocker.pid
    assert who["application_name"] == "nightly-export"
    assert who["state"] == "idle in transaction"
    assert who["usename"] == user
    assert 0 <= who["transaction_age"] < 5
    assert who["reason"] == (
        "protected: PGMIGRATE_PROTECTED: application_name 'nightly-export' matches 'nightly-*'"
    )

    first, second = received["waiting_aside"][:2]
    # At 1 s, then 2 s later.
    assert 0.9 <= first["waited"] < 2.0, first
    assert 2.8 <= second["waited"] < 4.5, second
    assert second["waited"] - first["waited"] >= 1.9
    for reminder in (first, second):
        assert reminder["lock"] == "AccessExclusiveLock on tests_beta"
        assert [b["pid"] for b in reminder["blockers"]] == [blocker.pid]
        assert reminder["migration"] == "tests.0002_add_fields"
    reminders = [line for line in out.splitlines() if line.startswith(REMINDER)]
    assert len(reminders) == len(received["waiting_aside"])
    assert reminders[0].startswith(
        f"{REMINDER}1.0 s (AccessExclusiveLock on "
        f"tests_beta), waiting for pid {blocker.pid} (application 'nightly-export'"
    )

    (back,) = received["stepped_back"]
    assert back["outcome"] == "gone"
    assert back["waited"] >= second["waited"]
    assert back["migration"] == "tests.0002_add_fields"

    times, seconds = summary_aside(out)
    assert times == 1
    assert seconds == pytest.approx(back["waited"], abs=0.001)
    data = json.loads(report.read_text())
    (figures,) = [m for m in data["migrations"] if m["migration"] == "tests.0002_add_fields"]
    assert figures["steps_aside"] == 1
    assert figures["aside_wait"] == pytest.approx(back["waited"], abs=1e-6)
    assert figures["status"] == "applied"
    assert figures["blockers_shown"] == [blocker.pid]
    assert figures["blockers_ended"] == []


@override_settings(
    PGMIGRATE_PROTECTED=PROTECTED,
    PGMIGRATE_LOCK_TIMEOUT=0.5,
    PGMIGRATE_LOCK_RETRIES=1,
    PGMIGRATE_LOCK_RETRY_DELAY=0.05,
)
def test_the_lock_timeout_bounds_the_wait_out_of_the_queue(scenario, sessions, tmp_path, caplog):
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="nightly-export").hold("tests_beta")
    sessions.append(blocker)
    report = tmp_path / "report.json"

    caplog.set_level(logging.INFO, logger="pgmigrate")

    with receiving("stepped_aside", "stepped_back", "lock_timeout") as received:
        run = MigrateThread("tests", "0002", pgmigrate_report=str(report))
        with pytest.raises(CommandError, match="lock timeout"):
            run.finish()
    out = run.output.getvalue()

    assert is_alive(blocker.pid)
    assert applied() == ["0001_initial"]
    # Each attempt stepped aside, and waited out of the queue until the lock timeout.
    assert len(received["stepped_aside"]) == 2
    assert [back["outcome"] for back in received["stepped_back"]] == ["lock_timeout"] * 2
    for back in received["stepped_back"]:
        assert 0.3 <= back["waited"] < 1.5, back
    assert [t["gave_up"] for t in received["lock_timeout"]] == [False, True]
    assert "(or gives up at the lock timeout, 0.5 s)" in out
    backs = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "stepped_back"]
    assert len(backs) == 2
    assert all(
        message.startswith(
            "pgmigrate: operation 2 of tests.0002_add_fields waited out of the lock queue until "
            f"the lock timeout (0.5 s) for pid {blocker.pid} (application 'nightly-export'"
        )
        for message in backs
    ), backs
    figures = json.loads(report.read_text())["migrations"][-1]
    assert figures["migration"] == "tests.0002_add_fields"
    assert figures["steps_aside"] == 2
    assert figures["lock_timeouts"] == 2 and figures["retries"] == 1


@override_settings(
    PGMIGRATE_PROTECTED=PROTECTED,
    PGMIGRATE_ATOMIC=True,
    PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT,
)
def test_an_atomic_migration_steps_aside_whole(scenario, sessions):
    """With PGMIGRATE_ATOMIC the migration is the unit: stepping aside rolls back its first
    operation too (and frees tests_alpha), then runs it all again."""
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="nightly-export").hold("tests_beta")

    def alpha_too(run: MigrateThread) -> None:
        app = Session(application_name="app-alpha")
        sessions.append(app)
        app_does_not_queue(run, app, blocker, table="tests_alpha")

    _, out = migrate_aside(sessions, blocker, meanwhile=alpha_too)

    assert applied() == BOTH
    assert "flag" in columns("tests_alpha") and "flag" in columns("tests_beta")
    assert "running migration tests.0002_add_fields again" in out


# What leaving the lock queue costs ------------------------------------------------------------


#: Both ways: out of the lock queue, and in it.
STEP_ASIDE_OR_NOT = pytest.mark.parametrize(
    "step_aside", [True, False], ids=["step-aside", "no-step-aside"]
)


@pytest.fixture
def slow_autovacuum(scenario) -> Iterator[int]:
    """An autovacuum worker that keeps its SHARE UPDATE EXCLUSIVE lock on tests_beta for long
    (about a page every 100 ms, hundreds of pages); its pid."""
    migrate("tests", "0001", verbosity=0)
    with slow_autovacuum_on_beta() as worker:
        yield worker


@STEP_ASIDE_OR_NOT
@override_settings(PGMIGRATE_LOCK_TIMEOUT=4)
def test_postgresql_still_cancels_a_blocking_autovacuum(slow_autovacuum, step_aside):
    """The migration keeps its place in the queue behind an autovacuum worker, which
    PostgreSQL cancels after deadlock_timeout."""
    assert query("SHOW deadlock_timeout") == [("1s",)]
    out = migrate("tests", "0002", step_aside=step_aside)

    assert applied() == BOTH
    assert f"session pid {slow_autovacuum} " in out and "always protected" in out


@STEP_ASIDE_OR_NOT
@override_settings(PGMIGRATE_PROTECTED=PROTECTED, PGMIGRATE_LOCK_TIMEOUT=3)
def test_a_busy_protected_session_does_not_starve_the_migration(scenario, sessions, step_aside):
    """A protected worker runs one short transaction on the table after another (each
    begins in the same round trip as the previous one ends). The migration starts as one
    begins: it waits for most of its 0.4 s (a start in the last milliseconds of one, on a
    loaded machine, would find the lock granted before a look saw it wait)."""
    migrate("tests", "0001", verbosity=0)
    worker = Session(application_name="nightly-sync")
    sessions.append(worker)
    worker.connection.set_autocommit(False)
    worker.execute("LOCK TABLE tests_beta IN ACCESS SHARE MODE")
    stop = threading.Event()
    began = threading.Event()
    transactions = []

    def work() -> None:
        while not stop.is_set():
            worker.execute("SELECT pg_sleep(0.4)")
            worker.execute("COMMIT; BEGIN; LOCK TABLE tests_beta IN ACCESS SHARE MODE")
            transactions.append(1)
            began.set()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        assert began.wait(SAFETY_LOCK_TIMEOUT)
        out = migrate("tests", "0002", step_aside=step_aside)
    finally:
        stop.set()
        thread.join(SAFETY_LOCK_TIMEOUT)
    worker.release()

    assert transactions
    assert applied() == BOTH
    assert "is protected" in out


def test_ctrl_c_while_out_of_the_queue(scenario, sessions):
    """SIGINT while migrate waits out of the lock queue: it stops at once, cleanly."""
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="report").hold("tests_beta")
    sessions.append(blocker)
    command = ["migrate", "tests", "--blocking-action", "show", "--lock-timeout", "30"]
    process = subprocess.Popen(
        [sys.executable, "manage.py", *command],
        cwd=ROOT,
        env=manage_env(PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith(STEPPED):
                break
        backend_pid = int(re.search(r"backend pid (\d+)", "".join(lines)).group(1))
        wait_until(lambda: not is_waiting_on_lock(backend_pid), what="out of the queue")
        for line in process.stdout:  # the migration waits out of the queue (a second)
            lines.append(line)
            if "still out of the lock queue after" in line:
                break
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=SAFETY_LOCK_TIMEOUT)
        out = "".join(lines) + rest
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 130, out
    assert "Traceback" not in out
    assert "migration tests.0002_add_fields interrupted by SIGINT (Ctrl-C)" in out
    # The time out of the queue is in the summary, though the wait never ended on its own.
    aside = re.search(r"stepped out of the lock queue 1 time\(s\) for ([\d.]+) s", out)
    assert aside is not None and float(aside.group(1)) >= 1.0, out
    wait_until(lambda: not is_alive(backend_pid), what="the migrating backend ended")
    assert applied() == ["0001_initial"]
    assert "flag" not in columns("tests_beta")
    assert is_alive(blocker.pid)
