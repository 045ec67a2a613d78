"""Ending a crowd of blockers (``watcher.CROWD``): the statement that terminates them first
cancels the migration's waiting statement, which leaves the lock queue while they exit and
runs again once they are gone (``actions.SIGNAL_CANCELLING_FIRST``)."""

import datetime as dt
import importlib
import logging
import threading

import pytest
from django.db import DatabaseError
from django.test import override_settings

import pgmigrate
from pgmigrate import actions, signals, watcher
from pgmigrate.errors import QUERY_CANCELED, sqlstate
from tests.helpers import (
    MigrateThread,
    Session,
    applied,
    columns,
    is_alive,
    is_waiting_on_lock,
    migrate,
    query,
    wait_until,
)
from tests.test_observability import events_of
from tests.test_privileges import APP, MIGRATOR
from tests.test_privileges import roles as roles  # a fixture

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other", "migrator"])

#: A safety net so that a broken watcher fails a test instead of hanging it.
SAFETY_LOCK_TIMEOUT = 30
STEPPED = "stepped out of the lock queue"


@pytest.fixture(autouse=True)
def _limits(request, monkeypatch):
    """A loaded machine may take longer than ``CROWD_REDO_AT_MOST`` from a unit's start to
    its ALTER: only the test of that limit keeps it. Only the tests of stale crowds wait for
    their sessions to get stale (``CROWD_STALE_AFTER``)."""
    if "redo" not in request.node.name:
        monkeypatch.setattr(watcher, "CROWD_REDO_AT_MOST", 60.0)
    if "stale" not in request.node.name:
        monkeypatch.setattr(watcher, "CROWD_STALE_AFTER", 0.0)


def past_a_crowd(
    sessions: list,
    applied_first: str,
    target: str,
    *,
    count: int = watcher.CROWD,
    table: str = "tests_beta",
) -> str:
    """Migrate to ``applied_first``, have a crowd of ``count`` sessions hold ``table``,
    migrate to ``target``, wait until the crowd is gone, and return migrate's output."""
    migrate("tests", applied_first, verbosity=0)
    held = crowd(sessions, count, table)
    out = migrate("tests", target)
    gone(held)
    return out


def gone(ended: list) -> None:
    """Wait until the sessions ``ended`` are gone: a backend lets go of its locks (and so of
    the migration) before it leaves ``pg_stat_activity``."""
    wait_until(
        lambda: not any(is_alive(session.pid) for session in ended),
        what="the ended sessions are gone",
    )


def stale(held: list) -> None:
    """Wait until each session of ``held`` has been in its transaction ``CROWD_STALE_AFTER``."""
    wait_until(
        lambda: query(
            "SELECT bool_and(now() - xact_start > %s * interval '1 s') FROM pg_stat_activity"
            " WHERE pid = ANY(%s)",
            [watcher.CROWD_STALE_AFTER, [session.pid for session in held]],
        )[0][0],
        what="the crowd's transactions are stale",
    )


def crowd(sessions: list, count: int = watcher.CROWD, table: str = "tests_beta") -> list:
    """``count`` sessions idle in a transaction that read ``table``."""
    held = [Session(application_name=f"worker-{n}").hold(table) for n in range(count)]
    sessions += held
    return held


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_stale_crowd_is_ended_out_of_the_lock_queue(scenario, sessions, caplog):
    caplog.set_level(logging.INFO, logger="pgmigrate")
    migrate("tests", "0001", verbosity=0)
    held = crowd(sessions)
    stale(held)

    out = migrate("tests", "0002")

    gone(held)

    assert out.count(f"terminated {watcher.CROWD} sessions blocking the migration") == 1
    assert (
        f"pgmigrate: {STEPPED} for AccessExclusiveLock on tests_beta while the "
        f"{watcher.CROWD} sessions ended exit. The app's queries no longer queue behind the "
        "migration, which runs the statement again once they are gone (or gives up at the "
        f"lock timeout, {SAFETY_LOCK_TIMEOUT} s)." in out
    )
    assert "will not be ended" not in out
    assert "the sessions the migration stepped aside for are gone after" in out
    assert "running operation 2 of tests.0002_add_fields again" in out
    assert "flag" in columns("tests_beta")
    assert applied() == ["0001_initial", "0002_add_fields"]
    aside = [r for r in events_of(caplog) if r.event == "stepped_aside"]
    assert len(aside) == 1
    assert {b["pid"]: b["reason"] for b in aside[0].blockers} == {
        session.pid: watcher.ENDING for session in held
    }
    assert "stepped out of the lock queue 1 time(s)" in out


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_crowd_of_young_transactions_is_ended_in_the_queue_not_stale(scenario, sessions):
    """Transactions open for less than ``CROWD_STALE_AFTER``: a busy app's, more of which
    would begin while the migration is out of the queue."""
    out = past_a_crowd(sessions, "0001", "0002")

    assert STEPPED not in out and "again" not in out
    assert applied() == ["0001_initial", "0002_add_fields"]


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_fewer_blockers_than_a_crowd_keep_the_migrations_place(scenario, sessions):
    out = past_a_crowd(sessions, "0001", "0002", count=watcher.CROWD - 1)

    assert STEPPED not in out and "again" not in out
    assert applied() == ["0001_initial", "0002_add_fields"]


