"""Compare the modes' outcomes test by test, and print the summary.

A regression is a test that passes without pgmigrate (ok, skipped or expected failure) and,
with pgmigrate, fails, errors, succeeds unexpectedly or does not run at all; or an error
that only the pgmigrate run has (a class or module that fails to set up). Tests that fail
without pgmigrate too are reported, not counted as regressions.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django_suite.expected import EXPECTED, Expected

PASSING = ("ok", "skipped", "expected_failure")
FAILING = ("error", "failure", "unexpected_success")
NOT_RUN = "not_run"


@dataclass
class ModeRun:
    """One mode's run: its outcomes, or why there are none."""

    mode: str
    seconds: float
    returncode: int | None
    log: str
    tests: dict[str, dict[str, str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    crashed: str | None = None
    #: CPU time of runtests.py and its workers (not the server's): wall time without the load.
    cpu_seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(("tests", *PASSING, *FAILING), 0)
        for outcome in self.tests.values():
            counts["tests"] += 1
            counts[outcome["status"]] += 1
        return counts

    def status(self, test: str) -> str:
        outcome = self.tests.get(test)
        return outcome["status"] if outcome else NOT_RUN


@dataclass
class Regression:
    test: str
    mode: str
    plain: str
    status: str
    detail: str
    expected: Expected | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "mode": self.mode,
            "plain": self.plain,
            "status": self.status,
            "expected": self.expected.reason if self.expected else None,
            "detail": self.detail,
        }


def regressions(plain: ModeRun, other: ModeRun, series: str) -> list[Regression]:
    """The tests of ``other`` (a pgmigrate mode) that regress from ``plain``."""
    found = []
    for test in sorted(set(plain.tests) | set(other.tests)):
        before, after = plain.status(test), other.status(test)
        regressed = (before in PASSING and after not in PASSING) or (
            before == NOT_RUN and after in FAILING
        )
        if regressed:
            detail = other.tests.get(test, {}).get("detail", "")
            found.append(Regression(test, other.mode, before, after, detail))
    for regression in found:
        regression.expected = next(
            (e for e in EXPECTED if e.matches(regression.test, other.mode, series)), None
        )
    return found


def stale_expectations(found: list[Regression], modes: list[str], series: str) -> list[Expected]:
    """Entries of expected.py that apply to this run but match no regression."""
    return [
        e
        for e in EXPECTED
        if (not e.django or series in e.django)
        and any(not e.modes or m in e.modes for m in modes)
        and not any(r.expected is e for r in found)
    ]


def signature(regression: Regression) -> str:
    """What groups regressions: the status and the traceback's last line, numbers blurred."""
    if regression.status == NOT_RUN:
        return "not run with pgmigrate"
    lines = [line for line in regression.detail.splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    last = re.sub(r"0x[0-9a-fA-F]+", "0x…", last)
    last = re.sub(r"[0-9]+", "N", last)
    return f"{regression.status}: {last[:200]}{'…' if len(last) > 200 else ''}"


_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$')
#: Path prefixes cut from frames: everything up to these markers.
_PATH_MARKERS = ("/site-packages/", "/.django-suite/src/", "/lib/python3")


def _short(path: str) -> str:
    for marker in _PATH_MARKERS:
        if marker in path:
            return path.split(marker, 1)[1]
    return path.removeprefix(f"{Path.cwd()}/")


def compact(detail: str, frames: int, message_lines: int = 6) -> list[str]:
    """A traceback in a few lines: its frames as ``path:line in function`` (unittest's own
    left out; the outermost and the ``frames - 1`` innermost), then the exception."""
    lines = detail.rstrip().splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith("Traceback")), default=0)
    calls: list[str] = []
    last = start
    for i, line in enumerate(lines[start:], start):
        match = _FRAME.match(line)
        if match:
            last = i
            if "/unittest/" not in match["path"]:
                calls.append(f"{_short(match['path'])}:{match['line']} in {match['func']}")
    if frames and len(calls) > frames:
        calls = [calls[0], f"... {len(calls) - frames} more", *calls[-(frames - 1) :]]
    # After the last frame: its source line and carets (indented), then the exception.
    rest = lines[last + 1 :]
    while rest and (not rest[0].strip() or rest[0][0].isspace()):
        rest = rest[1:]
    message = [line for line in rest if line.strip()][:message_lines]
    return [*calls, *message] if frames else message


