"""Live progress of long statements during ``migrate`` (``pgmigrate.live``, ``.liveline``):
on a pseudo-terminal, through a pipe, and not at all for short statements."""

from __future__ import annotations

import fcntl
import json
import os
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connections
from django.test import override_settings

from pgmigrate import actions, live, signals
from pgmigrate.liveline import ERASE
from tests.helpers import (
    ROOT,
    WAIT_TIMEOUT,
    Session,
    WatcherStatements,
    manage_env,
    migrate,
    query,
)

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "other"]),
    pytest.mark.scenario("live"),
]

#: Rows of the big table: with ``SLOW_BUILD`` an index on it builds for a few seconds.
ROWS = 1_500_000
#: Rows of a table whose index builds quickly, and of one whose index build takes well under
#: ``PROGRESS_AFTER`` (the default threshold).
SOME, UNDER_THRESHOLD = 10_000, 500_000
#: Rows of the table whose index build shows its progress on a terminal and on a pipe.
MILLIONS = 3_000_000
#: The progress threshold of the tests' ``manage.py`` children (s; ``tests/live_settings.py``).
THRESHOLD = "0.2"
#: The application name of the old transaction a ``CREATE INDEX CONCURRENTLY`` waits for,
#: protected from the blocking action (so that it stays, and the line tells why).
OLD = "live-old-report"
#: The width of the tests' pseudo-terminal (columns).
COLUMNS = 400


def _filled(rows: int) -> None:
    """The ``live`` scenario's 0001 applied, its table filled with ``rows`` rows. Autovacuum
    is off for the table: a worker that the insert sets off would hold a lock that the index
    build waits for, and the run would print what it does about it."""
    migrate("tests", "0001", verbosity=0)
    query("ALTER TABLE tests_big SET (autovacuum_enabled = false)")
    query(
        "INSERT INTO tests_big (name) SELECT md5(i::text) FROM generate_series(1, %s) AS i",
        [rows],
    )


@pytest.fixture
def big(scenario: str) -> None:
    """A table whose index builds for a few seconds (``ROWS``)."""
    _filled(ROWS)


@pytest.fixture
def some(scenario: str) -> None:
    """A table whose index builds quickly (``SOME``): for what does not depend on how long
    the build itself takes (a concurrent build's wait for old transactions)."""
    _filled(SOME)


@pytest.fixture
def millions(scenario: str) -> None:
    """A table of a few million rows (``MILLIONS``), for the progress of an index build."""
    _filled(MILLIONS)


class Child:
    """``manage.py migrate`` in a child process whose stdout is a pseudo-terminal
    (``COLUMNS`` wide) or a pipe; its output is read as it comes."""

    def __init__(self, *args: str, terminal: bool, **env: str) -> None:
        self.raw = b""
        if terminal:
            self._fd, child_side = os.openpty()
            attributes = termios.tcgetattr(child_side)
            attributes[1] &= ~termios.ONLCR  # no \r added to \n: every \r is pgmigrate's
            termios.tcsetattr(child_side, termios.TCSANOW, attributes)
            fcntl.ioctl(child_side, termios.TIOCSWINSZ, struct.pack("HHHH", 50, COLUMNS, 0, 0))
        else:
            self._fd, child_side = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "migrate", *args, "--no-color"],
                cwd=ROOT,
                env=manage_env(
                    DJANGO_SETTINGS_MODULE="tests.live_settings",
                    PGMIGRATE_TEST_SCENARIO="live",
                    PGMIGRATE_TEST_PROGRESS_AFTER=THRESHOLD,
                    **env,
                ),
                stdin=subprocess.DEVNULL,
                stdout=child_side,
                stderr=subprocess.PIPE,
            )
        finally:
            os.close(child_side)

    @property
    def output(self) -> str:
        return self.raw.decode(errors="replace")

    def _read(self, timeout: float) -> bool:
        """Read what is there within ``timeout`` s; False at the end of the output."""
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self._fd, 65536)
        except OSError:  # a pseudo-terminal whose other side closed (EIO)
            return False
        self.raw += chunk
        return bool(chunk)

    def read_until(self, predicate: Callable[[str], Any], what: str) -> None:
        deadline = time.monotonic() + WAIT_TIMEOUT
        while not predicate(self.output):
            if time.monotonic() > deadline or not self._read(0.05):
                raise AssertionError(f"{what} never came; output: {self.output!r}")

    def finish(self) -> str:
        """Read to the end; the child must succeed. Returns all its stdout."""
        deadline = time.monotonic() + 120
        while self._read(0.1) and time.monotonic() < deadline:
            pass
        stderr = self.process.communicate(timeout=WAIT_TIMEOUT)[1].decode(errors="replace")
        assert self.process.returncode == 0, (self.output, stderr)
        assert "Traceback" not in stderr, stderr
        return self.output

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
        elif self.process.stderr is not None:
            self.process.stderr.close()
        os.close(self._fd)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.close()


