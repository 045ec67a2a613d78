"""Results: what a scenario measured, its summary table, the targets, the JSON file."""

from __future__ import annotations

import datetime as dt
import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
COMPARED = ("pgmigrate", "plain")


@dataclass(frozen=True)
class Metric:
    """A number each run reports under ``key``; higher is worse unless ``higher_is_worse``
    is False. ``digits`` None prints yes/no (for booleans)."""

    key: str
    label: str
    digits: int | None = 1
    higher_is_worse: bool = True
    #: False when a worst case (or a ratio) means nothing, e.g. for a point in time.
    worst: bool = True
    ratio: bool = True

    def format(self, value: float | None) -> str:
        if value is None:
            return "-"
        if self.digits is None:
            return "yes" if value else "no"
        return f"{value:,.{self.digits}f}"


@dataclass(frozen=True)
class Target:
    """``stat`` (median or worst) of ``key`` for ``group`` compared (``op``) with ``limit``.

    ``key`` "ratio:<metric>" means median(pgmigrate) / median(plain) of that metric. A
    ``unit`` of "yes/no" prints booleans.
    """

    label: str
    key: str
    limit: float
    group: str = "pgmigrate"
    stat: str = "median"
    op: str = "<="
    unit: str = "ms"

    def format(self, value: float | None) -> str:
        if value is None:
            return "-"
        if self.unit == "yes/no":
            return "yes" if value else "no"
        if self.unit == "ms":
            return f"{value:,.1f} ms"
        return f"{value:,.3g} {self.unit}".rstrip()

    def wanted(self) -> str:
        return f"{self.op} {self.format(self.limit)}"


@dataclass
class ScenarioResult:
    name: str
    title: str
    metrics: list[Metric]
    #: One dict per run: "group" (implementation or case), "run" (1-based) and metric values.
    runs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    #: "compare": metrics as rows, median and worst per group; "cases": groups as rows.
    layout: str = "compare"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(run["group"] for run in self.runs))

    def values(self, group: str, key: str) -> list[float]:
        return [
            float(run[key])
            for run in self.runs
            if run["group"] == group and run.get(key) is not None
        ]

    def median(self, group: str, key: str) -> float | None:
        values = self.values(group, key)
        return statistics.median(values) if values else None

    def worst(self, group: str, metric: Metric) -> float | None:
        values = self.values(group, metric.key)
        if not values or not metric.worst:
            return None
        return max(values) if metric.higher_is_worse else min(values)

    def ratio(self, key: str) -> float | None:
        top, bottom = (self.median(group, key) for group in COMPARED)
        if top is None or not bottom:
            return None
        return top / bottom

    def target_value(self, target: Target) -> float | None:
        if target.key.startswith("ratio:"):
            return self.ratio(target.key.removeprefix("ratio:"))
        if target.stat == "median":
            return self.median(target.group, target.key)
        metric = next(m for m in self.metrics if m.key == target.key)
        return self.worst(target.group, metric)


OPERATORS = {
    "<": lambda value, limit: value < limit,
    "<=": lambda value, limit: value <= limit,
    ">=": lambda value, limit: value >= limit,
}


def passed(target: Target, value: float | None) -> bool:
    return value is not None and OPERATORS[target.op](value, target.limit)


def table(result: ScenarioResult) -> str:
    """The scenario's summary as aligned text."""
    if result.layout == "cases":
        header = ["case", *(metric.label for metric in result.metrics)]
        rows = [
            [
                group,
                *(metric.format(result.median(group, metric.key)) for metric in result.metrics),
            ]
            for group in result.groups
        ]
    else:
        groups = result.groups
        compared = all(group in groups for group in COMPARED)
        header = ["metric"]
        for group in groups:
            header += [f"{group} median", "worst"]
        if compared:
            header.append("ratio")
        rows = []
        for metric in result.metrics:
            row = [metric.label]
            for group in groups:
                row += [
                    metric.format(result.median(group, metric.key)),
                    metric.format(result.worst(group, metric)),
                ]
            if compared:
                wanted = metric.ratio and metric.worst and metric.digits is not None
                ratio = result.ratio(metric.key) if wanted else None
                row.append("-" if ratio is None else f"{ratio:.3g}")
            rows.append(row)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first, *rest = cells
        return (
            "  "
            + first.ljust(widths[0])
            + "".join(
                "  " + cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True)
            )
        )

    return "\n".join([line(header), *(line(row) for row in rows)])


def target_lines(results: list[ScenarioResult]) -> tuple[list[str], int]:
    """One line per target (measured value, limit, PASS/MISS) and the number missed."""
    lines, missed = [], 0
    for result in results:
        for target in result.targets:
            value = result.target_value(target)
            ok = passed(target, value)
            missed += not ok
            stat = "ratio of medians" if target.key.startswith("ratio:") else target.stat
            lines.append(
                f"  {'PASS' if ok else 'MISS'}  {result.name:<13} {target.label:<46} "
                f"{stat:>16} {target.format(value):>12}  (target {target.wanted()})"
            )
    return lines, missed


def write_json(meta: dict[str, Any], results: list[ScenarioResult]) -> Path:
    """Write everything measured to ``bench/results/<timestamp>.json``; return its path."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"{stamp}.json"
    document = {
        "meta": meta,
        "scenarios": [
            {
                **asdict(result),
                "summary": {
                    group: {
                        metric.key: {
                            "median": result.median(group, metric.key),
                            "worst": result.worst(group, metric),
                        }
                        for metric in result.metrics
                    }
                    for group in result.groups
                },
                "target_results": [
                    {
                        **asdict(target),
                        "value": result.target_value(target),
                        "passed": passed(target, result.target_value(target)),
                    }
                    for target in result.targets
                ],
            }
            for result in results
        ],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
