"""The migration graph as ``realmig.child plan`` describes it, and what ``migrate <app> zero``
unapplies from a given set of applied migrations (as Django's ``migration_plan`` does: the
app's root migrations and every migration that depends on them, of any app)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Graph:
    #: "app.name" in Django's forwards order for ``migrate``.
    order: list[str]
    #: "app.name" -> the migrations it depends on.
    parents: dict[str, list[str]]
    #: "app.name" -> its first irreversible operation ("" if none).
    irreversible: dict[str, str]
    #: The apps, dependents before the apps they depend on.
    zero_order: list[str]

    @classmethod
    def from_plan(cls, plan: dict[str, Any]) -> Graph:
        nodes = plan["nodes"]
        return cls(
            order=list(plan["order"]),
            parents={key: list(node["parents"]) for key, node in nodes.items()},
            irreversible={key: str(node["irreversible"]) for key, node in nodes.items()},
            zero_order=list(plan["zero_order"]),
        )

    @property
    def apps(self) -> list[str]:
        return sorted({key.split(".", 1)[0] for key in self.order})

    def unapplies(self, app: str, applied: set[str]) -> list[str]:
        """The applied migrations ``migrate <app> zero`` unapplies, in forwards order."""
        children: dict[str, list[str]] = {}
        for key, parents in self.parents.items():
            for parent in parents:
                children.setdefault(parent, []).append(key)
        roots = [
            key
            for key in self.order
            if key.split(".", 1)[0] == app
            and not any(parent.split(".", 1)[0] == app for parent in self.parents[key])
        ]
        found: set[str] = set()
        todo = list(roots)
        while todo:
            key = todo.pop()
            if key not in found:
                found.add(key)
                todo.extend(children.get(key, []))
        return [key for key in self.order if key in found and key in applied]