@pytest.mark.scenario("basic")
@override_settings(
    PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT,
    PGMIGRATE_BLOCKING_ACTION=pgmigrate.Terminate(
        blocking_activity__application_name__startswith="worker-"
    ),
)
def test_an_action_with_filters_keeps_the_migrations_place(scenario, sessions):
    """The filters are read through django-pglock when the action runs: the watcher does not
    know beforehand whom it ends."""
    out = past_a_crowd(sessions, "0001", "0002")

    assert STEPPED not in out
    assert applied() == ["0001_initial", "0002_add_fields"]


@pytest.mark.scenario("crowd")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_unit_with_work_to_redo_keeps_its_place(scenario, sessions):
    """The operation's ALTER waits after its first statement ran 0.3 s
    (``CROWD_REDO_AT_MOST``): stepping aside would run that again."""
    out = past_a_crowd(sessions, "0001", "0002")

    assert f"terminated {watcher.CROWD} sessions" in out
    assert STEPPED not in out and "again" not in out
    assert "late" in columns("tests_beta")


@pytest.mark.scenario("basic")
@override_settings(
    PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT,
    PGMIGRATE_PROTECTED={"application_name": ["nightly-*"]},
)
def test_a_crowd_with_a_protected_session_keeps_its_place_until_the_others_are_gone(
    scenario, sessions
):
    """Something stays in the way: the crowd is ended as before (no cancel in the signal
    statement), and the migration then steps aside for the protected session, named."""
    migrate("tests", "0001", verbosity=0)
    held = crowd(sessions)
    protected = Session(application_name="nightly-export").hold("tests_beta")
    sessions.append(protected)
    run = MigrateThread("tests", "0002")
    wait_until(lambda: STEPPED in run.output.getvalue(), what="migrate stepped aside")
    protected.release()
    out = run.finish()

    gone(held)
    assert "while the" not in out
    line = next(line for line in out.splitlines() if STEPPED in line)
    assert f"pid {protected.pid} (application 'nightly-export'" in line
    assert applied() == ["0001_initial", "0002_add_fields"]


@pytest.mark.scenario("crowd")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_statement_that_waits_after_long_work_keeps_its_place_redo(scenario, sessions):
    """One statement (a multi-statement string) works 0.3 s, then its ALTER waits: what
    counts is the unit's time until the wait began, not until the statement began."""
    out = past_a_crowd(sessions, "0002", "0003")

    assert STEPPED not in out and "again" not in out
    assert "later" in columns("tests_beta")


@pytest.mark.scenario("crowd")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_unit_that_ran_the_migrations_code_keeps_its_place(scenario, sessions):
    """Running it again would repeat what the code did outside the database."""
    python_then_alter = importlib.import_module("tests.scenarios.crowd.0004_python_then_alter")
    python_then_alter.CALLS.clear()
    out = past_a_crowd(sessions, "0003", "0004")

    assert STEPPED not in out
    assert python_then_alter.CALLS == ["called"]
    assert "noted" in columns("tests_beta")


@pytest.mark.scenario("crowd")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_statement_outside_a_transaction_steps_aside_alone(scenario, sessions):
    """An ``atomic = False`` migration's ``RunSQL`` statement is a retry unit of its own,
    which begins within the step."""
    out = past_a_crowd(sessions, "0005", "0006")

    assert f"{STEPPED} for AccessExclusiveLock on tests_beta while the" in out
    assert "running statement 1 of operation 1 of tests.0006_outside again" in out
    assert "outside" in columns("tests_beta")


