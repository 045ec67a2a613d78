"""Scenario "watcher cost": the server time of pgmigrate's watcher queries.

Measured with ``pg_stat_statements`` (planning plus execution time) on a server that has it
preloaded (see ``bench.server.stats_server``), with many idle connections open, while
pgmigrate's ``migrate`` runs: a 2 s statement and the "overhead" migrations (unblocked), and
a migration blocked for a while by a session it does not end (the action ``Show`` or
``None``, or a protected session), so that it steps out of the lock queue and waits out of
it, which is measured on its own too ("aside": the watcher's looks at the sessions it waits
for, in ``pg_stat_activity`` and ``pg_locks``, per second out of the queue; pgmigrate's
summary, "stepped out of the lock queue N time(s) for X s", gives the time out of it). The
``migrate`` child runs as the role ``bench_migrate`` (``-c role=...``), so that its
statements and its watcher's are told apart from the bench's own by ``userid``; the
watcher's are those reading ``pg_stat_activity``, ``pg_locks`` or ``pg_blocking_pids``, or
signalling backends.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

from bench import server
from bench.migrate import MigrateRun
from bench.options import Options
from bench.report import Metric, ScenarioResult, Target
from bench.scenarios import aside, benchapp, overhead
from bench.sessions import HeldSession, LockWaitMonitor

ROLE = "bench_migrate"
#: The cases (result groups); for the blocked ones, pgmigrate's settings.
BLOCKED = {
    "blocked, Show": {"BENCH_PGMIGRATE_ACTION": "pgmigrate.Show"},
    "blocked, None": {"BENCH_PGMIGRATE_ACTION": ""},
    "blocked, protected": aside.PROTECTED,
}
PROTECTED = "blocked, protected"
LONG, OVERHEAD = "long statement", "overhead"
#: A run with nothing to watch (one quick migration): what the watcher costs once per run
#: (connecting, preparing and warming up its statements), taken off the others' figures.
SETUP = "set-up only"

METRICS = [
    Metric("watched_s", "watched s", 2),
    Metric("watcher_ms", "server ms", 2),
    Metric("pct_core", "% of a core", 3),
    Metric("watching_pct_core", "% core watching", 3),
    Metric("queries_per_s", "queries/s", 1),
    Metric("light_checks", "light checks", 0),
    Metric("lock_graph", "lock-graph q.", 0),
    Metric("watching_lock_graph", "l.-g. q. watching", 0),
    Metric("actions", "action q.", 0),
    Metric("light_check_ms", "ms/light check", 3),
    Metric("lock_graph_ms", "ms/lock-graph q.", 3),
    Metric("aside_s", "aside s", 2),
    Metric("aside_queries", "aside q.", 0),
    Metric("aside_pct_core", "aside % core", 3),
]


@dataclass
class Kind:
    calls: int = 0
    ms: float = 0.0
    #: (calls, plan ms, exec ms, query) of each statement of this kind.
    statements: list[tuple[int, float, float, str]] = field(default_factory=list)


#: The kinds of pgmigrate's prepared statements (``pgmigrate.prepared``), by name.
PREPARED_KINDS = {
    "look": "light",
    "look_and_graph": "light",
    "lock_graph": "lock_graph",
    "graph_and_sessions": "lock_graph",
    "still_blocking": "aside",
    "same_transactions": "aside",
    "cancel_own": "action",
    "pg_terminate_backend_checked": "action",
    "pg_terminate_backend_unchecked": "action",
    "pg_cancel_backend_checked": "action",
    "pg_cancel_backend_unchecked": "action",
}


def classify(query: str) -> str | None:
    """The watcher's kind of statement ("light", "lock_graph", "action", "aside": a look at
    the sessions it waits for out of the lock queue), or None. By the text of pgmigrate's
    statements (``pgmigrate.watcher``: ``STILL_BLOCKING``, ``SAME_TRANSACTIONS``, ``LOOK``...),
    as ``pg_stat_statements`` shows them."""
    text = query.lower()
    named = re.search(r"\bpgmigrate_(\w+)\(", text)  # EXECUTE of a prepared statement
    if named:
        return PREPARED_KINDS.get(named.group(1))
    if ("pg_locks" in text and "virtualtransaction = any" in text) or "seen.xact_start" in text:
        return "aside"
    if "case when wait_event_type" in text:  # asks pg_blocking_pids only while it waits
        return "light"
    if "pg_locks" in text or "pg_blocking_pids" in text:
        return "lock_graph"
    if "_backend(" in text or "usename" in text:  # pg_terminate/cancel, Show's details
        return "action"
    if "pg_stat_activity" in text or "pg_stat_get_activity" in text:
        return "light"
    return None


def watcher_statements(url: str) -> dict[str, Kind]:
    """Calls and server time of the watcher's statements since the last reset."""
    kinds = {"light": Kind(), "lock_graph": Kind(), "action": Kind(), "aside": Kind()}
    rows = server.execute(
        url,
        "SELECT query, calls, total_plan_time, total_exec_time FROM pg_stat_statements"
        " WHERE userid = %s::regrole AND dbid = (SELECT oid FROM pg_database"
        " WHERE datname = current_database())",
        [ROLE],
    )
    for query, calls, plan_ms, exec_ms in rows:
        kind = classify(query)
        if kind is not None:
            kinds[kind].calls += calls
            kinds[kind].ms += plan_ms + exec_ms
            kinds[kind].statements.append((calls, plan_ms, exec_ms, " ".join(query.split())))
    return kinds


