"""Scenario "retries": a blocker pgmigrate must not end, bounded by lock-timeout retries.

As "blocked", but the session idle in transaction is protected (``PGMIGRATE_PROTECTED``), so
pgmigrate leaves it alone; the bench ends it after a fixed time. pgmigrate runs with a short
lock timeout and retries: each attempt makes the app queue behind the ALTER for at most the
lock timeout, and the migration succeeds once the blocker is gone. Plain Django waits (and
the app with it) until the bench ends the blocker.
"""

from __future__ import annotations

import sys

from bench.options import Options
from bench.report import Metric, ScenarioResult, Target
from bench.scenarios import benchapp, blocked
from bench.sessions import BLOCKER_APPLICATION_NAME

LOCK_TIMEOUT = 0.1
SETTINGS = {
    "BENCH_PGMIGRATE_PROTECTED_APP": BLOCKER_APPLICATION_NAME,
    "BENCH_PGMIGRATE_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
    "BENCH_PGMIGRATE_LOCK_RETRIES": "1000",
    "BENCH_PGMIGRATE_LOCK_RETRY_DELAY": "0.05",
    "BENCH_PGMIGRATE_LOCK_RETRY_MAX_DELAY": "0.4",
}

METRICS = [
    Metric("wall_ms", "migrate wall time (ms)", 0),
    Metric("app_worst_ms", "app worst stall (ms)"),
    Metric("app_p99_ms", "app p99 latency (ms)"),
    Metric("app_over_100ms", "app queries over 100 ms", 0, ratio=False),
    Metric("app_failed", "app queries failed", 0, ratio=False),
    Metric("attempts", "ALTER attempts", 0, ratio=False),
    Metric("applied", "migration applied", None, higher_is_worse=False),
]


def run(url: str, options: Options) -> ScenarioResult:
    hold = options.retries_hold
    result = ScenarioResult(
        name="retries",
        title=(
            f"retries: as blocked, but the blocker is protected and held {hold:g} s; pgmigrate "
            f"with PGMIGRATE_LOCK_TIMEOUT = {LOCK_TIMEOUT:g} s and retries, "
            f"{options.retries_runs} runs each"
        ),
        metrics=METRICS,
        targets=[
            Target("app worst stall", "app_worst_ms", 150),
            Target("migration applied", "applied", 1, stat="worst", op=">=", unit="yes/no"),
        ],
    )
    result.notes.append(
        f"both: the bench ends the blocker {hold:g} s after the ALTER first waits; pgmigrate "
        "leaves it alone (PGMIGRATE_PROTECTED) and retries every lock timeout (delay 0.05 s "
        "doubling to 0.4 s, with jitter)."
    )
    benchapp.setup(url)
    for number in range(1, options.retries_runs + 1):
        for implementation in ("pgmigrate", "plain"):
            env = SETTINGS if implementation == "pgmigrate" else {}
            measured = blocked.measure(
                url, options, implementation, blockers=1, env=env, patience=hold
            )
            output = measured.pop("output")
            measured["attempts"] = output.count("hit the lock timeout") + 1
            measured["applied"] = 1.0
            result.runs.append({"group": implementation, "run": number, **measured})
            print(
                f"  retries {number}/{options.retries_runs} {implementation:<9} "
                f"stall {measured['app_worst_ms']:8.1f} ms, {measured['attempts']} attempt(s), "
                f"migrate {measured['wall_ms']:6.0f} ms",
                file=sys.stderr,
            )
    return result