@pytest.mark.scenario("crowd")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT, PGMIGRATE_ATOMIC=True)
def test_in_one_transaction_per_migration_earlier_code_does_not_count(scenario, sessions):
    """With ``PGMIGRATE_ATOMIC``, a migration is the unit: a ``RunPython`` of an earlier
    migration of the same run is not run again."""
    python_then_alter = importlib.import_module("tests.scenarios.crowd.0004_python_then_alter")
    python_then_alter.CALLS.clear()
    out = past_a_crowd(sessions, "0003", "0005", table="tests_alpha")

    assert f"{STEPPED} for AccessExclusiveLock on tests_alpha while the" in out
    assert "running migration tests.0005_alpha again" in out
    assert python_then_alter.CALLS == ["called"]
    assert "crowded" in columns("tests_alpha")


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_new_crowd_after_stepping_aside_is_ended_in_the_queue(scenario, sessions):
    """A busy app: while the migration is out of the queue, new sessions read the table.
    They are ended in the queue when it comes back, not stepped aside for again (and so
    on, ending ever more of the app's sessions)."""
    migrate("tests", "0001", verbosity=0)
    first = crowd(sessions)
    second: list[Session] = []

    def while_out_of_the_queue(sender, **fields):
        if not second:
            second.extend(crowd(sessions))

    signals.stepped_aside.connect(while_out_of_the_queue)
    try:
        out = migrate("tests", "0002")
    finally:
        signals.stepped_aside.disconnect(while_out_of_the_queue)

    assert len(second) == watcher.CROWD
    gone(first + second)
    assert out.count(f"pgmigrate: {STEPPED}") == 1
    assert out.count(f"terminated {watcher.CROWD} sessions blocking the migration") == 2
    assert applied() == ["0001_initial", "0002_add_fields"]


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=SAFETY_LOCK_TIMEOUT)
def test_a_crowd_with_a_session_the_role_may_not_end_is_named(roles, sessions):
    """The migrating role may not end a superuser's session: the signal statement does not
    cancel first; the others are ended and the migration steps aside for that one, named
    with why, after the refusal is reported."""
    query(f"GRANT pg_signal_backend TO {MIGRATOR}")
    MigrateThread("tests", "0001", database="migrator").finish()
    held = [
        Session(user=APP, application_name=f"app-{n}").hold("tests_beta")
        for n in range(watcher.CROWD - 1)
    ]
    admin = Session(application_name="admin").hold("tests_beta")
    sessions += [*held, admin]

    run = MigrateThread("tests", "0002", database="migrator")
    wait_until(lambda: STEPPED in run.output.getvalue(), what="migrate stepped aside")
    gone(held)
    admin.release()
    out = run.finish()

    assert "while the" not in out
    assert "could not run pg_terminate_backend" in out
    line = next(line for line in out.splitlines() if STEPPED in line)
    assert f"pid {admin.pid} (application 'admin'" in line
    assert "not ended by the blocking action) will not be ended" in line
    assert applied("migrator") == ["0001_initial", "0002_add_fields"]


# The signal statement itself ------------------------------------------------------------


class _Waiting(threading.Thread):
    """A session whose ALTER waits behind ``tests_beta``'s readers."""

    def __init__(self, sessions: list) -> None:
        super().__init__(name="test-waiting-alter")
        self.session = Session(application_name="waiting-alter")
        sessions.append(self.session)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.session.execute("ALTER TABLE tests_beta ADD COLUMN waited boolean")
        except DatabaseError as exc:
            self.error = exc

    def query_start(self) -> dt.datetime:
        return query("SELECT query_start FROM pg_stat_activity WHERE pid = %s", [self.pid])[0][0]

    @property
    def pid(self) -> int:
        return self.session.pid


def _blockers(held: list[Session]) -> list[actions.Blocker]:
    return [
        actions.Blocker(
            pid=s.pid, backend_start=None, application_name=None, state=None, query=None
        )
        for s in held
    ]


def _terminate(sessions: list, cancel_first: dt.timedelta) -> tuple:
    """Two sessions hold ``tests_beta`` while a third's ALTER waits; ``Terminate`` signals
    them with ``cancel_first`` the ALTER's ``query_start`` plus the given offset. Returns
    the action, what it reached, the blockers and the ALTER's thread (finished)."""
    migrate("tests", "0001", verbosity=0)
    held = crowd(sessions, 2)
    alter = _Waiting(sessions)
    alter.start()
    wait_until(lambda: is_waiting_on_lock(alter.pid), what="the ALTER waits")
    terminate = pgmigrate.Terminate()
    reached = terminate.signal(
        *_blockers(held),
        using="default",
        blocked_pid=alter.pid,
        cancel_first=alter.query_start() + cancel_first,
    )
    alter.join(10)
    return terminate, reached, held, alter


@pytest.mark.scenario("basic")
def test_the_signal_statement_cancels_the_waiting_statement_first(scenario, sessions):
    terminate, reached, held, alter = _terminate(sessions, dt.timedelta(0))

    assert terminate.cancelled_first is True
    assert reached == {session.pid: True for session in held}
    assert alter.error is not None and sqlstate(alter.error) == QUERY_CANCELED
    wait_until(lambda: not any(is_alive(s.pid) for s in held), what="the blockers exit")
    assert "waited" not in columns("tests_beta")


@pytest.mark.scenario("basic")
def test_a_statement_no_longer_the_one_seen_is_not_cancelled(scenario, sessions):
    """Another ``query_start`` (the statement seen ended, the backend runs another): the
    blockers are ended, the statement is not cancelled and gets its lock."""
    terminate, reached, held, alter = _terminate(sessions, dt.timedelta(seconds=-1))

    assert terminate.cancelled_first is False
    assert reached == {session.pid: True for session in held}
    assert alter.error is None
    assert "waited" in columns("tests_beta")
