"""Scenarios "blocked" and "crowd": ``migrate`` adds a column to a table that sessions block.

Sessions idle in a transaction hold ``ACCESS SHARE`` on a 10,000-row table while open-loop
app traffic reads it; then ``migrate`` applies an ``AddField`` to it. pgmigrate ends the
blockers itself; for plain Django the bench ends them after a fixed wait (the baseline of
an app without a tool, where someone or something eventually ends the blocking session).
"""

from __future__ import annotations

import sys
import time

from bench.migrate import MigrateRun
from bench.options import Options
from bench.report import Metric, ScenarioResult, Target
from bench.scenarios import benchapp
from bench.server import IdleCrowd
from bench.sessions import Blockers, LockWaitMonitor
from bench.traffic import AppTraffic

#: If pgmigrate has not ended the blockers this long after the ALTER waits, the bench does.
PGMIGRATE_PATIENCE = 30.0

#: The app timeline kept for the plot (``bench.plot``) spans from this long before the ALTER
#: waits to this long after ``migrate`` exits (seconds).
TIMELINE_MARGIN = 0.5
#: In "crowd", the blockers have been in their transactions this long (s) when migrate
#: starts: stale sessions (leaked, forgotten), not a busy app's short transactions, which
#: pgmigrate ends with the migration in the queue (``watcher.CROWD_STALE_AFTER``).
CROWD_STALE = 1.0

WALL = Metric("wall_ms", "migrate wall time (ms)", 0)
#: What the app went through (``measured_app``).
APP_METRICS = [
    Metric("app_worst_ms", "app worst stall (ms)"),
    Metric("app_worst_at_ms", "  scheduled at (ms after the ALTER waits)", worst=False),
    Metric("app_worst_before_wait_ms", "app worst before the ALTER waits (ms)"),
    Metric("app_p99_ms", "app p99 latency (ms)"),
    Metric("app_over_100ms", "app queries over 100 ms", 0, ratio=False),
    Metric("app_failed", "app queries failed", 0, ratio=False),
]
METRICS = [
    WALL,
    Metric("gone_ms", "ALTER waits -> all blockers gone (ms)"),
    Metric("signalled_ms", "ALTER waits -> first blocker signalled (ms)"),
    *APP_METRICS,
    Metric("all_gone", "all blockers gone", None, higher_is_worse=False),
    Metric("ended_by_bench", "blockers ended by the bench", 0, ratio=False),
]


def run_blocked(url: str, options: Options) -> ScenarioResult:
    result = ScenarioResult(
        name="blocked",
        title=(
            f"blocked: {benchapp.ROWS:,}-row table, 1 session idle in transaction on it, "
            f"app query every {options.period * 1000:g} ms on {options.pool} connections, "
            f"{options.blocked_runs} runs each"
        ),
        metrics=METRICS,
        targets=[
            Target("app worst stall", "app_worst_ms", 5),
            Target("ALTER waits -> blocker gone", "gone_ms", 5),
        ],
    )
    result.notes.append(
        "the app timeline of each implementation's first run (every app query's scheduled "
        "time and latency, ms, relative to the ALTER's waitstart) is in the JSON results: "
        'extra["timeline"]; python -m bench.plot draws it.'
    )
    _run(result, url, options, options.blocked_runs, blockers=1, idle=0, timeline=True)
    return result


def run_crowd(url: str, options: Options) -> ScenarioResult:
    count = options.crowd_blockers
    result = ScenarioResult(
        name="crowd",
        title=(
            f"crowd: as blocked, with {count} sessions idle in transaction on the table (for "
            f"{CROWD_STALE:g} s when migrate starts) and {options.crowd_idle} idle connections, "
            f"{options.crowd_runs} runs each"
        ),
        metrics=METRICS,
        targets=[
            Target("app worst stall", "app_worst_ms", 10),
            Target(
                f"all {count} blockers gone", "all_gone", 1, stat="worst", op=">=", unit="yes/no"
            ),
            Target("app queries failed", "app_failed", 0, stat="worst", unit=""),
        ],
    )
    _run(result, url, options, options.crowd_runs, blockers=count, idle=options.crowd_idle)
    return result


