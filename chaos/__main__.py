"""``python -m chaos``: interrupt ``migrate`` at random points, check that a re-run recovers.

Starts its own throwaway PostgreSQL, makes the reference outcome with clean runs, then runs
the trials: each migrates a fresh database with one fault injected (a signal, a server
restart, a terminated backend, a lock or statement timeout), runs ``migrate`` again with
default settings, and compares the database with the reference. Exit status 1 if any trial
did not recover, 2 if the harness could not run.
"""

from __future__ import annotations

import argparse
import compileall
import json
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from chaos import report
from chaos.child import ROOT
from chaos.faults import FAULTS
from chaos.server import Server
from chaos.trial import (
    ANYWHERE,
    BACKWARDS,
    FORWARDS,
    HarnessError,
    Plan,
    Trial,
    prepare,
    run_trial,
)

QUICK_TRIALS = 30
WIDTH = 100


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--trials", type=int, default=300, help="number of trials (300)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TRIALS} trials (CI)")
    parser.add_argument("--seed", type=int, help="seed of the random choices (default: random)")
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"comma-separated fault kinds, taken in turn (default: {','.join(FAULTS)})",
    )
    parser.add_argument(
        "--only", type=int, action="append", help="run only trial N (repeatable; same --seed)"
    )
    parser.add_argument(
        "--backwards",
        action="store_true",
        help="trials unapply everything (migrate <app> zero, app by app) from a migrated database",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="plain Django migrate (PGMIGRATE_PATCH_MIGRATE = False), to check the harness",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a Django setting for every first run, e.g. PGMIGRATE_ATOMIC=true (repeatable)",
    )
    parser.add_argument(
        "--keep-failures",
        type=Path,
        default=ROOT / "chaos-failures",
        metavar="DIR",
        help="write each failed trial's outputs and differences here (chaos-failures/)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write all results here")
    parser.add_argument("--stop-on-failure", action="store_true", help="stop at the first failure")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials = QUICK_TRIALS
    args.kinds = args.faults.split(",")
    unknown = set(args.kinds) - set(FAULTS)
    if unknown:
        parser.error(
            f"unknown fault kinds {', '.join(sorted(unknown))}; known: {', '.join(FAULTS)}"
        )
    try:
        args.settings = {
            name: json.loads(value) for name, _, value in (s.partition("=") for s in args.setting)
        }
    except json.JSONDecodeError as exc:
        parser.error(f"--setting: the value must be JSON ({exc})")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    return args