def screen(raw: str) -> list[str]:
    """The lines a terminal shows after ``raw``: each character written at the cursor,
    a carriage return back to the first column, ``ESC [ K`` erasing to the line's end."""
    lines: list[str] = []
    line: list[str] = []
    column = 0
    index = 0
    while index < len(raw):
        if raw.startswith("\x1b[K", index):
            del line[column:]
            index += 3
            continue
        char = raw[index]
        if char == "\r":
            column = 0
        elif char == "\n":
            lines.append("".join(line))
            line, column = [], 0
        else:
            line[column : column + 1] = [char]
            column += 1
        index += 1
    return [*lines, "".join(line)]


def test_index_build_on_a_terminal_and_through_a_pipe(
    millions: None, children: list[Child]
) -> None:
    """The same index build (one fill of the table: it takes seconds), shown on a terminal
    (one line redrawn in place), then, applied again, through a pipe (plain lines)."""
    child = Child("tests", "0002", terminal=True)
    children.append(child)
    output = child.finish()
    redraws = output.split(ERASE)
    drawn = [part for part in redraws if "CREATE INDEX running for" in part]
    assert len(drawn) >= 2, output  # redrawn in place, at least once after the first
    assert any("building index" in part and "% )" not in part for part in drawn), output
    assert any("blocks" in part or "tuples" in part for part in drawn), output
    # The live text follows Django's open line, and only ESC [ K is ever written.
    assert all(part.startswith("  Applying tests.0002_index... CREATE INDEX") for part in drawn)
    assert all(len(part) < COLUMNS for part in drawn)  # never wraps
    assert "\x1b" not in output.replace("\x1b[K", ""), output
    shown = screen(output)
    assert "  Applying tests.0002_index... OK" in shown, shown
    assert not any("running for" in line for line in shown), shown

    migrate("tests", "0001", verbosity=0)  # drops the index
    child = Child("tests", "0002", terminal=False)
    children.append(child)
    output = child.finish()
    lines = [line for line in output.splitlines() if "CREATE INDEX running for" in line]
    assert lines, output
    assert lines[0].startswith("pgmigrate: CREATE INDEX running for "), output
    assert "\r" not in output and "\x1b" not in output, output
    assert "  Applying tests.0002_index..." in output
    assert output.rstrip().endswith("OK"), output


def test_quiet_run_prints_no_progress(scenario: str, children: list[Child]) -> None:
    migrate("tests", "0003", verbosity=0)  # an empty table: quick index builds
    child = Child("tests", "0004", "-v", "0", terminal=True)  # 0.6 s: a line at -v 1
    children.append(child)
    assert child.finish() == ""


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_concurrent_build_names_the_old_transaction(
    some: None, children: list[Child], sessions: list[Session], terminal: bool
) -> None:
    migrate("tests", "0002", verbosity=0)
    old = Session(application_name=OLD)
    sessions.append(old)
    old.connection.set_autocommit(False)
    old.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    old.execute("SELECT count(*) FROM tests_alpha")  # a snapshot older than the build's
    protected = json.dumps({"PGMIGRATE_PROTECTED": {"application_name": [OLD]}})
    child = Child("tests", "0003", terminal=terminal, PGMIGRATE_TEST_SETTINGS=protected)
    children.append(child)
    named = f"pid {old.pid} (application '{OLD}', in a transaction for "
    child.read_until(lambda output: named in output, "the line naming the old transaction")
    old.release()
    output = child.finish()
    line = output[output.index(named) :].split("\n")[0].split("\r")[0]
    assert "CREATE INDEX CONCURRENTLY running for" in output[: output.index(named)], output
    assert "left alone: protected: PGMIGRATE_PROTECTED: application_name" in line, line
    if terminal:  # the protected session's notice closed Django's line: OK on its own
        shown = screen(output)
        assert shown[shown.index("  Applying tests.0003_concurrent...") + 3] == " OK", shown
        assert not any("running for" in line for line in shown), shown
    else:
        assert "\r" not in output and "\x1b" not in output, output
        assert "waiting for old snapshots, transaction 1 of 1; waits for pid" in output, output


def test_concurrent_build_ends_an_old_transaction_at_once(
    some: None, children: list[Child], sessions: list[Session]
) -> None:
    """What "pgmigrate will end it" stands on: an old transaction that ``CREATE INDEX
    CONCURRENTLY`` waits for (a ``virtualxid`` lock) is a blocker like any other, and the
    default action (Terminate) ends it as soon as the build waits for it."""
    migrate("tests", "0002", verbosity=0)
    old = Session(application_name="live-old-unprotected")
    sessions.append(old)
    old.connection.set_autocommit(False)
    old.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    old.execute("SELECT count(*) FROM tests_alpha")
    child = Child("tests", "0003", terminal=False)
    children.append(child)
    output = child.finish()
    assert f"terminated 1 session blocking the migration: pid {old.pid}" in output, output
    assert "\r" not in output and "\x1b" not in output, output


