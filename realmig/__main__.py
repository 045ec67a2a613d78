"""``python -m realmig``: apply real apps' migrations with plain Django and with pgmigrate
(per operation, and ``PGMIGRATE_ATOMIC``), each on its own fresh database, and compare.

Steps, the same in every mode: ``migrate``; ``migrate <app> zero`` for each app, dependents
first, unless an irreversible migration (or one plain Django failed to unapply) is in the
way; ``migrate`` again. After each step,
each pgmigrate mode's database is compared with plain Django's (``realmig.snapshot``). Then
forwards runs from an empty database are timed, the modes alternating, ``--rounds`` times.

Exit status: 0 when nothing differs, 1 when something does (or a pgmigrate ``migrate``
failed), 2 when the check could not run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from realmig.apps import GROUPS, QUICK
from realmig.child import ELAPSED
from realmig.graph import Graph

ROOT = Path(__file__).resolve().parent.parent
#: Mode -> settings module. Plain Django is the reference.
MODES = {
    "plain": "realmig.settings_plain",
    "pgmigrate": "realmig.settings_pgmigrate",
    "atomic": "realmig.settings_atomic",
}
REFERENCE = "plain"


class MigrateFailed(Exception):
    """A ``migrate`` child exited non-zero; the message is its output's tail."""

    @property
    def last_line(self) -> str:
        lines = [line.strip() for line in str(self).splitlines() if line.strip()]
        return lines[-1] if lines else ""


@dataclass
class Measure:
    """One ``migrate`` run: its wall time, and the peak RSS of its process (MiB)."""

    seconds: float
    peak_mib: float


@dataclass
class Finding:
    step: str
    mode: str
    kind: str
    summary: str
    detail: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    #: mode -> pgmigrate's own objects seen -> steps after which they were there
    own: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: mode -> forwards runs from an empty database (the first step's, then timing's)
    forwards: dict[str, list[Measure]] = field(default_factory=dict)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m realmig",
        description="Apply real apps' migrations with plain Django and with pgmigrate; compare.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"only django.contrib + {' + '.join(QUICK)}, one timing round (CI)",
    )
    parser.add_argument(
        "--apps",
        nargs="+",
        choices=sorted(GROUPS),
        metavar="GROUP",
        help=f"app groups besides django.contrib (default: all of {', '.join(GROUPS)})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="forwards runs per mode to time, the check's first step included (default 3; "
        "--quick 1; 0: none)",
    )
    parser.add_argument(
        "--diff-lines",
        type=int,
        default=300,
        help="print at most this many lines of each diff (0: all; default 300)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print migrate's output")
    args = parser.parse_args(argv)
    if args.apps is None:
        args.apps = list(QUICK) if args.quick else list(GROUPS)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 0:
        parser.error("--rounds must be 0 or more")
    return args


