"""Live progress beyond ``tests/test_live_progress.py``: what ``pgmigrate.live`` reads of
backends that run, wait or do nothing, index builds on partitioned tables, and the live
line's plumbing on a terminal that does not tell its width (a stream whose ``isatty()`` is
True)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management.base import OutputWrapper
from django.db import connections

from pgmigrate import live
from pgmigrate.liveline import DEFAULT_WIDTH, ERASE, LiveLine
from tests import roles
from tests.helpers import Session, is_alive, query, wait_until
from tests.scenarios import SLOW_FUNCTION

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "other"]),
    pytest.mark.scenario("basic"),
]


class Terminal(io.StringIO):
    """A terminal as the command sees it (``isatty()``) that does not tell its size (no
    file descriptor), as some CI runners' pseudo-terminals."""

    def isatty(self) -> bool:
        return True


def line(*, terminal: bool = True, verbosity: int = 1) -> tuple[LiveLine, io.StringIO, list[str]]:
    """A ``LiveLine`` on a fresh stream; the stream and the notices it printed."""
    stream: io.StringIO = Terminal() if terminal else io.StringIO()
    notices: list[str] = []
    live_line = LiveLine(
        OutputWrapper(stream), lock=threading.Lock(), verbosity=verbosity, notice=notices.append
    )
    return live_line, stream, notices


def never_ended(session: live.InTheWay) -> str:
    return live.fate(session, {}, None)


def read(pid: int) -> live.Snapshot:
    with connections["default"].cursor() as cursor:
        return live.read(cursor, pid)


class Running:
    """A statement ``sql`` running in a session of its own (in a thread) until the test
    cancels it."""

    def __init__(self, sql: str, application_name: str) -> None:
        self.session = Session(application_name=application_name)
        self.thread, self.outcome = roles.run_in_thread(lambda: self.session.execute(sql))

    def cancel(self) -> None:
        query("SELECT pg_cancel_backend(%s)", [self.session.pid])
        self.thread.join(10)
        assert not self.thread.is_alive()

    def close(self) -> None:
        if self.thread.is_alive():
            self.cancel()
        self.session.close()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for statement in started:
        statement.close()


# What it reads ----------------------------------------------------------------------------


def test_idle_and_gone_backends_run_nothing(scenario: str) -> None:
    idle = Session(application_name="live-idle")
    pid = idle.pid
    try:
        assert read(pid) == live.Snapshot(running=False)
    finally:
        idle.close()
    wait_until(lambda: not is_alive(pid), what="the session is gone")
    assert read(pid) == live.Snapshot(running=False)  # no row at all


def test_statement_on_the_cpu_is_running(scenario: str, running: list[Running]) -> None:
    """A statement that waits on nothing: ``running``; an event with its fields; a backend
    that runs nothing any more shows nothing and is read again only later."""
    loop = Running("DO $$ BEGIN LOOP END LOOP; END $$", "live-busy")
    running.append(loop)
    pid = loop.session.pid
    snapshot = wait_until(
        lambda: (found := read(pid)).running and found.wait_event_type is None and found,
        what="the loop runs on the CPU",
    )
    assert snapshot == live.Snapshot(running=True)
    assert live.describe(snapshot, 3.25, never_ended) == "statement running for 3.2 s: running"
    live_line, stream, _ = line()
    progress = live.StatementProgress(live_line, time.monotonic() - live.PROGRESS_AFTER)
    events: list[tuple[str, str, dict[str, Any]]] = []

    def emit(name: str, message: str, **fields: Any) -> None:
        events.append((name, message, fields))

    progress.step(lambda: read(pid), never_ended, emit, lambda: True)
    ((name, message, fields),) = events
    assert name == "statement_progress"
    assert message.startswith("pgmigrate: statement running for ")
    assert message.endswith(" s: running")
    assert (fields["command"], fields["wait_event_type"], fields["blockers"]) == (None, None, [])
    assert stream.getvalue() == ERASE + message.removeprefix("pgmigrate: ")
    loop.cancel()
    assert "canceling statement due to user request" in str(loop.outcome["error"])
    stream.truncate(0)
    stream.seek(0)
    ended = live.StatementProgress(live_line, time.monotonic() - live.PROGRESS_AFTER)
    before = time.monotonic()
    ended.step(lambda: read(pid), never_ended, emit, lambda: True)
    assert len(events) == 1 and stream.getvalue() == ""
    assert ended.due >= before + live.REDRAW_EVERY  # not read again at once