@pytest.fixture
def recorder() -> Iterator[WatcherStatements]:
    with WatcherStatements().recording() as statements:
        yield statements


@pytest.fixture
def progress_events() -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    def receive(sender: Any, **fields: Any) -> None:
        received.append(fields)

    signals.statement_progress.connect(receive)
    yield received
    signals.statement_progress.disconnect(receive)


@pytest.mark.parametrize("threshold", [live.PROGRESS_AFTER, 0.0], ids=["short", "long"])
# The first look, and with a threshold of 0 the first progress read, 50 ms into the build
# (a fifth of the interval): with the default 1 ms, on a loaded machine (the CI's cells side
# by side) it could come before the server ran the statement.
@override_settings(PGMIGRATE_BLOCKING_ACTION_INTERVAL=0.25)
def test_only_long_statements_read_progress(
    scenario: str,
    recorder: WatcherStatements,
    progress_events: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    threshold: float,
) -> None:
    """The same index build (well under ``PROGRESS_AFTER``, the default threshold) reads
    and shows no progress, and does with a threshold of 0 (the contrast shows that the
    watcher's statements are seen)."""
    _filled(UNDER_THRESHOLD)
    monkeypatch.setattr(live, "PROGRESS_AFTER", threshold)
    # Plain lines every 50 ms after the first: a read that finds the statement not (or not
    # yet) running prints nothing, and the next one still comes within the build.
    monkeypatch.setattr(live, "PLAIN_GAPS", (0.05,) * 100)
    output = migrate("tests", "0002")
    assert any("PREPARE pgmigrate_progress" in sql for sql in recorder.statements)
    if threshold:
        assert recorder.executed(live.PROGRESS_P.name) == 0, recorder.statements
        assert not progress_events
        assert "running for" not in output
    else:
        assert recorder.executed(live.PROGRESS_P.name) >= 1, recorder.statements
        # (What the build's line says is another test's: a look in the first instants of
        # the statement may come before PostgreSQL reports the build's progress.)
        event = next(e for e in progress_events if e["migration"] == "tests.0002_index")
        assert event["elapsed"] >= 0
        assert "running for" in output
    connections.close_all()


def test_other_statements_show_what_they_wait_on(
    scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "PROGRESS_AFTER", 0.2)
    migrate("tests", "0003", verbosity=0)  # an empty table: quick index builds
    output = migrate("tests", "0004")
    lines = [line for line in output.splitlines() if "statement running for" in line]
    assert lines and lines[0].startswith("pgmigrate: statement running for "), output
    assert lines[0].endswith(" s: waiting on Timeout: PgSleep"), output


def test_text_from_the_database_is_escaped() -> None:
    """What the line says of each kind of session in the way, with an application name
    that holds a terminal escape and a line break."""
    snapshot = live.Snapshot(
        running=True,
        wait_event_type="Lock",
        wait_event="transactionid",
        in_the_way=(
            live.InTheWay(4242, "evil\x1b]0;title\x07\nname", 75.0, "client backend"),
            live.InTheWay(4243, "vacuum", None, "autovacuum worker"),
            live.InTheWay(4244, "web", 1.5, "client backend"),
            live.InTheWay(0, None, None, None),
        ),
    )
    left_alone = {4242: "protected: PGMIGRATE_PROTECTED: application_name 'evil*'"}

    def fate_of(session: live.InTheWay) -> str:
        return live.fate(session, left_alone, actions.Terminate())

    text = live.describe(snapshot, 3725.0, fate_of)
    assert not set(text) & {"\x1b", "\x07", "\n", "\r"}, text
    assert text.startswith("statement running for 1 h 02 min: waiting on Lock: transactionid;")
    assert (
        "pid 4242 (application 'evil\\x1b]0;title\\x07\\nname', in a transaction for 75 s)" in text
    )
    assert ": left alone: protected: PGMIGRATE_PROTECTED" in text
    assert "pid 4243 (application 'vacuum'): left alone: autovacuum" in text
    assert (
        "pid 4244 (application 'web', in a transaction for 1.5 s): pgmigrate will end it" in text
    )
    assert "a prepared transaction: left alone" in text
    web = snapshot.in_the_way[2]
    assert live.fate(web, {}, None) == "left alone: no blocking action"
    # What each action does with a session the watcher has not acted on yet.
    assert live.fate(web, {}, actions.Show()) == "shown and left alone (Show)"
    assert live.fate(web, {}, actions.Cancel()) == (
        "pgmigrate will cancel its query, if it runs one (Cancel)"
    )
    assert live.fate(web, {}, actions.Terminate(blocking_activity__state="active")) == (
        "pgmigrate will end it (Terminate, if it matches the action's filters)"
    )

    class Report(actions.BlockingAction):
        def worker(self, cmd, blocked_locks):
            return []

    assert live.fate(web, {}, Report()) == "left to the blocking action (Report)"