def _run(
    result: ScenarioResult,
    url: str,
    options: Options,
    runs: int,
    *,
    blockers: int,
    idle: int,
    timeline: bool = False,
) -> None:
    """``runs`` runs of each implementation; with ``timeline``, the app timeline of the first
    run of each goes to ``result.extra``: "timeline" (implementation -> [[t_ms, latency_ms],
    ...]) and "timeline_events" (implementation -> marks for the plot, in ms)."""
    result.notes.append(
        f"plain Django: the bench ends the blocking session(s) {options.baseline_wait:g} s after "
        "the ALTER starts waiting (the no-tool baseline); pgmigrate: its defaults."
    )
    benchapp.setup(url)
    with IdleCrowd(url, idle):
        for number in range(1, runs + 1):
            for implementation in ("pgmigrate", "plain"):
                keep = timeline and number == 1
                measured = measure(
                    url,
                    options,
                    implementation,
                    blockers=blockers,
                    timeline=keep,
                    stale=CROWD_STALE if blockers > 1 else 0.0,
                )
                keep_timeline(result, implementation, measured)
                result.runs.append({"group": implementation, "run": number, **measured})
                print(
                    f"  {result.name} {number}/{runs} {implementation:<9} "
                    f"stall {measured['app_worst_ms']:8.1f} ms, "
                    f"blockers gone {_ms(measured['gone_ms'])} after the ALTER waited",
                    file=sys.stderr,
                )


def keep_timeline(result: ScenarioResult, group: str, measured: dict) -> None:
    """Move a run's "timeline" (see ``app_timeline``), if any, to ``result.extra``: its
    points under "timeline", its moments under "timeline_events", by group."""
    kept = measured.pop("timeline", None)
    if kept is not None:
        result.extra.setdefault("timeline", {})[group] = kept.pop("points")
        result.extra.setdefault("timeline_events", {})[group] = kept


def _ms(value: float | None) -> str:
    return "   never" if value is None else f"{value:8.1f} ms"


def measure(
    url: str,
    options: Options,
    implementation: str,
    *,
    blockers: int,
    env: dict[str, str] | None = None,
    patience: float | None = None,
    timeline: bool = False,
    stale: float = 0.0,
) -> dict:
    """One run: blockers, app traffic, ``migrate benchapp 0002``; what it cost the app.

    The bench ends the blockers ``patience`` seconds after the ALTER first waits (by default
    the baseline wait for plain Django, and a long safety net for pgmigrate). With
    ``timeline``, the result has a "timeline" too (see ``app_timeline``); the app then runs
    ``TIMELINE_MARGIN`` seconds longer after ``migrate`` exits. ``migrate`` starts once the
    blockers have been in their transactions ``stale`` seconds."""
    benchapp.reset_to_0001(url)
    if patience is None:
        patience = options.baseline_wait if implementation == "plain" else PGMIGRATE_PATIENCE
    traffic = AppTraffic(
        url, table=benchapp.TABLE, rows=benchapp.ROWS, period=options.period, pool=options.pool
    )
    # Blockers close before the app stops: stuck app queries then finish, whatever happened.
    with traffic as app, Blockers(url, benchapp.TABLE, blockers) as held:
        held.wait_stale(stale)
        if timeline:  # steady traffic for the timeline's start, before migrate's own start
            time.sleep(TIMELINE_MARGIN)
        run = MigrateRun(implementation, ["benchapp", "0002_row_note"], url, env or {})
        monitor = LockWaitMonitor(url, benchapp.TABLE)
        migrate_ending_blockers(run, monitor, held, url, patience)
        app.drain(run.ended)
        held.wait_all_gone(5)
        app_numbers = measured_app(app, run, monitor.waitstart)
        if timeline:
            time.sleep(max(0.0, run.ended + TIMELINE_MARGIN - time.monotonic()))
            app.drain(run.ended + TIMELINE_MARGIN)
            app_numbers["timeline"] = app_timeline(
                app,
                run,
                monitor.waitstart,
                {
                    "bench_ended_blockers_ms": held.terminated_at,
                    "signalled_ms": min(held.signalled.values(), default=None),
                    "gone_ms": held.last_gone(),
                },
            )
    if not benchapp.has_note_column(url):
        raise RuntimeError(f"{implementation}: migrate exited but bench_row has no note column")
    waitstart = monitor.waitstart
    return {
        "wall_ms": run.wall * 1000,
        "waited": monitor.found.is_set(),
        "gone_ms": _since(waitstart, held.last_gone()),
        "signalled_ms": _since(waitstart, min(held.signalled.values(), default=None)),
        "monitor_lag_ms": _since(waitstart, monitor.seen),
        "all_gone": held.all_gone,
        "ended_by_bench": held.ended_by_bench,
        **app_numbers,
        "migrating_pid": monitor.pid,
        "blocker_pids": held.pids,
        "waitstart": waitstart,
        "signalled_at": sorted(held.signalled.values()),
        "gone_at": sorted(held.gone.values()),
        "output": run.output,
    }