def _stop_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP raise ``KeyboardInterrupt``: the running child is killed,
    the server removed, the results so far printed. Handling SIGINT also undoes an inherited
    "ignore SIGINT" (a background job's), which the children would inherit: the ``sigint``
    fault would then do nothing."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)


def pgmigrate_source() -> str:
    """Which pgmigrate the children import: git HEAD and uncommitted changes in pgmigrate/."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    head = git("rev-parse", "--short", "HEAD").strip()
    changes = git("status", "--short", "--", "pgmigrate").splitlines()
    return f"git {head}, {len(changes)} changed files in pgmigrate/"


def repeat_command(args: argparse.Namespace, number: int) -> str:
    words = ["python", "-m", "chaos", "--seed", str(args.seed), "--faults", args.faults]
    words += ["--only", str(number)]
    words += [flag for flag in ("--backwards", "--plain") if getattr(args, flag[2:])]
    for setting in args.setting:
        words += ["--setting", setting]
    return shlex.join(words)


def run_trials(
    plan: Plan, args: argparse.Namespace, numbers: list[int], failures_dir: Path
) -> tuple[list[Trial], bool]:
    """Run the trials, printing a line each; the trials and whether the harness failed."""
    trials: list[Trial] = []
    for number in numbers:
        try:
            trial = run_trial(plan, number)
        except Exception as exc:  # e.g. the server did not come back: stop, report
            print(f"chaos: harness error in trial {number}: {exc!r}", file=sys.stderr)
            return trials, True
        trials.append(trial)
        print(report.trial_line(trial, max(numbers)), flush=True)
        if not trial.recovered:
            for reason in trial.reasons[1:]:
                print(f"{'':>10}also: {reason}")
            report.keep_failure(failures_dir, trial, args.seed, repeat_command(args, number))
            if args.stop_on_failure:
                break
    return trials, False


def print_results(trials: list[Trial], kinds: list[str], failures_dir: Path) -> None:
    print("=" * WIDTH)
    print(report.summary(trials, kinds))
    failed = [t for t in trials if not t.recovered]
    if failed:
        print(f"\nnot recovered ({len(failed)}):")
        print(report.failures(failed))
        print(f"\noutputs and differences of failed trials: {failures_dir}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _stop_on_signals()
    started = time.monotonic()
    # As pip does for an installed package: children must not compile pgmigrate anew.
    for name in ("chaos", "pgmigrate", "tests"):
        compileall.compile_dir(str(ROOT / name), quiet=1)
    numbers = args.only or list(range(1, args.trials + 1))
    mode = "plain Django migrate" if args.plain else f"pgmigrate ({pgmigrate_source()})"
    direction = "backwards" if args.backwards else "forwards"
    print("=" * WIDTH)
    print(f"pgmigrate chaos: {len(numbers)} trials, {direction}, {mode}")
    print(f"seed {args.seed}, faults {args.faults}")
    if args.settings:
        print(f"first runs also with {args.settings}")
    failures_dir = args.keep_failures / time.strftime(f"%Y%m%d-%H%M%S-seed{args.seed}")
    meta: dict[str, Any] = {
        "seed": args.seed,
        "faults": args.kinds,
        "direction": direction,
        "pgmigrate": mode,
        "first_run_settings": args.settings,
        "argv": sys.argv[1:] if argv is None else argv,
    }
    trials: list[Trial] = []
    harness_error = interrupted = False
    try:
        with Server() as server:
            plan = Plan(
                server=server,
                steps=BACKWARDS if args.backwards else FORWARDS,
                plain=args.plain,
                first_settings=args.settings,
                seed=args.seed,
                kinds=args.kinds,
            )
            print(f"PostgreSQL {server.version} in {server.pgdata}", flush=True)
            try:
                prepare(plan, backwards=args.backwards)
            except HarnessError as exc:
                print(f"chaos: cannot run trials: {exc}", file=sys.stderr)
                return 2
            steps = ", ".join(f"{seconds:.2f}" for seconds in plan.step_seconds)
            migrating = ", ".join(f"{seconds:.2f}" for seconds in plan.migrating)
            print(
                f"clean run {plan.clean_seconds:.2f} s (per process: {steps}; of which "
                f"applying migrations: {migrating})"
            )
            print(
                f"fault moments: {1 - ANYWHERE:.0%} while a process applies migrations, "
                "the others anywhere from its start"
            )
            print("=" * WIDTH, flush=True)
            meta |= {"postgresql": server.version, "clean_seconds": plan.clean_seconds}
            meta |= {"step_seconds": plan.step_seconds, "migrating_seconds": plan.migrating}
            trials, harness_error = run_trials(plan, args, numbers, failures_dir)
    except KeyboardInterrupt:
        interrupted = True
        print("\nchaos: interrupted; results so far:")
    elapsed = time.monotonic() - started
    print_results(trials, args.kinds, failures_dir)
    per_trial = sum(t.seconds for t in trials) / max(len(trials), 1)
    print(f"\n{len(trials)} trials in {elapsed:.0f} s ({per_trial:.1f} s each), seed {args.seed}")
    if args.json:
        report.write_json(args.json, meta | {"elapsed_s": elapsed}, trials)
        print(f"results: {args.json}")
    if harness_error:
        return 2
    if interrupted:
        return 130
    return 1 if any(not t.recovered for t in trials) or len(trials) < len(numbers) else 0


if __name__ == "__main__":
    sys.exit(main())