def test_index_build_on_a_partitioned_table(scenario: str, running: list[Running]) -> None:
    """``CREATE INDEX`` on a partitioned table (an expression that takes 5 ms a row): which
    partition it is at."""
    query(SLOW_FUNCTION)
    query("CREATE TABLE tests_parted (id int, name text) PARTITION BY RANGE (id)")
    for number, (start, end) in enumerate([(0, 1000), (1000, 2000)], start=1):
        query(
            f"CREATE TABLE tests_parted_{number} PARTITION OF tests_parted"
            f" FOR VALUES FROM ({start}) TO ({end})"
        )
    query("INSERT INTO tests_parted SELECT g, 'row ' || g FROM generate_series(0, 1999) AS g")
    build = Running("CREATE INDEX tests_parted_idx ON tests_parted (tests_slow(name))", "build")
    running.append(build)
    pid = build.session.pid
    snapshot = wait_until(
        lambda: (found := read(pid)).partitions[1] and found,
        what="the build's progress counts its partitions",
    )
    build.cancel()
    assert snapshot.command == "CREATE INDEX"
    assert snapshot.partitions == (0, 2)
    text = live.describe(snapshot, 12.0, never_ended)
    assert text.startswith(
        f"CREATE INDEX running for 12 s: {snapshot.phase}, partitions 0 of 2 (0%)"
    ), text


@pytest.mark.parametrize(
    ("phase", "blocks", "shown"),
    [
        ("waiting for writers before build", (3, 4), "waiting for writers before build"),
        ("initializing", (0, 0), "initializing"),
        (None, (0, 0), "starting"),
    ],
)
def test_phase_without_counters(phase: str | None, blocks: tuple[int, int], shown: str) -> None:
    """A build in a ``waiting for ...`` phase before it counted whom it waits for (the other
    counters are those of the phase before), or in a phase without counters, shows the
    phase alone."""
    snapshot = live.Snapshot(
        running=True, command="CREATE INDEX CONCURRENTLY", phase=phase, blocks=blocks
    )
    assert live.describe(snapshot, 5.0, never_ended) == (
        f"CREATE INDEX CONCURRENTLY running for 5.0 s: {shown}"
    )


# The live line ----------------------------------------------------------------------------


def test_terminal_of_unknown_width_cuts_the_line() -> None:
    live_line, stream, notices = line()
    assert live_line.in_place and not live_line.plain
    live_line.prefix = "  Applying tests.0002_index..."
    text = "CREATE INDEX running for 3.0 s: " + "x" * 200
    live_line.update(text, current=lambda: True)
    written = stream.getvalue()
    assert written.startswith(ERASE + "  Applying tests.0002_index... CREATE INDEX running")
    drawn = written.removeprefix(ERASE)
    assert len(drawn) == DEFAULT_WIDTH - 1 and drawn.endswith("x...")
    live_line.say("pgmigrate: a plain line", current=lambda: True)
    assert notices == []  # on a terminal the line is drawn in place only
    live_line.clear()
    assert stream.getvalue() == written + ERASE + "  Applying tests.0002_index..."
    live_line.clear()  # nothing drawn any more: nothing to take away
    assert stream.getvalue().count(ERASE) == 2


def test_statement_that_ended_is_not_drawn() -> None:
    """``current()`` (asked with the output lock held) says the statement ended: no text."""
    live_line, stream, _ = line()
    live_line.update("statement running for 3.0 s: running", current=lambda: False)
    assert stream.getvalue() == ""


@pytest.mark.parametrize(
    ("terminal", "verbosity", "plain"),
    [(True, 0, False), (False, 0, False), (False, 1, True)],
    ids=["terminal-quiet", "pipe-quiet", "pipe"],
)
def test_elsewhere_only_plain_lines(terminal: bool, verbosity: int, plain: bool) -> None:
    live_line, stream, notices = line(terminal=terminal, verbosity=verbosity)
    assert not live_line.in_place
    live_line.update("statement running for 3.0 s: running", current=lambda: True)
    live_line.say("pgmigrate: statement running for 3.0 s: running", current=lambda: True)
    live_line.say("pgmigrate: ended", current=lambda: False)
    assert stream.getvalue() == ""
    assert notices == (["pgmigrate: statement running for 3.0 s: running"] if plain else [])