def group(found: list[Regression]) -> list[tuple[str, list[Regression]]]:
    """Regressions grouped by signature, the largest group first."""
    groups: dict[str, list[Regression]] = defaultdict(list)
    for regression in found:
        groups[signature(regression)].append(regression)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


def table(runs: list[ModeRun]) -> list[str]:
    header = ("mode", "wall", "CPU", "tests", "passed", "skipped", "xfail", "failed", "errors", "")
    rows: list[tuple[str, ...]] = [header]
    for run in runs:
        counts = run.counts()
        if run.crashed:
            note = f"CRASHED: {run.crashed}"
        elif any(counts[s] for s in FAILING):
            note = "some failed"
        else:
            note = "all passed"
        rows.append(
            (
                run.mode,
                f"{run.seconds:.0f} s",
                f"{run.cpu_seconds:.0f} s",
                str(counts["tests"]),
                str(counts["ok"]),
                str(counts["skipped"]),
                str(counts["expected_failure"]),
                str(counts["failure"] + counts["unexpected_success"]),
                str(counts["error"]),
                note,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return [
        "  ".join(
            [
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(r, widths, strict=False))
            ]
            + [r[-1]]
        ).rstrip()
        for r in rows
    ]


def report(runs: list[ModeRun], found: list[Regression], series: str, frames: int) -> list[str]:
    """The human summary: the table, tests failing plain too, then the regressions."""
    lines = ["", *table(runs)]
    by_mode = {run.mode: run for run in runs}
    plain = by_mode.get("plain")
    if plain and not plain.crashed:
        failing = [t for t, o in plain.tests.items() if o["status"] in FAILING]
        if failing:
            lines += ["", f"Failing without pgmigrate too (not regressions): {len(failing)}"]
            for test in failing:
                others = ", ".join(
                    f"{r.mode}: {r.status(test)}" for r in runs if r.mode != "plain"
                )
                lines.append(
                    f"  {test}: {plain.status(test)}" + (f" ({others})" if others else "")
                )
    if not plain or plain.crashed:
        lines += ["", "No comparison: the plain run is missing or crashed."]
        return lines
    unexpected = [r for r in found if not r.expected]
    lines += [
        "",
        f"Regressions: {len({r.test for r in found})} test(s); {len(found)} test-mode pairs, "
        f"{len(unexpected)} of them not in django_suite/expected.py",
    ]
    for number, (sig, members) in enumerate(group(found), 1):
        modes = sorted({r.mode for r in members}, key=list(by_mode).index)
        tests = sorted({r.test for r in members})
        lines += ["", f"[{number}] {len(tests)} test(s), {'+'.join(modes)}: {sig}"]
        if members[0].status != NOT_RUN:
            lines += [f"    | {line}" for line in compact(members[0].detail, frames)]
        for test in tests:
            reasons = {r.expected.reason for r in members if r.test == test and r.expected}
            mark = f"  (expected: {'; '.join(sorted(reasons))})" if reasons else ""
            test_modes = [r.mode for r in members if r.test == test]
            lines.append(f"    {test} [{', '.join(test_modes)}]{mark}")
    stale = stale_expectations(found, [r.mode for r in runs if r.mode != "plain"], series)
    if stale:
        lines += ["", "Entries of django_suite/expected.py that matched nothing (stale):"]
        lines += [f"  {e.test}: {e.reason}" for e in stale]
    return lines
