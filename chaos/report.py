"""What ``python -m chaos`` prints and writes: trial lines, the summary, JSON, failures."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from chaos.trial import Trial


def _status(status: int | None) -> str:
    return "hung" if status is None else str(status)


def trial_line(trial: Trial, total: int) -> str:
    if trial.at is not None:
        when = f"{trial.at:5.2f}s"
    elif timeout := re.search(r"(\d+) ms", trial.fault if not trial.moment else ""):
        when = f"{timeout[1]:>4}ms"
    else:
        when = "  late"
    verdict = "recovered" if trial.recovered else f"NOT RECOVERED: {trial.reasons[0]}"
    return (
        f"{trial.number:>4}/{total} {trial.kind:<17} {when} {trial.landed:<40.40} "
        f"first {_status(trial.first_status):>4}  re-run {_status(trial.rerun_status):>4}  "
        f"{trial.seconds:4.1f}s  {verdict}  [{trial.fault}]"
    )


def summary(trials: list[Trial], kinds: list[str]) -> str:
    header = ("fault", "trials", "in a migration", "interrupted", "recovered", "not recovered")
    rows = []
    for kind in [*kinds, "total"]:
        group = [t for t in trials if kind in (t.kind, "total")]
        recovered = sum(t.recovered for t in group)
        landed = sum(t.in_migration for t in group)
        interrupted = sum(t.interrupted for t in group)
        rows.append((kind, len(group), landed, interrupted, recovered, len(group) - recovered))
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for index, row in enumerate([header, *rows]):
        if index == len(rows):  # before "total"
            lines.append("-" * (sum(widths) + 2 * len(widths)))
        cells = [str(cell).rjust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join([str(row[0]).ljust(widths[0]), *cells[1:]]))
    return "\n".join(lines)


def failures(trials: list[Trial]) -> str:
    """Each failed trial with all its reasons, then the first reasons counted."""
    failed = [t for t in trials if not t.recovered]
    lines = []
    for trial in failed:
        lines.append(f"  #{trial.number} {trial.kind} ({trial.fault}), {trial.landed}:")
        lines.extend(f"      {reason}" for reason in trial.reasons)
    groups: dict[str, list[Trial]] = {}
    for trial in failed:
        groups.setdefault(trial.reasons[0][:140], []).append(trial)
    if groups:
        lines.append("\n  by first reason (faults; where they landed):")
    for reason, group in sorted(groups.items(), key=lambda item: -len(item[1])):
        kinds = Counter(t.kind for t in group)
        places = Counter(t.landed for t in group)
        lines.append(f"    {len(group):>3} x {reason}")
        lines.append(f"          {_counted(kinds)}; {_counted(places)}")
    return "\n".join(lines)


def _counted(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counter.most_common())


def as_dict(trial: Trial, *, outputs: bool) -> dict[str, Any]:
    data = dataclasses.asdict(trial)
    data["interrupted"] = trial.interrupted
    if not outputs:
        for key in ("first_output", "rerun_output", "details"):
            data.pop(key)
    return data


def write_json(path: Path, meta: dict[str, Any], trials: list[Trial]) -> None:
    results = [as_dict(t, outputs=not t.recovered) for t in trials]
    path.write_text(json.dumps({**meta, "trials": results}, indent=2) + "\n")


def keep_failure(directory: Path, trial: Trial, seed: int, repeat: str) -> Path:
    """Write a failed trial's outputs, fault, reasons and differences under ``directory``."""
    folder = directory / f"trial-{trial.number:03d}-{trial.kind}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "first-run.txt").write_text(trial.first_output)
    (folder / "rerun.txt").write_text(trial.rerun_output)
    (folder / "diff.txt").write_text(trial.details + "\n")
    record = {**as_dict(trial, outputs=False), "seed": seed, "repeat": repeat}
    (folder / "trial.json").write_text(json.dumps(record, indent=2) + "\n")
    return folder
