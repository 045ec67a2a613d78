"""What realmig runs in a child process, with one mode's settings (``DJANGO_SETTINGS_MODULE``)
and database (``REALMIG_DATABASE_URL``):

- ``python -m realmig.child migrate ARGS...``: ``manage.py migrate ARGS...``, timed; the last
  line of stdout is ``REALMIG-ELAPSED <seconds> <peak RSS in KiB>``.
- ``python -m realmig.child plan``: JSON on stdout: the migration graph of the installed
  apps (see ``plan``).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

import django
from django.core.management import ManagementUtility

ELAPSED = "REALMIG-ELAPSED"

Key = tuple[str, str]


def migrate(args: list[str]) -> None:
    django.setup()
    started = time.perf_counter()
    ManagementUtility(["manage.py", "migrate", *args]).execute()
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"\n{ELAPSED} {elapsed:.6f} {peak}", flush=True)


def _irreversible(operation: Any) -> bool:
    """Whether ``operation`` (or one that a SeparateDatabaseAndState runs) is irreversible."""
    from django.db.migrations.operations import SeparateDatabaseAndState

    if isinstance(operation, SeparateDatabaseAndState):
        return any(_irreversible(inner) for inner in operation.database_operations)
    return not operation.reversible


def _zero_order(graph: Any, order: list[Key]) -> list[str]:
    """The apps, each before the apps its migrations depend on (dependents first); among
    apps free to go, the one migrated last first. Dependency cycles between apps (an app's
    later migration depending on an app that depends on its earlier one) are broken the
    same way: there ``migrate <app> zero`` also unapplies the other app's migrations."""
    last = {app: position for position, (app, _) in enumerate(order)}
    needs: dict[str, set[str]] = {app: set() for app in last}
    for key in order:
        needs[key[0]].update(parent[0] for parent in graph.node_map[key].parents)
    remaining = set(last)
    ordered: list[str] = []
    while remaining:
        free = [
            app
            for app in remaining
            if not any(app in needs[other] for other in remaining if other != app)
        ]
        chosen = max(free or remaining, key=last.__getitem__)
        ordered.append(chosen)
        remaining.remove(chosen)
    return ordered


def plan() -> dict[str, Any]:
    """The migration graph, for the orchestrator to plan ``migrate <app> zero`` steps with
    (``realmig.graph``): each migration's parents and, if any, its first irreversible
    operation; Django's forwards order; the apps in the order to take them to zero."""
    django.setup()
    from django.db.migrations.loader import MigrationLoader

    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    # Django's forwards plan for `migrate` (its targets are the leaf nodes).
    order: list[Key] = []
    for leaf in graph.leaf_nodes():
        order.extend(key for key in graph.forwards_plan(leaf) if key not in order)
    nodes = {}
    for key in order:
        irreversible = [
            f"operation {number}: {operation.describe()}"
            for number, operation in enumerate(graph.nodes[key].operations, 1)
            if _irreversible(operation)
        ]
        nodes[f"{key[0]}.{key[1]}"] = {
            "parents": sorted(f"{a}.{n}" for a, n in graph.node_map[key].parents),
            "irreversible": irreversible[0] if irreversible else "",
        }
    return {
        "order": [f"{a}.{n}" for a, n in order],
        "nodes": nodes,
        "zero_order": _zero_order(graph, order),
    }


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "migrate":
        migrate(args)
    elif command == "plan":
        print(json.dumps(plan()))
    else:
        raise SystemExit(f"realmig.child: unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
