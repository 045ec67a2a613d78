"""Ending the blockers in the statement of the first look (``watcher.FIRST_END``): where
``Terminate`` would end each of them for sure, the look that sees the wait ends them and the
watcher reports them as read; where anything is in doubt, it ends none and decides in
Python, as for the later looks (its signal statement then runs)."""

import logging
from collections.abc import Iterator

import pytest
from django.test import override_settings

from pgmigrate import Terminate, watcher
from tests.helpers import (
    Session,
    WatcherStatements,
    applied,
    is_alive,
    migrate,
)
from tests.test_observability import events_of

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


@pytest.fixture
def recorder() -> Iterator[WatcherStatements]:
    with WatcherStatements().recording() as statements:
        yield statements


#: ``Terminate``'s signal statement, prepared in the watcher's session (one blocker out of
#: reach: tests/test_privileges.py, ``test_other_blockers_are_still_ended``).
SIGNAL = "pgmigrate_pg_terminate_backend_checked"


def holding(sessions: list, *names: str, table: str = "tests_beta") -> list[Session]:
    held = [Session(application_name=name).hold(table) for name in names]
    sessions += held
    return held


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_LOCK_TIMEOUT=30)
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
@override_settings(PGMIGRATE_LOCK_TIMEOUT=30)
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
@override_settings(PGMIGRATE_LOCK_TIMEOUT=30)
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
