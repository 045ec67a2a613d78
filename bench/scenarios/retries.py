"""Scenario "retries": a blocker pgmigrate must not end, with a short lock timeout and retries.

As "aside" (a protected blocker that the bench rolls back after a fixed time), with
``PGMIGRATE_LOCK_TIMEOUT`` 0.1 s and retries. Three groups, run by run:

- pgmigrate: its defaults besides, so it steps out of the lock queue; each attempt waits out
  of the queue until the lock timeout, then the next one starts after the retry delay;
- lock-timeout retries: ``PGMIGRATE_STEP_ASIDE = False``, what peer tools do (and
  pgmigrate did before): each attempt waits in the queue, and the app's queries queue
  behind it, for up to the lock timeout;
- plain: Django's ``migrate`` waits (and the app with it) until the blocker is gone.
"""

from __future__ import annotations

from bench.options import Options
from bench.report import Metric, ScenarioResult, Target
from bench.scenarios import aside

LOCK_TIMEOUT = 0.1
SETTINGS = {
    **aside.PROTECTED,
    "BENCH_PGMIGRATE_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
    "BENCH_PGMIGRATE_LOCK_RETRIES": "1000",
    "BENCH_PGMIGRATE_LOCK_RETRY_DELAY": "0.05",
    "BENCH_PGMIGRATE_LOCK_RETRY_MAX_DELAY": "0.4",
}
#: The group of the lock-timeout-and-retry baseline (``bench.plot`` draws it).
RETRIES = "lock-timeout retries"

METRICS = [
    *aside.METRICS,
    Metric("attempts", "attempts (lock timeouts + 1)", 0, ratio=False),
]


def run(url: str, options: Options) -> ScenarioResult:
    def attempts(case: aside.Group, measured: dict) -> None:
        measured["attempts"] = measured["output"].count("hit the lock timeout (attempt") + 1

    return aside.held_scenario(
        url,
        options,
        name="retries",
        title=(
            f"as aside (a protected blocker), with PGMIGRATE_LOCK_TIMEOUT = {LOCK_TIMEOUT:g} s "
            "and retries (delay 0.05 s doubling to 0.4 s, with jitter)"
        ),
        settings=SETTINGS,
        what="pgmigrate leaves it alone (protected) and retries at each lock timeout",
        targets=[Target("app worst stall", "app_worst_ms", 10)],
        metrics=METRICS,
        runs=options.retries_runs,
        hold=options.retries_hold,
        queue=RETRIES,
        queue_is="what peer tools do",
        keep=attempts,
    )
