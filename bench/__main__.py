"""``python -m bench``: how long the app stalls while ``migrate`` runs, pgmigrate vs Django.

Starts a throwaway PostgreSQL unless ``$DATABASE_URL`` is set, runs the scenarios (each
alternating pgmigrate and plain Django ``migrate`` run by run), prints medians, worst cases
and the targets, and writes every measurement to ``bench/results/<timestamp>.json``.
Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pgmigrate.version
from bench import report, server
from bench.migrate import MigrateFailed
from bench.options import Options
from bench.scenarios import DEFAULT, SCENARIOS

WIDTH = 100


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run (fewer runs, smaller crowd)"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help=f"run this scenario (may be repeated); default: {', '.join(DEFAULT)}",
    )
    parser.add_argument("--runs", type=int, help="runs per implementation, for every scenario")
    return parser.parse_args(argv)


def source_fingerprint() -> dict[str, str]:
    """Which pgmigrate was measured: git HEAD, local changes, a hash of pgmigrate/*.py."""
    root = Path(pgmigrate.version.__file__).resolve().parent

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return result.stdout.strip()

    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.read_bytes())
    return {
        "head": git("rev-parse", "HEAD"),
        "changes": git("status", "--short", "--", "."),
        "sha256": digest.hexdigest(),
    }


ROOT = Path(__file__).resolve().parent.parent


def compile_bytecode(*directories: Path) -> None:
    """Compile the project's modules as ``pip install`` does for an installed package.

    Some machines set ``PYTHONDONTWRITEBYTECODE``; without compiled bytecode every child
    ``manage.py`` would compile pgmigrate's modules anew, which no real deployment does.
    """
    for directory in directories:
        compileall.compile_dir(str(directory), quiet=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options.quick_version() if args.quick else Options()
    if args.runs:
        options = options.with_runs(args.runs)
    names = args.scenario or DEFAULT

    started = time.monotonic()
    url = server.database_url()
    machine = server.machine(url)
    print("=" * WIDTH)
    print(f"pgmigrate benchmark{' (--quick: indicative only)' if options.quick else ''}")
    print(f"machine: {machine.header()}")
    source = source_fingerprint()
    changes = len(source["changes"].splitlines())
    print(
        f"pgmigrate {pgmigrate.version.__version__} (git {source['head'][:7]}, "
        f"{changes} changed files in pgmigrate/), scenarios: {', '.join(names)}"
    )
    compile_bytecode(*(ROOT / name for name in ("pgmigrate", "bench", "tests")))
    print("bytecode: compiled first, as pip install does for an installed package")
    print("=" * WIDTH, flush=True)

    results, failed = [], []
    for name in names:
        print(f"bench: running {name} ...", file=sys.stderr, flush=True)
        begun = time.monotonic()
        try:
            result = SCENARIOS[name](url, options)
        except MigrateFailed as exc:  # e.g. a broken pgmigrate: report it, run the rest
            failed.append(name)
            print(f"\n{name}: FAILED, {exc}", flush=True)
            continue
        finally:
            took = time.monotonic() - begun
            print(f"bench: {name} took {took:.1f} s", file=sys.stderr, flush=True)
        results.append(result)
        print(f"\n{result.title}")
        for note in result.notes:
            print(f"  note: {note}")
        print(report.table(result), flush=True)

    lines, missed = report.target_lines(results)
    print("\ntargets (default settings, medians unless stated)")
    print("\n".join(lines))
    elapsed = time.monotonic() - started
    meta = {
        "machine": vars(machine),
        "options": vars(options),
        "scenarios": names,
        "elapsed_s": elapsed,
        "argv": sys.argv[1:] if argv is None else argv,
        "pgmigrate_source": source,
        "failed_scenarios": failed,
        "load_average_at_end": os.getloadavg(),
    }
    path = report.write_json(meta, results)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\nload average at the end (1, 5, 15 min): {load} on {machine.cores} cores")
    print(f"{missed} of {len(lines)} targets missed; {elapsed:.0f} s; raw results: {path}")
    if failed:
        print(f"FAILED scenarios (migrate exited with an error): {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
