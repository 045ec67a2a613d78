"""Scenarios "aside" and "aside-show": a blocker pgmigrate does not end, and stepping aside.

A session idle in transaction holds ``ACCESS SHARE`` on the 10,000-row table while open-loop
app traffic reads it; ``migrate`` adds a column. pgmigrate does not end the session: in
"aside" it is protected (``PGMIGRATE_PROTECTED``), in "aside-show" the blocking action is
``Show``. The bench rolls the session's transaction back ``hold`` seconds after the ALTER
first waits (a job that finishes). No lock timeout. Three implementations, run by run:

- pgmigrate: its defaults, ``PGMIGRATE_STEP_ASIDE = True``: the watcher cancels the waiting
  ALTER so that it leaves the lock queue; the operation waits out of the queue, and runs
  again once the session is gone;
- queue: pgmigrate with ``PGMIGRATE_STEP_ASIDE = False``, the behaviour before stepping
  aside: the ALTER waits in the queue, and the app's queries queue behind it;
- plain: Django's ``migrate``, which waits in the queue too.

"Blocker ended -> migration committed": from just before the bench sends the blocker's
``ROLLBACK`` to the return of the first poll (every 1 ms, from then on) that sees the
migration's row in ``django_migrations``, which commits with the ALTER (pgmigrate records it
with the migration's last operation, Django with the whole migration): an upper bound, about
1.5 ms above the commit at most. "-> migrate exits" is the child's exit, seen by the bench.

"retries" (``bench.scenarios.retries``) and "watcher-cost" use ``measure``/``run_holding``.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import server
from bench.migrate import MigrateFailed, MigrateRun
from bench.options import Options
from bench.report import Metric, ScenarioResult, Target
from bench.scenarios import benchapp, blocked
from bench.sessions import BLOCKER_APPLICATION_NAME, AppliedPoller, HeldSession, LockWaitMonitor
from bench.traffic import AppTraffic

MIGRATION = "0002_row_note"
#: pgmigrate's output when it steps out of the lock queue, and its summary line's figures.
STEPPED = "pgmigrate: stepped out of the lock queue"
BACK = "pgmigrate: the sessions the migration stepped aside for are gone"
SUMMARY = re.compile(r"stepped out of the lock queue (\d+) time\(s\) for ([\d.]+) s")

PROTECTED = {"BENCH_PGMIGRATE_PROTECTED_APP": BLOCKER_APPLICATION_NAME}
SHOW = {"BENCH_PGMIGRATE_ACTION": "pgmigrate.Show"}
QUEUE = {"BENCH_PGMIGRATE_STEP_ASIDE": "0"}

METRICS = [
    blocked.WALL,
    *blocked.APP_METRICS,
    Metric("done_ms", "blocker ended -> migration committed (ms)"),
    Metric("exit_ms", "blocker ended -> migrate exits (ms)"),
    Metric("stepped_ms", 'ALTER waits -> "stepped out" printed (ms)'),
    Metric("steps_aside", "times out of the lock queue", 0, ratio=False),
    Metric("aside_s", "time out of the lock queue (s)", 3, ratio=False),
]


@dataclass(frozen=True)
class Group:
    """One implementation of a scenario: a result group, how ``migrate`` runs."""

    name: str
    implementation: str  # bench.migrate.IMPLEMENTATIONS
    env: dict[str, str] = field(default_factory=dict)


def groups(settings: dict[str, str], queue: str = "queue") -> list[Group]:
    """pgmigrate with ``settings`` (stepping aside), the same without stepping aside (named
    ``queue``), plain Django."""
    return [
        Group("pgmigrate", "pgmigrate", settings),
        Group(queue, "pgmigrate", {**settings, **QUEUE}),
        Group("plain", "plain"),
    ]


def run_aside(url: str, options: Options) -> ScenarioResult:
    return held_scenario(
        url,
        options,
        name="aside",
        title="as blocked, but the blocker is protected (PGMIGRATE_PROTECTED); no lock timeout",
        settings=PROTECTED,
        what="pgmigrate leaves it alone (protected)",
        targets=[
            Target("app worst stall", "app_worst_ms", 10),
            Target("blocker ended -> migration committed", "done_ms", 50),
        ],
    )


def run_aside_show(url: str, options: Options) -> ScenarioResult:
    return held_scenario(
        url,
        options,
        name="aside-show",
        title="as aside, but the blocker is not protected and PGMIGRATE_BLOCKING_ACTION = Show",
        settings=SHOW,
        what="pgmigrate shows it (Show)",
        targets=[Target("app worst stall", "app_worst_ms", 10)],
    )


NOTES = [
    '"blocker ended -> migration committed": from just before the bench sends ROLLBACK to '
    "the first poll (every 1 ms) that sees the migration's row in django_migrations (it "
    'commits with the ALTER); "-> migrate exits": the child\'s exit.',
    "the app timeline of each group's first run is in the JSON results "
    '(extra["timeline"]); python -m bench.plot draws it.',
]


def held_scenario(
    url: str,
    options: Options,
    *,
    name: str,
    title: str,
    settings: dict[str, str],
    what: str,
    targets: list[Target],
    metrics: list[Metric] = METRICS,
    runs: int | None = None,
    hold: float | None = None,
    queue: str = "queue",
    queue_is: str = "the behaviour before",
    keep: Callable[[Group, dict], None] | None = None,
) -> ScenarioResult:
    """A scenario of ``groups(settings, queue)`` around a blocker that the bench rolls back
    ``hold`` seconds after the ALTER first waits (by default ``options.aside_*``)."""
    runs = options.aside_runs if runs is None else runs
    hold = options.aside_hold if hold is None else hold
    result = ScenarioResult(
        name=name,
        title=f"{name}: {title}; blocker held {hold:g} s, {runs} runs each",
        metrics=metrics,
        targets=targets,
    )
    result.notes += [
        f"all: the bench rolls the blocker back {hold:g} s after the ALTER first waits; "
        f"{what}. pgmigrate: steps out of the lock queue (default); {queue}: "
        f"PGMIGRATE_STEP_ASIDE = False ({queue_is}); plain: Django's migrate.",
        *NOTES,
    ]
    run_groups(result, url, options, groups(settings, queue), runs, hold=hold, keep=keep)
    return result


def run_groups(
    result: ScenarioResult,
    url: str,
    options: Options,
    cases: list[Group],
    runs: int,
    *,
    hold: float,
    keep: Callable[[Group, dict], None] | None = None,
) -> None:
    """``runs`` runs of each group, alternating; the app timeline of each group's first run
    goes to ``result.extra`` as in "blocked"; ``keep`` may add figures to each run."""
    benchapp.setup(url)
    for number in range(1, runs + 1):
        for case in cases:
            measured = measure(url, options, case, hold=hold, timeline=number == 1)
            blocked.keep_timeline(result, case.name, measured)
            if keep is not None:
                keep(case, measured)
            result.runs.append({"group": case.name, "run": number, **measured})
            print(
                f"  {result.name} {number}/{runs} {case.name:<20} "
                f"stall {measured['app_worst_ms']:8.1f} ms, committed "
                f"{_ms(measured['done_ms'])} after the blocker ended, "
                f"migrate {measured['wall_ms']:6.0f} ms",
                file=sys.stderr,
            )


def _ms(value: float | None) -> str:
    return "       -" if value is None else f"{value:8.1f} ms"


def measure(url: str, options: Options, case: Group, *, hold: float, timeline: bool) -> dict:
    """One run: a held blocker, app traffic, ``migrate benchapp 0002``; the bench rolls the
    blocker back ``hold`` seconds after the ALTER first waits."""
    benchapp.reset_to_0001(url)
    traffic = AppTraffic(
        url, table=benchapp.TABLE, rows=benchapp.ROWS, period=options.period, pool=options.pool
    )
    # The blocker closes before the app stops: stuck app queries then finish, whatever happened.
    with (
        traffic as app,
        HeldSession(url, benchapp.TABLE) as session,
        AppliedPoller(url, "benchapp", MIGRATION) as poller,
    ):
        if timeline:  # steady traffic for the timeline's start, before migrate's own start
            time.sleep(blocked.TIMELINE_MARGIN)
        run = MigrateRun(case.implementation, ["benchapp", MIGRATION], url, case.env)
        held = run_holding(run, LockWaitMonitor(url, benchapp.TABLE), session, hold, poller)
        app.drain(run.ended)
        app_numbers = blocked.measured_app(app, run, held.waitstart)
        if timeline:
            time.sleep(max(0.0, run.ended + blocked.TIMELINE_MARGIN - time.monotonic()))
            app.drain(run.ended + blocked.TIMELINE_MARGIN)
            app_numbers["timeline"] = blocked.app_timeline(
                app,
                run,
                held.waitstart,
                {
                    "released_ms": session.released_at,
                    "committed_ms": poller.seen_at,
                    "stepped_ms": held.line_at(run, STEPPED),
                    "back_ms": held.line_at(run, BACK),
                },
            )
    if not benchapp.has_note_column(url):
        raise RuntimeError(f"{case.name}: migrate exited but bench_row has no note column")
    released = session.released_at
    summary = SUMMARY.search(run.output)
    return {
        "wall_ms": run.wall * 1000,
        **app_numbers,
        "done_ms": _since(released, poller.seen_at),
        "done_resolution_ms": _since(poller.unseen_at, poller.seen_at),
        "exit_ms": _since(released, held.wall(run.ended)),
        "stepped_ms": _since(held.waitstart, held.line_at(run, STEPPED)),
        "steps_aside": int(summary.group(1)) if summary else 0,
        "aside_s": float(summary.group(2)) if summary else 0.0,
        "waitstart": held.waitstart,
        "waitstart_from": held.source,
        "released_at": released,
        "rollback_ms": _since(released, session.release_returned_at),
        "migrating_pid": held.pid,
        "blocker_pid": session.pid,
        "output": run.output,
    }


@dataclass
class Held:
    """When the ALTER first waited (``time.time()``) and how the bench knows it: "pg_locks"
    (the server's ``waitstart``, seen by ``LockWaitMonitor``) or "output" (pgmigrate's
    "stepped out" line, when the wait was too short for the monitor; later than the wait
    began); None if it never waited, with the source "never seen" if ``migrate`` still ran
    when the bench gave up looking (it then ends the blocker all the same)."""

    waitstart: float | None = None
    source: str | None = None
    pid: int | None = None
    #: time.time() - time.monotonic(), to put the child's line times on the wall clock.
    offset: float = field(default_factory=lambda: time.time() - time.monotonic())

    def wall(self, monotonic: float) -> float:
        return monotonic + self.offset

    def line_at(self, run: MigrateRun, text: str) -> float | None:
        """When the child's first line containing ``text`` arrived (``time.time()``)."""
        at = next((at for at, line in run.lines if text in line), None)
        return None if at is None else self.wall(at)


