"""The scenarios, by name: each is ``run(url, options) -> ScenarioResult``.

``DEFAULT`` runs without ``--scenario``; "profile" is a diagnostic to ask for.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.options import Options
from bench.report import ScenarioResult
from bench.scenarios import aside, blocked, overhead, profile, retries, watcher_cost

Scenario = Callable[[str, Options], ScenarioResult]

SCENARIOS: dict[str, Scenario] = {
    "blocked": blocked.run_blocked,
    "crowd": blocked.run_crowd,
    "overhead": overhead.run,
    "watcher-cost": watcher_cost.run,
    "retries": retries.run,
    "aside": aside.run_aside,
    "aside-show": aside.run_aside_show,
    "profile": profile.run,
}
DEFAULT = ["blocked", "crowd", "aside", "aside-show", "retries", "overhead", "watcher-cost"]