class Runner:
    """Runs ``realmig.child`` with one mode's settings on one database."""

    def __init__(self, server_url: Any, groups: list[str], verbose: bool) -> None:
        self.server_url = server_url
        self.groups = groups
        self.verbose = verbose

    def _run(self, mode: str, database: str, command: list[str]) -> str:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE=MODES[mode],
            REALMIG_DATABASE_URL=self.server_url(database),
            REALMIG_APPS=",".join(self.groups),
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        )
        result = subprocess.run(
            [sys.executable, "-m", "realmig.child", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        output = result.stdout + result.stderr
        if self.verbose:
            log(output.rstrip())
        if result.returncode:
            tail = "\n".join(output.rstrip().splitlines()[-40:])
            raise MigrateFailed(f"exit status {result.returncode}:\n{tail}")
        return result.stdout

    def migrate(self, mode: str, database: str, args: list[str]) -> Measure:
        """Run ``migrate ARGS``: the seconds it took (in the child, after Django's setup) and
        the child's peak RSS."""
        stdout = self._run(mode, database, ["migrate", "--no-input", *args])
        for line in reversed(stdout.splitlines()):
            if line.startswith(ELAPSED):
                _, seconds, peak = line.split()
                return Measure(float(seconds), int(peak) / 1024)
        raise MigrateFailed(f"no {ELAPSED} line in the output:\n{stdout[-2000:]}")

    def plan(self, database: str) -> dict[str, Any]:
        return dict(json.loads(self._run(REFERENCE, database, ["plan"])))


def _truncated(text: str, limit: int) -> str:
    lines = text.splitlines()
    if limit and len(lines) > limit:
        return "\n".join([*lines[:limit], f"... ({len(lines) - limit} more lines)"])
    return text


class Check:
    """The steps in every mode, each mode's database compared with plain Django's after each."""

    def __init__(self, server: Any, runner: Runner, graph: Graph, prefix: str) -> None:
        self.server = server
        self.runner = runner
        self.graph = graph
        self.report = Report()
        self.databases = {mode: f"{prefix}_{mode}" for mode in MODES}
        #: Modes stopped: their migrate failed where plain Django's did not.
        self.broken: set[str] = set()
        #: Apps not taken to zero, and why.
        self.skipped: dict[str, str] = {}
        self.number = 0

    def run(self) -> bool:
        """False when plain Django failed going forwards (nothing to compare with)."""
        for database in self.databases.values():
            self.server.create(database)
        if REFERENCE in self.step("migrate", []):
            return False
        self.backwards()
        return REFERENCE not in self.step("migrate (again)", [])

    def _applied(self) -> set[str]:
        rows = self.server.query(
            self.databases[REFERENCE], "SELECT app, name FROM django_migrations"
        )
        return {f"{app}.{name}" for app, name in rows}

    def backwards(self) -> None:
        """``migrate <app> zero``, app by app, planned from what plain Django's database has
        applied. Skipped: an app whose way to zero has an irreversible migration, or a
        migration that plain Django failed to unapply in an earlier step."""
        failed: set[str] = set()  # migrations plain Django could not unapply
        for app in self.graph.zero_order:
            unapplies = self.graph.unapplies(app, self._applied())
            if not unapplies:
                continue  # an earlier step took it to zero with its dependents
            blocking = [
                f"{key} ({self.graph.irreversible[key]})"
                for key in unapplies
                if self.graph.irreversible[key]
            ]
            if blocking:
                self.skipped[app] = f"irreversible: {'; '.join(blocking)}"
                continue
            if failed & set(unapplies):
                again = ", ".join(sorted(failed & set(unapplies)))
                self.skipped[app] = f"it would unapply {again} again (failed before)"
                continue
            others = len([key for key in unapplies if not key.startswith(f"{app}.")])
            also = f" (+{others} of other apps)" if others else ""
            errors = self.step(f"migrate {app} zero{also}", [app, "zero"])
            if REFERENCE in errors:
                failed |= self._applied() & set(unapplies)
                self.skipped[app] = f"plain Django failed: {errors[REFERENCE]}"

    def step(self, name: str, args: list[str]) -> dict[str, str]:
        """Run ``migrate ARGS`` in every mode and compare; the modes that failed, with the
        last line of their output."""
        from realmig.snapshot import capture, compare

        self.number += 1
        report = self.report
        times: dict[str, Measure] = {}
        errors: dict[str, str] = {}
        for mode in MODES:
            if mode in self.broken:
                continue
            try:
                times[mode] = self.runner.migrate(mode, self.databases[mode], args)
            except MigrateFailed as exc:
                errors[mode] = exc.last_line
                if mode == REFERENCE:
                    log(f"realmig: plain Django failed at {name}: {exc}")
                else:
                    log(f"realmig: {mode} failed at {name}: {exc}")
                if REFERENCE not in errors:
                    self.broken.add(mode)
                    finding = Finding(name, mode, "migrate", "migrate failed", str(exc))
                    report.findings.append(finding)
        if REFERENCE in errors:  # the modes must fail too
            for mode in times:
                detail = f"plain Django: {errors[REFERENCE]}\n{mode}: migrate succeeded"
                summary = f"plain Django's migrate failed, {mode}'s did not"
                report.findings.append(Finding(name, mode, "migrate", summary, detail))
        if self.number == 1:
            for mode, measure in times.items():
                report.forwards.setdefault(mode, []).append(measure)
        compared = [mode for mode in MODES if mode in times or mode in errors]
        compared = [mode for mode in compared if mode not in self.broken]
        snapshots = {mode: capture(self.server, self.databases[mode]) for mode in compared}
        verdicts = [f"{mode} FAILED" for mode in errors]
        for mode, snapshot in snapshots.items():
            for item in snapshot.own:
                report.own.setdefault(mode, {}).setdefault(item, []).append(name)
            if mode == REFERENCE or REFERENCE not in snapshots:
                continue
            found = compare(snapshots[REFERENCE], snapshot, mode)
            report.findings += [Finding(name, mode, d.kind, d.summary, d.diff) for d in found]
            verdicts.append(f"{mode} {', '.join(d.kind for d in found) or 'same'}")
        took = "  ".join(f"{mode} {measure.seconds:6.2f} s" for mode, measure in times.items())
        print(f"step {self.number:2} {name:46} {took}  | {'; '.join(verdicts)}", flush=True)
        return errors


def timing(server: Any, runner: Runner, rounds: int, prefix: str, report: Report) -> None:
    """Forwards from an empty database, each run on a fresh database, until every mode has
    ``rounds`` runs (the check's first step was one); the modes' order rotates each round."""
    modes = [mode for mode in MODES if mode in report.forwards]
    for number in range(1, rounds):
        shift = number % len(modes)
        order = modes[shift:] + modes[:shift]
        for mode in order:
            database = f"{prefix}_time_{mode}"
            server.create(database)
            try:
                report.forwards[mode].append(runner.migrate(mode, database, []))
            finally:
                server.drop(database)
        took = ", ".join(f"{mode} {report.forwards[mode][-1].seconds:.2f} s" for mode in order)
        log(f"realmig: timing round {number + 1}/{rounds}: {took}")


def print_report(report: Report, skipped: dict[str, str], diff_lines: int) -> None:
    print("\npgmigrate's own objects (not compared):")
    for mode in MODES:
        items = report.own.get(mode, {})
        if not items:
            print(f"  {mode}: none")
        for item, steps in items.items():
            more = " ..." if len(steps) > 3 else ""
            print(f"  {mode}: {item} (after {len(steps)} step(s): {', '.join(steps[:3])}{more})")
    if skipped:
        print("\nnot taken back to zero:")
        for app, reason in skipped.items():
            print(f"  {app}: {reason}")
    print(f"\ndifferences: {len(report.findings) or 'none'}")
    for finding in report.findings:
        print(f"\n=== {finding.step}, {finding.mode}: {finding.summary}")
        print(_truncated(finding.detail, diff_lines))


def print_timing(forwards: dict[str, list[Measure]], rounds: int) -> None:
    if not rounds or REFERENCE not in forwards:
        return
    print(f"\nforwards from an empty database, {rounds} round(s): median (min-max), peak RSS")
    reference = statistics.median(run.seconds for run in forwards[REFERENCE])
    for mode, runs in forwards.items():
        seconds = [run.seconds for run in runs]
        median = statistics.median(seconds)
        ratio = f", ratio {median / reference:.2f}" if mode != REFERENCE else ""
        peak = statistics.median(run.peak_mib for run in runs)
        print(
            f"  {mode:9} {median:7.2f} s ({min(seconds):.2f}-{max(seconds):.2f}){ratio}, "
            f"{peak:.0f} MiB"
        )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    missing = [
        name
        for name in ("django", "pgmigrate", "psycopg", "wagtail")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        log(
            f"realmig: {', '.join(missing)} not installed here: run `make real-migrations` "
            "(it sets up .venv-realmig)"
        )
        return 2
    from realmig.server import Server

    started = time.monotonic()
    server = Server()
    prefix = f"realmig_{os.getpid()}"
    runner = Runner(server.url, args.apps, args.verbose)
    try:
        # The plan needs no database: Django's migration loader without a connection.
        graph = Graph.from_plan(runner.plan(f"{prefix}_{REFERENCE}"))
        print(
            f"realmig: PostgreSQL {server.version} ({server.pg_dump}); django.contrib, "
            f"{', '.join(args.apps)}: {len(graph.apps)} apps with {len(graph.order)} migrations",
            flush=True,
        )
        check = Check(server, runner, graph, prefix)
        if not check.run():
            return 2
        report = check.report
        for database in check.databases.values():
            server.drop(database)
        for finding in report.findings:
            if finding.kind == "migrate":  # a mode that failed is not timed
                report.forwards.pop(finding.mode, None)
        timing(server, runner, args.rounds, prefix, report)
    except (MigrateFailed, RuntimeError) as exc:
        log(f"realmig: {exc}")
        return 2
    finally:
        server.drop_all()
    print_report(report, check.skipped, args.diff_lines)
    print_timing(report.forwards, args.rounds)
    print(f"\nrealmig: {time.monotonic() - started:.0f} s in all")
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
