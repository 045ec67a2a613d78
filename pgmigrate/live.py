"""Live progress of a long statement: what the migrating backend is doing, and for whom it waits.

The watcher already looks at the migrating backend while a statement runs (``pgmigrate.watcher``).
Once a statement has run ``PROGRESS_AFTER`` seconds, it also reads, with one prepared statement
(``PROGRESS``), the backend's wait (``pg_stat_activity``), the progress of an index build
(``pg_stat_progress_create_index``, PostgreSQL docs "Progress Reporting", 12+) and, while it
waits on a lock, the sessions in its way (``pg_blocking_pids``): for ``CREATE INDEX
CONCURRENTLY``, the old transactions it waits for. Statements shorter than that cost nothing
more than a comparison per look.

What it reads becomes one line of text (``describe``), shown by a ``LiveLine``
(``pgmigrate.liveline``): on a terminal redrawn in place at most every ``REDRAW_EVERY``
seconds, elsewhere printed as plain lines at growing gaps (``PLAIN_GAPS``), each plain line
also a ``statement_progress`` event (every run, whatever the output).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgmigrate import actions
from pgmigrate.db import RUNNING_STATES
from pgmigrate.prepared import Prepared
from pgmigrate.text import printable

if TYPE_CHECKING:
    from pgmigrate.liveline import LiveLine

#: A statement shows its progress once it has run this long (s).
PROGRESS_AFTER = 2.0
#: On a terminal, the line is read and redrawn at most this often (s): one query a second.
REDRAW_EVERY = 1.0
#: After the first plain line (and event), the next ones come after these gaps (s), then
#: every ``PLAIN_GAP_MAX`` seconds: with ``PROGRESS_AFTER`` at 2 s, at 2, 5, 10, 30, 60 s,
#: then every minute.
PLAIN_GAPS = (3.0, 5.0, 20.0, 30.0)
PLAIN_GAP_MAX = 60.0

#: What the migrating backend does now: its wait, its index build's progress (no row unless
#: it builds an index) and, only while it waits on a lock, the sessions in its way with
#: their application, transaction age (s) and backend type. A prepared transaction is pid 0.
PROGRESS = """
SELECT a.state, a.wait_event_type, a.wait_event,
       p.command, p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total,
       p.lockers_done, p.lockers_total, p.partitions_done, p.partitions_total,
       w.pids, w.applications, w.ages, w.types
