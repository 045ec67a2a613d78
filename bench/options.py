"""How much the benchmark runs: the full defaults and the ``--quick`` smoke version."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    quick: bool = False
    blocked_runs: int = 7
    crowd_runs: int = 5
    overhead_runs: int = 9
    watcher_runs: int = 3
    #: Sessions idle in transaction on the table, and idle connections, in "crowd".
    crowd_blockers: int = 20
    crowd_idle: int = 200
    #: Idle connections open during "watcher cost".
    watcher_idle: int = 200
    #: How long plain Django's ALTER waits before the bench ends the blocker (seconds).
    baseline_wait: float = 5.0
    #: How long the blocker is held in the blocked runs of "watcher cost" (seconds).
    watcher_hold: float = 1.0
    overhead_migrations: int = 100
    #: "retries": runs, and how long the protected blocker is held (seconds).
    retries_runs: int = 5
    retries_hold: float = 2.0
    #: "aside" and "aside-show": runs, and how long the blocker is held (seconds).
    aside_runs: int = 5
    aside_hold: float = 2.0
    #: App traffic: one query every ``period`` seconds on ``pool`` connections.
    period: float = 0.005
    pool: int = 8

    @classmethod
    def quick_version(cls) -> Options:
        """A short run for CI smoke tests: well under a minute, numbers only indicative."""
        return cls(
            quick=True,
            blocked_runs=1,
            crowd_runs=1,
            overhead_runs=2,
            watcher_runs=1,
            crowd_blockers=5,
            crowd_idle=50,
            watcher_idle=50,
            baseline_wait=1.0,
            watcher_hold=0.5,
            retries_runs=1,
            retries_hold=0.5,
            aside_runs=1,
            aside_hold=0.5,
        )

    def with_runs(self, runs: int) -> Options:
        """The same options with every scenario run ``runs`` times per implementation."""
        return dataclasses.replace(
            self,
            blocked_runs=runs,
            crowd_runs=runs,
            overhead_runs=runs,
            watcher_runs=runs,
            retries_runs=runs,
            aside_runs=runs,
        )
