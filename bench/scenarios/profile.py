"""Scenario "profile" (diagnostic, not run by default): where pgmigrate's milliseconds go.

Runs pgmigrate as in "blocked" (1 blocker) and "crowd" (many blockers and idle connections)
on the ``pg_stat_statements`` server, with ``bench.tracer`` timestamping every statement of
the ``migrate`` child. From the ALTER's ``waitstart`` to the last blocker's socket closing:

  first look    waitstart -> the watcher's first statement during the ALTER starts
  checks        light checks (client round trips, incl. the gaps between them) until the
                one that saw the wait ended
  lock graph    that check's end -> the terminate statement starts (lock-graph queries and
                the Python around them; the first look at a statement reads the lock graph
                along, which then counts in "checks")
  terminate     the first terminate statement starts -> the last one returned (where the
                first look's statement ended the blockers, ``watcher.FIRST_END``, that
                statement: "lock graph" is then 0)
  exit          terminate returned -> the last blocker's socket closed (backend exit)

("n": how many light checks, lock-graph queries, terminate statements.)

Server-side costs per statement (planning + execution) come from ``pg_stat_statements``.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import server
from bench.options import Options
from bench.report import Metric, ScenarioResult
from bench.scenarios import blocked, watcher_cost

WATCHER_THREAD = "pgmigrate-watcher"

METRICS = [
    Metric("first_look_ms", "first look"),
    Metric("checks", "n", 0),
    Metric("checks_ms", "checks"),
    Metric("lock_graph_queries", "n", 0),
    Metric("lock_graph_ms", "lock graph"),
    Metric("signals", "n", 0),
    Metric("terminate_ms", "terminate"),
    Metric("exit_ms", "exit"),
    Metric("gone_ms", "= gone"),
    Metric("app_worst_ms", "app stall"),
    Metric("server_check_ms", "srv/check", 3),
    Metric("server_graph_ms", "srv/graph q.", 3),
]


def _kind(sql: str) -> str:
    text = sql.lower()
    if "_backend(" in text or "execute pgmigrate_pg_terminate_backend" in text:
        return "terminate"
    if "execute pgmigrate_look_and_graph(" in text:
        return "first_look"  # a light check that may end the blockers (FIRST_END)
    return watcher_cost.classify(sql) or "other"


def phases(trace: list[list[Any]], measured: dict[str, Any]) -> dict[str, float | None]:
    """Split the time from the ALTER's wait to the last blocker gone into phases (ms)."""
    waitstart = measured["waitstart"]
    alter = next((s for s in trace if s[3].lstrip().upper().startswith("ALTER TABLE")), None)
    if waitstart is None or alter is None or not measured["gone_at"]:
        return {}
    watcher = [
        (start, end, _kind(sql))
        for thread, start, end, sql in trace
        if thread.startswith(WATCHER_THREAD) and start >= alter[1]
    ]
    signals = _first_run_of(watcher, "terminate")
    if not signals:  # the first look's statement ended them
        signals = [s for s in watcher if s[2] == "first_look"][:1]
    if not signals:
        return {}
    before = [s for s in watcher if s[0] < signals[0][0]]
    first_graph = next((s for s in before if s[2] == "lock_graph"), None)
    checks = [
        s
        for s in before
        if s[2] in ("light", "first_look") and (first_graph is None or s[1] <= first_graph[0])
    ]
    if checks:
        seen = checks[-1][1]
    elif first_graph is not None:
        seen = first_graph[0]
    elif signals[0][2] == "first_look":
        seen = signals[0][0]  # it saw the wait and ended them
    else:
        return {}
    return {
        "first_look_ms": (watcher[0][0] - waitstart) * 1000,
        "checks": len(checks),
        "checks_ms": (seen - watcher[0][0]) * 1000,
        "lock_graph_queries": sum(
            1 for s in watcher if s[2] == "lock_graph" and s[0] < signals[0][0]
        ),
        "lock_graph_ms": (signals[0][0] - seen) * 1000,
        "signals": len(signals),
        "terminate_ms": (signals[-1][1] - signals[0][0]) * 1000,
        "exit_ms": (measured["gone_at"][-1] - signals[-1][1]) * 1000,
    }


def _first_run_of(statements: list[tuple[float, float, str]], kind: str) -> list:
    """The first consecutive statements of ``kind`` (one action's signals)."""
    found: list = []
    for statement in statements:
        if statement[2] == kind:
            found.append(statement)
        elif found:
            break
    return found


def run(main_url: str, options: Options) -> ScenarioResult:
    runs = options.blocked_runs
    crowd = f"{options.crowd_blockers} blockers, {options.crowd_idle} idle"
    result = ScenarioResult(
        name="profile",
        title=f"profile: pgmigrate from the ALTER's wait to the blockers gone (ms), {runs} runs",
        metrics=METRICS,
        layout="cases",
        notes=[
            "phases (client clock, medians): first look + checks + lock graph + terminate + "
            "exit = gone; srv/...: server ms per statement (pg_stat_statements).",
        ],
    )
    cases = [("1 blocker", 1, 0), (crowd, options.crowd_blockers, options.crowd_idle)]
    with server.stats_server(main_url) as url:
        watcher_cost.prepare(url)
        for case, blockers, idle in cases:
            with server.IdleCrowd(url, idle):
                for number in range(1, runs + 1):
                    measured = _measure(url, options, blockers)
                    result.runs.append({"group": case, "run": number, **measured})
                    print(
                        f"  profile {case} {number}/{runs}: "
                        + ", ".join(
                            f"{key.removesuffix('_ms')} {_fmt(measured.get(key))}"
                            for key in (
                                "first_look_ms",
                                "checks_ms",
                                "lock_graph_ms",
                                "terminate_ms",
                                "exit_ms",
                                "gone_ms",
                            )
                        ),
                        file=sys.stderr,
                    )
    for case, _, _ in cases:
        gone = [r["gone_ms"] for r in result.runs if r["group"] == case and r["gone_ms"]]
        result.extra[f"median gone, {case}"] = statistics.median(gone) if gone else None
    return result


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _measure(url: str, options: Options, blockers: int) -> dict[str, Any]:
    server.execute(url, "SELECT pg_stat_statements_reset()")
    with tempfile.TemporaryDirectory(prefix="pgmigrate-bench-trace-") as directory:
        trace_file = Path(directory) / "trace.json"
        env = {"BENCH_DB_ROLE": watcher_cost.ROLE, "BENCH_TRACE_FILE": str(trace_file)}
        stale = blocked.CROWD_STALE if blockers > 1 else 0.0
        measured = blocked.measure(
            url, options, "pgmigrate", blockers=blockers, env=env, stale=stale
        )
        trace = json.loads(trace_file.read_text())
    kinds = watcher_cost.watcher_statements(url)
    light, graph = kinds["light"], kinds["lock_graph"]
    return {
        **measured,
        **phases(trace, measured),
        "server_check_ms": light.ms / light.calls if light.calls else None,
        "server_graph_ms": graph.ms / graph.calls if graph.calls else None,
        "watcher_statements": [
            [
                round((start - measured["waitstart"]) * 1000, 3),
                round((end - start) * 1000, 3),
                _kind(sql),
            ]
            for thread, start, end, sql in trace
            if thread.startswith(WATCHER_THREAD) and measured["waitstart"]
        ],
    }
