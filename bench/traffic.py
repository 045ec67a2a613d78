"""Open-loop app traffic: a query scheduled every few milliseconds, whatever happens.

A scheduler thread puts each query's scheduled time on a queue; a pool of worker threads,
one connection each, takes the next scheduled query as soon as it is free. Latency is counted
from the scheduled time, so time spent queued (all connections stuck behind a lock) counts.
"""

from __future__ import annotations

import contextlib
import math
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from bench.server import connect

#: App queries slower than this count as "slow" in the results.
SLOW = 0.100


@dataclass(frozen=True)
class Query:
    scheduled: float  # time.monotonic()
    ended: float
    ok: bool

    @property
    def latency(self) -> float:
        return self.ended - self.scheduled


@dataclass(frozen=True)
class TrafficStats:
    """App latency over a window of scheduled times."""

    queries: int
    failed: int
    slow: int
    worst: float
    p99: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "app_queries": self.queries,
            "app_failed": self.failed,
            "app_over_100ms": self.slow,
            "app_worst_ms": self.worst * 1000,
            "app_p99_ms": self.p99 * 1000,
        }


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (0.0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * fraction)) - 1]


class AppTraffic:
    """Reads ``table`` by random id every ``period`` seconds on ``pool`` connections."""

    def __init__(
        self, url: str, *, table: str, rows: int, period: float = 0.005, pool: int = 8
    ) -> None:
        self.url = url
        self.sql = f"SELECT id, value, payload FROM {table} WHERE id = %s"
        self.rows = rows
        self.period = period
        self.pool = pool
        self.done: list[Query] = []
        self._queue: queue.SimpleQueue[float | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._scheduled = 0
        self._first = 0.0
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> AppTraffic:
        connections = [connect(self.url, application_name="bench app") for _ in range(self.pool)]
        self._threads = [
            threading.Thread(target=self._work, args=(conn,), name=f"bench-app-{n}")
            for n, conn in enumerate(connections)
        ]
        self._threads.append(threading.Thread(target=self._schedule, name="bench-app-clock"))
        for thread in self._threads:
            thread.start()
        self.wait_for(lambda: len(self.done) >= 2 * self.pool, timeout=30)  # warm
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for _ in range(self.pool):
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(predicate, timeout)

    def drain(self, until: float, timeout: float = 60) -> None:
        """Wait until every query scheduled up to ``until`` has finished."""
        self.wait_for(
            lambda: sum(1 for q in self.done if q.scheduled <= until) >= self._count_until(until),
            timeout,
        )

    def _count_until(self, until: float) -> int:
        return min(self._scheduled, int((until - self._first) / self.period) + 1)

    def worst(self, start: float, end: float) -> Query | None:
        """The slowest query scheduled between ``start`` and ``end``."""
        window = [q for q in self.done if start <= q.scheduled <= end]
        return max(window, key=lambda q: q.latency, default=None)

    def stats(self, start: float, end: float) -> TrafficStats:
        """Latency of the queries scheduled between ``start`` and ``end``."""
        window = [q for q in self.done if start <= q.scheduled <= end]
        latencies = [q.latency for q in window]
        return TrafficStats(
            queries=len(window),
            failed=sum(1 for q in window if not q.ok),
            slow=sum(1 for latency in latencies if latency > SLOW),
            worst=max(latencies, default=0.0),
            p99=percentile(latencies, 0.99),
        )

    def _schedule(self) -> None:
        self._first = due = time.monotonic()
        while True:
            with self._idle:
                self._scheduled += 1
            self._queue.put(due)
            due += self.period
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return

    def _work(self, conn: psycopg.Connection) -> None:
        try:
            while (scheduled := self._queue.get()) is not None:
                if self._stop.is_set():
                    continue
                ok = True
                try:
                    conn.execute(self.sql, (random.randint(1, self.rows),), prepare=True)
                except psycopg.Error:
                    ok = False
                    if conn.broken:
                        conn.close()
                        conn = connect(self.url, application_name="bench app")
                query = Query(scheduled, time.monotonic(), ok)
                with self._idle:
                    self.done.append(query)
                    self._idle.notify_all()
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.close()