def run_holding(
    run: MigrateRun,
    monitor: LockWaitMonitor,
    session: HeldSession,
    hold: float,
    poller: AppliedPoller | None = None,
) -> Held:
    """Run ``migrate``; roll ``session`` back ``hold`` seconds after its ALTER first waits,
    unless it has exited by then, and with ``poller`` poll for the migration's row from then
    on. Raises ``MigrateFailed`` as ``MigrateRun.wait``, and when ``migrate`` is still
    running ``STUCK`` seconds after the blocker ended (with what the server shows)."""
    run.start()
    monitor.start(run)
    try:
        held = first_wait(run, monitor)
        if held.waitstart is None:
            if run.returncode is None:  # never saw it wait: end the blocker all the same
                held.source = "never seen"
                session.release()
        elif not run.exited(max(0.0, held.waitstart + hold - time.time())):
            session.release()
            if poller is not None:
                poller.wait(run, timeout=STUCK)
        if not run.exited(STUCK):
            raise MigrateFailed(
                f"migrate {' '.join(run.args)} ({run.implementation}) still runs {STUCK:g} s "
                f"after the blocker ended (ALTER first waited: {held.source}); its output so "
                f"far:\n{run.output}\n" + server_state(run.database_url)
            )
        run.wait(10)
    finally:
        monitor.stop()
        run.kill()
    return held