def prepare(url: str) -> None:
    """Set up ``pg_stat_statements``, the role the child runs as, and the table."""
    server.execute(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    server.execute(
        url,
        f"DO $$ BEGIN IF to_regrole('{ROLE}') IS NULL THEN"
        f" CREATE ROLE {ROLE} SUPERUSER NOLOGIN; END IF; END $$",
    )
    benchapp.setup(url)


def _measure(
    url: str, case: str, args: list[str], env: dict[str, str], *, hold: float | None = None
) -> dict[str, Any]:
    """Run pgmigrate's ``migrate *args`` and sum up its watcher's statements."""
    env = {**env, "BENCH_DB_ROLE": ROLE}
    server.execute(url, "SELECT pg_stat_statements_reset()")
    run = MigrateRun("pgmigrate", args, url, env)
    if hold is None:
        run.start().wait(300)
        ended_by_bench = 0
    else:
        with HeldSession(url, benchapp.TABLE) as session:
            aside.run_holding(run, LockWaitMonitor(url, benchapp.TABLE), session, hold)
        ended_by_bench = int(session.released_at is not None)
    kinds = watcher_statements(url)
    started = run.wait_for_line("pgmigrate: migrating with", timeout=0)
    watched = run.ended - (started if started is not None else run.started)
    total_ms = sum(kind.ms for kind in kinds.values())
    total_calls = sum(kind.calls for kind in kinds.values())
    light, graph, out = kinds["light"], kinds["lock_graph"], kinds["aside"]
    summary = aside.SUMMARY.search(run.output)
    aside_s = float(summary.group(2)) if summary else None
    return {
        "group": case,
        "wall_ms": run.wall * 1000,
        "watched_s": watched,
        "watcher_ms": total_ms,
        "pct_core": total_ms / watched / 10,
        "queries_per_s": total_calls / watched,
        "light_checks": light.calls,
        "lock_graph": graph.calls,
        "actions": kinds["action"].calls,
        "light_check_ms": light.ms / light.calls if light.calls else None,
        "lock_graph_ms": graph.ms / graph.calls if graph.calls else None,
        "aside_s": aside_s,
        "aside_queries": out.calls,
        "aside_ms": out.ms,
        "aside_pct_core": out.ms / aside_s / 10 if aside_s else None,
        "ended_by_bench": ended_by_bench,
        "statements": {name: kind.statements for name, kind in kinds.items()},
        "output": run.output,
    }


def run(main_url: str, options: Options) -> ScenarioResult:
    count = options.overhead_migrations
    result = ScenarioResult(
        name="watcher-cost",
        title=(
            f"watcher cost: pgmigrate's watcher queries (server time, pg_stat_statements) "
            f"with {options.watcher_idle} idle connections, {options.watcher_runs} runs each"
        ),
        metrics=METRICS,
        layout="cases",
        notes=[
            f"{LONG}: migration 0003, RunSQL pg_sleep(2), unblocked; overhead: the "
            f"{count + 1} migrations of the overhead scenario, unblocked.",
            f"blocked: ALTER blocked by a session idle in transaction that pgmigrate does not "
            f"end (action Show, None, or protected), which the bench rolls back "
            f"{options.watcher_hold:g} s after the ALTER starts waiting; pgmigrate steps out "
            "of the lock queue meanwhile.",
            '"watched s": from "pgmigrate: migrating with PostgreSQL backend pid" to exit; '
            '% of a core = server ms per watched second / 10; "watching": net of the '
            f"{SETUP} run's (connecting, preparing and warming up the watcher's statements, "
            "once per run); aside: the watcher's looks at "
            "the sessions it waits for out of the lock queue, per second out of it (pgmigrate's "
            "summary).",
        ],
        targets=_targets(),
    )
    with server.stats_server(main_url) as url, server.IdleCrowd(url, options.watcher_idle):
        which = "the main server" if url == main_url else "a dedicated embedded server"
        version = server.execute(url, "SHOW server_version")[0][0]
        result.notes.append(f"measured on {which} (PostgreSQL {version}) with pg_stat_statements")
        prepare(url)
        with overhead.generated_app(count) as app_env:
            for number in range(1, options.watcher_runs + 1):
                benchapp.reset_to_0001(url)
                setup = _measure(url, SETUP, ["benchapp", "0002_row_note"], {})
                _record(result, number, options, setup, setup)
                for case, env in BLOCKED.items():
                    benchapp.reset_to_0001(url)
                    args = ["benchapp", "0002_row_note"]
                    measured = _measure(url, case, args, env, hold=options.watcher_hold)
                    _record(result, number, options, measured, setup)
                benchapp.forget(url, "benchapp", after="0002_row_note")
                measured = _measure(url, LONG, ["benchapp", "0003"], {})
                _record(result, number, options, measured, setup)
                overhead.reset(url)
                measured = _measure(url, OVERHEAD, [overhead.APP], app_env)
                _record(result, number, options, measured, setup)
            overhead.reset(url)
    return result


def _targets() -> list[Target]:
    """While a statement runs unblocked, at most 0.2 % of a core and no lock-graph query
    (beyond the set-up's, once per run). The blocked cases and the time out of the lock
    queue are reported, without a target of the issue's."""
    costs = [
        Target(
            f"watcher server time while watching, {case}",
            "watching_pct_core",
            0.2,
            group=case,
            unit="% core",
        )
        for case in (LONG, OVERHEAD)
    ]
    quiet = [
        Target(
            f"lock-graph queries while unblocked, {case}",
            "watching_lock_graph",
            0,
            group=case,
            stat="worst",
            unit="",
        )
        for case in (LONG, OVERHEAD)
    ]
    return costs + quiet


def _record(
    result: ScenarioResult, number: int, options: Options, measured: dict, setup: dict
) -> None:
    """Keep ``measured``, with its figures net of the run's ``setup`` (``SETUP``)."""
    net_ms = max(0.0, measured["watcher_ms"] - setup["watcher_ms"])
    measured["watching_pct_core"] = net_ms / measured["watched_s"] / 10
    measured["watching_lock_graph"] = max(0, measured["lock_graph"] - setup["lock_graph"])
    result.runs.append({"run": number, **measured})
    print(
        f"  watcher-cost {number}/{options.watcher_runs} {measured['group']:<18} "
        f"{measured['watcher_ms']:7.2f} server ms in {measured['watched_s']:5.2f} s "
        f"({measured['pct_core']:.3f} % of a core), lock-graph queries {measured['lock_graph']}"
        + (
            f", out of the queue {measured['aside_s']:.2f} s: {measured['aside_ms']:.2f} ms "
            f"({measured['aside_pct_core']:.3f} % of a core)"
            if measured["aside_s"]
            else ""
        ),
        file=sys.stderr,
    )