FROM pg_stat_get_activity(%s) AS a
LEFT JOIN pg_stat_progress_create_index AS p ON p.pid = a.pid
LEFT JOIN LATERAL (
    SELECT array_agg(b.pid ORDER BY b.pid),
           array_agg(s.application_name ORDER BY b.pid),
           array_agg(extract(epoch FROM now() - s.xact_start)::float8 ORDER BY b.pid),
           array_agg(s.backend_type ORDER BY b.pid)
    FROM (SELECT DISTINCT unnest(pg_blocking_pids(a.pid))) AS b(pid)
    LEFT JOIN LATERAL pg_stat_get_activity(NULLIF(b.pid, 0)) AS s ON s.pid = b.pid
    WHERE a.wait_event_type = 'Lock'
) AS w(pids, applications, ages, types) ON true
"""
PROGRESS_P = Prepared("progress", PROGRESS, ("int",))


@dataclass(frozen=True)
class InTheWay:
    """A session the migrating backend waits for (``pg_blocking_pids``)."""

    pid: int
    application_name: str | None
    #: Seconds since its transaction began (None: hidden from the migrating role, or none).
    transaction_age: float | None
    backend_type: str | None


@dataclass(frozen=True)
class Snapshot:
    """What ``PROGRESS`` read about the migrating backend."""

    running: bool
    wait_event_type: str | None = None
    wait_event: str | None = None
    #: ``pg_stat_progress_create_index``'s ``command`` and ``phase`` (None: no index build).
    command: str | None = None
    phase: str | None = None
    #: (done, total) pairs of its counters.
    blocks: tuple[int, int] = (0, 0)
    tuples: tuple[int, int] = (0, 0)
    lockers: tuple[int, int] = (0, 0)
    partitions: tuple[int, int] = (0, 0)
    in_the_way: tuple[InTheWay, ...] = ()


def read(cursor: Any, pid: int) -> Snapshot:
    """Read what backend ``pid`` does (``PROGRESS``) with ``cursor`` (the watcher's)."""
    PROGRESS_P.execute(cursor, [pid])
    row = cursor.fetchone()
    if row is None or row[0] not in RUNNING_STATES:
        return Snapshot(running=False)
    _, wait_type, wait_event, command, phase, *counters = row[:13]
    pids, applications, ages, types = row[13:]
    numbers = [int(value or 0) for value in counters]
    return Snapshot(
        running=True,
        wait_event_type=wait_type,
        wait_event=wait_event,
        command=command,
        phase=phase,
        blocks=(numbers[0], numbers[1]),
        tuples=(numbers[2], numbers[3]),
        lockers=(numbers[4], numbers[5]),
        partitions=(numbers[6], numbers[7]),
        in_the_way=tuple(
            InTheWay(pid, application, age, kind)
            for pid, application, age, kind in zip(
                pids or (), applications or (), ages or (), types or (), strict=True
            )
        ),
    )


def fate(
    session: InTheWay, left_alone: dict[int, str], action: actions.BlockingAction | None
) -> str:
    """What pgmigrate does with ``session``: the reason the watcher gave for leaving it
    alone (``left_alone``, by pid), else what the blocking ``action`` (None: none) does with
    a session of its kind."""
    if session.pid == 0:
        return "a prepared transaction: left alone (COMMIT PREPARED or ROLLBACK PREPARED ends it)"
    reason = left_alone.get(session.pid)
    if reason is not None:
        return f"left alone: {reason}"
    if session.backend_type == "autovacuum worker":
        return "left alone: autovacuum, which PostgreSQL cancels itself"
    if action is None:
        return "left alone: no blocking action"
    name = type(action).__name__
    if action.filters:
        name += ", if it matches the action's filters"
    if isinstance(action, actions.Show):
        return f"shown and left alone ({name})"
    if isinstance(action, actions.Cancel):
        return f"pgmigrate will cancel its query, if it runs one ({name})"
    if action.ends_blockers:
        return f"pgmigrate will end it ({name})"
    return f"left to the blocking action ({name})"


def _seconds(value: float) -> str:
    """``4.2 s``, ``95 s``, ``1 h 02 min``: elapsed time, for people."""
    if value < 10:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{value:.0f} s"
    minutes = int(value // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _count(what: str, pair: tuple[int, int]) -> str:
    done, total = pair
    return f"{what} {done:,} of {total:,} ({100 * done // total}%)"


def _build(snapshot: Snapshot) -> str:
    """An index build's phase and counters: ``building index: scanning table, blocks 10 of
    40 (25%)``; for its waits, which of the old transactions (or lockers) it is at."""
    phase = snapshot.phase or "starting"
    parts = [phase]
    if snapshot.partitions[1]:
        parts.append(_count("partitions", snapshot.partitions))
    if phase.startswith("waiting for"):  # the other counters are those of the last phase
        done, total = snapshot.lockers
        if total:
            parts.append(f"transaction {min(done + 1, total)} of {total}")
    elif snapshot.tuples[1]:
        parts.append(_count("tuples", snapshot.tuples))
    elif snapshot.blocks[1]:
        parts.append(_count("blocks", snapshot.blocks))
    return ", ".join(parts)


def _wait(snapshot: Snapshot) -> str:
    if snapshot.wait_event_type is None:
        return "running"
    return f"waiting on {snapshot.wait_event_type}: {snapshot.wait_event}"


def describe(snapshot: Snapshot, elapsed: float, fate_of: Callable[[InTheWay], str]) -> str:
    """One line about the running statement, e.g. ``CREATE INDEX CONCURRENTLY running for
    12 s: waiting for old snapshots, transaction 1 of 1; waits for pid 4242 (application
    'psql', in a transaction for 40 s): left alone: protected: ...`` or ``statement running
    for 3.1 s: waiting on IO: DataFileRead``. ``elapsed`` in seconds; ``fate_of`` tells what
    pgmigrate does with each session in the way (``fate``). Printable: text from the
    database is escaped (``pgmigrate.text.printable``)."""
    what = snapshot.command or "statement"
    text = f"{what} running for {_seconds(elapsed)}: "
    text += _build(snapshot) if snapshot.command else _wait(snapshot)
    sessions = []
    for session in snapshot.in_the_way:
        if session.pid == 0:
            sessions.append(fate_of(session))
            continue
        age = (
            f", in a transaction for {_seconds(session.transaction_age)}"
            if session.transaction_age is not None
            else ""
        )
        sessions.append(
            f"pid {session.pid} (application {session.application_name or ''!r}"
            f"{age}): {fate_of(session)}"
        )
    if sessions:
        text += "; waits for " + "; ".join(sessions)
    return printable(text)  # no control character from the database (pgmigrate.text)


def fields(
    snapshot: Snapshot, elapsed: float, fate_of: Callable[[InTheWay], str]
) -> dict[str, Any]:
    """The fields of a ``statement_progress`` event."""
    return {
        "elapsed": round(elapsed, 3),
        "wait_event_type": snapshot.wait_event_type,
        "wait_event": snapshot.wait_event,
        "command": snapshot.command,
        "phase": snapshot.phase,
        "blocks_done": snapshot.blocks[0],
        "blocks_total": snapshot.blocks[1],
        "tuples_done": snapshot.tuples[0],
        "tuples_total": snapshot.tuples[1],
        "blockers": [
            {
                "pid": session.pid,
                "application_name": session.application_name,
                "transaction_age": session.transaction_age,
                "fate": fate_of(session),
            }
            for session in snapshot.in_the_way
        ],
    }


class StatementProgress:
    """When to read and show the progress of one long statement (started at ``started``,
    ``time.monotonic()``), and where: a ``LiveLine``."""

    def __init__(self, line: LiveLine, started: float) -> None:
        self.line = line
        self.started = started
        self._plain_at = started + PROGRESS_AFTER
        self._plain_gaps = iter(PLAIN_GAPS)
        self._redraw_at = self._plain_at

    @property
    def due(self) -> float:
        """When the next read is due (``time.monotonic()``)."""
        return min(self._plain_at, self._redraw_at) if self.line.in_place else self._plain_at

    def step(
        self,
        read: Callable[[], Snapshot],
        fate_of: Callable[[InTheWay], str],
        emit: Callable[..., None],
        current: Callable[[], bool],
    ) -> None:
        """Read what the backend does (``read``) and show it: redraw the line (on a
        terminal), and when a plain line is due, print it (elsewhere) and ``emit`` a
        ``statement_progress`` event. ``current`` tells, with the output lock held, whether
        the statement still runs. The next step is due first, so a failed read is not
        retried at once."""
        now = time.monotonic()
        plain = now >= self._plain_at
        self._redraw_at = now + REDRAW_EVERY
        if plain:
            self._plain_at = now + next(self._plain_gaps, PLAIN_GAP_MAX)
        snapshot = read()
        if not snapshot.running:
            return
        elapsed = now - self.started
        text = describe(snapshot, elapsed, fate_of)
        if plain:  # first: ``emit`` takes the line away (a log handler may print there)
            self.line.say(f"pgmigrate: {text}", current=current)
            emit("statement_progress", f"pgmigrate: {text}", **fields(snapshot, elapsed, fate_of))
        if self.line.in_place:
            self.line.update(text, current=current)