#: How long ``migrate`` may run on after the blocker ended (seconds).
STUCK = 60.0


def server_state(url: str) -> str:
    """The sessions of the bench's database and their relation locks, for a stuck run."""
    activity = server.execute(
        url,
        "SELECT pid, application_name, state, wait_event_type, wait_event,"
        " now() - xact_start, left(query, 100) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND application_name NOT IN ('bench app', 'bench idle') ORDER BY pid",
    )
    locks = server.execute(
        url,
        "SELECT pid, locktype, relation::regclass::text, mode, granted FROM pg_locks"
        " WHERE locktype IN ('relation', 'advisory', 'transactionid', 'virtualxid')"
        " AND pid <> pg_backend_pid() AND (NOT granted OR mode <> 'AccessShareLock'"
        " OR relation = 'bench_row'::regclass) ORDER BY pid",
    )
    return "\n".join(["pg_stat_activity:", *map(str, activity), "pg_locks:", *map(str, locks)])


def first_wait(run: MigrateRun, monitor: LockWaitMonitor, timeout: float = 120) -> Held:
    """Wait until the ALTER waits for its lock (or ``migrate`` exits)."""
    held = Held()

    def seen() -> bool:
        if monitor.found.is_set():
            held.waitstart, held.source, held.pid = monitor.waitstart, "pg_locks", monitor.pid
        return held.waitstart is not None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        monitor.found.wait(0.002)
        if seen():
            break
        stepped = run.wait_for_line(STEPPED, timeout=0)
        if stepped is not None:  # the wait was over before the monitor saw it
            monitor.stop()
            if not seen():
                held.waitstart, held.source = held.wall(stepped), "output"
            break
        # The monitor stops when it sees the wait (checked again: it may have just now) or
        # when migrate exits without waiting.
        if monitor.finished.is_set():
            seen()
            break
    return held


def _since(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start) * 1000