def migrate_ending_blockers(
    run: MigrateRun, monitor: LockWaitMonitor, held: Blockers, url: str, patience: float
) -> None:
    """Run ``migrate``; end the blockers ``patience`` seconds after its ALTER starts to wait,
    unless it has finished by then."""
    run.start()
    monitor.start(run)
    try:
        monitor.finished.wait(120)
        if monitor.found.is_set() and not run.exited(patience):
            held.terminate(url)
        run.wait(300)
    finally:
        monitor.stop()
        run.kill()


def measured_app(app: AppTraffic, run: MigrateRun, waitstart: float | None) -> dict:
    """The app's latency while ``migrate`` ran, when its worst query was scheduled, and its
    worst before the ALTER waited (queries scheduled 5 ms or more before: the noise floor)."""
    to_wall = time.time() - time.monotonic()
    worst = app.worst(run.started, run.ended)
    before = None
    if waitstart is not None:
        before = app.stats(run.started, waitstart - to_wall - 0.005).worst * 1000
    return {
        **app.stats(run.started, run.ended).as_dict(),
        "app_worst_at_ms": _since(waitstart, worst.scheduled + to_wall if worst else None),
        "app_worst_before_wait_ms": before,
    }


def app_timeline(
    app: AppTraffic, run: MigrateRun, waitstart: float | None, marks: dict[str, float | None]
) -> dict | None:
    """Every app query scheduled from ``TIMELINE_MARGIN`` before the ALTER waited to as long
    after ``migrate`` exited: "points", [scheduled, latency] in ms, scheduled relative to the
    ALTER's ``waitstart`` (the clocks as in ``measured_app``); "failed", the scheduled times
    of failed queries; and the moments the plot marks, in ms after the ALTER waited: when
    ``migrate`` started and ended, and ``marks`` (name -> ``time.time()``, or None)."""
    if waitstart is None:
        return None
    to_wall = time.time() - time.monotonic()
    start = waitstart - to_wall - TIMELINE_MARGIN
    end = run.ended + TIMELINE_MARGIN
    window = sorted(
        (q for q in list(app.done) if start <= q.scheduled <= end), key=lambda q: q.scheduled
    )

    def since(monotonic: float) -> float:
        return round((monotonic + to_wall - waitstart) * 1000, 2)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return {
        "points": [[since(q.scheduled), round(q.latency * 1000, 3)] for q in window],
        "failed": [since(q.scheduled) for q in window if not q.ok],
        "period_ms": app.period * 1000,
        "migrate_started_ms": since(run.started),
        "migrate_ended_ms": since(run.ended),
        **{name: rounded(_since(waitstart, at)) for name, at in marks.items()},
    }


def _since(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start) * 1000
