"""``python -m django_suite``: Django's own test suite without and with pgmigrate.

Downloads the sdist of the latest release of a Django series, installs it with pgmigrate in
the series' own virtualenv, runs tests/runtests.py on PostgreSQL once per mode (``plain``:
Django alone; ``default``: pgactivity, pglock and pgmigrate installed, ``migrate`` patched;
``atomic``: the same with ``PGMIGRATE_ATOMIC = True``) and compares the outcomes test by test.
Exit status 1 if a test regresses with pgmigrate and django_suite/expected.py does not list
it, or if a run crashed; 2 if the suite could not be set up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from django_suite.child import MODES
from django_suite.compare import ModeRun, Regression, regressions, report
from django_suite.prepare import (
    CACHE,
    ROOT,
    PrepareError,
    Suite,
    cached_sdists,
    default_venv,
    log,
    prepare,
)

#: The apps of Django's suite where pgmigrate could change an outcome: migrations and their
#: commands, schema editing, the PostgreSQL backend, and the apps whose migrations or
#: post_migrate handlers run when the test databases are created.
LABELS = (
    "migrations",
    "migrate_signals",
    "migration_test_data_persistence",
    "schema",
    "backends",
    "postgres_tests",
    "contenttypes_tests",
    "multiple_database",
    "proxy_model_inheritance",
    "swappable_models",
    "auth_tests",
)
#: --quick (CI): the migration labels, the test database creation (it mocks the executor)
#: and PostgreSQL's own operations (postgres_tests' migrations run at set-up).
QUICK_LABELS = (
    "migrations",
    "migrate_signals",
    "migration_test_data_persistence",
    "backends.base.test_creation",
    "postgres_tests.test_operations",
)
LOG_TAIL = 40


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m django_suite",
        description=(__doc__ or "").split("\n")[0],
        epilog="Arguments after -- go to runtests.py, e.g. -- -k test_migrate --failfast",
    )
    parser.add_argument("--django", required=True, metavar="X.Y", help="Django series, e.g. 5.2")
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated, of {', '.join(MODES)} (default: all)",
    )
    parser.add_argument(
        "--labels",
        nargs="+",
        metavar="LABEL",
        help=f"runtests.py labels (apps, modules, classes or tests; default: {' '.join(LABELS)})",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"labels {' '.join(QUICK_LABELS)} only (CI)"
    )
    parser.add_argument("--parallel", type=int, default=2, help="runtests.py processes (2)")
    parser.add_argument("--verbosity", type=int, default=1, choices=range(4))
    parser.add_argument(
        "--python",
        help="interpreter for the venv: a version (3.13) or a path (default: the "
        "newest the Django series supports, from pyenv or PATH)",
    )
    parser.add_argument(
        "--venv", type=Path, help="the virtualenv (default: .venv-django-suite-X.Y)"
    )
    parser.add_argument(
        "--results", type=Path, help="results directory (default: .django-suite/results/...)"
    )
    parser.add_argument(
        "--offline", action="store_true", help="use the cached sdist, do not look for a newer"
    )
    parser.add_argument(
        "--timeout", type=float, default=0, help="stop a mode after this many seconds (0: none)"
    )
    parser.add_argument(
        "--frames", type=int, default=10, help="traceback frames shown per group (10)"
    )
    parser.add_argument("--show-output", action="store_true", help="echo runtests.py output")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: report the last run of the series again (its results directory)",
    )
    parser.add_argument("runtests_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runtests_args[:1] == ["--"]:
        args.runtests_args = args.runtests_args[1:]
    elif args.runtests_args:
        parser.error(f"unrecognized arguments: {' '.join(args.runtests_args)}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: choose among {', '.join(MODES)}")
    args.modes = sorted(set(modes), key=MODES.index)  # plain first
    if args.labels and args.quick:
        parser.error("--labels and --quick exclude each other")
    labels = [label for arg in args.labels or () for label in arg.split(",") if label]
    args.labels = labels or list(QUICK_LABELS if args.quick else LABELS)
    if len(args.django.split(".")) != 2:
        parser.error("--django takes a series such as 5.2")
    return args


def run_mode(
    suite: Suite, mode: str, args: argparse.Namespace, results: Path, database_url: str
) -> ModeRun:
    """Run runtests.py in ``mode``; its output goes to ``<results>/<mode>.log``."""
    result_file = results / f"{mode}.json"
    log_file = results / f"{mode}.log"
    command = [
        str(suite.python),
        *("-m", "django_suite.child", "--mode", mode),
        *("--tests-dir", str(suite.tests_dir), "--django-version", suite.django_version),
        *("--result", str(result_file), "--"),
        *("--noinput", f"--parallel={args.parallel}", f"--verbosity={args.verbosity}"),
        *args.runtests_args,
        *args.labels,
    ]
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    for name in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    log(f"mode {mode}: running (log: {log_file})")
    started, cpu_before = time.monotonic(), _children_cpu()
    timed_out = threading.Event()
    with log_file.open("w") as out:
        out.write(f"$ {' '.join(command)}\n\n")
        out.flush()
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # so a timeout or Ctrl-C ends the workers too
        )

        def stop() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)

        timer = threading.Timer(args.timeout, stop) if args.timeout else None
        if timer:
            timer.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                out.write(line)
                out.flush()  # the log can be followed while the mode runs
                if args.show_output:
                    sys.stdout.write(line)
            returncode = process.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            raise
        finally:
            if timer:
                timer.cancel()
    run = load_run(mode, results, time.monotonic() - started, returncode)
    run.cpu_seconds = _children_cpu() - cpu_before
    if timed_out.is_set():
        run.crashed = f"timed out after {args.timeout:.0f} s"
    if run.crashed:
        lines = log_file.read_text(errors="replace").splitlines()
        print(f"\n---- last lines of {log_file} ----", file=sys.stderr)
        print("\n".join(lines[-LOG_TAIL:]), file=sys.stderr)
        print("----", file=sys.stderr, flush=True)
    counts = run.counts()
    failed = counts["failure"] + counts["error"] + counts["unexpected_success"]
    log(
        f"mode {mode}: {run.seconds:.0f} s (CPU {run.cpu_seconds:.0f} s), "
        f"{counts['tests']} tests, {failed} failed"
        + (f", CRASHED ({run.crashed})" if run.crashed else "")
    )
    return run


def _children_cpu() -> float:
    """CPU seconds of the ended child processes (and theirs: runtests.py's workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_run(mode: str, results: Path, seconds: float, returncode: int | None) -> ModeRun:
    """A mode's run from its JSON file in ``results`` (crashed if there is none)."""
    result_file, log_file = results / f"{mode}.json", results / f"{mode}.log"
    run = ModeRun(mode, seconds, returncode, str(log_file))
    if result_file.exists():
        data = json.loads(result_file.read_text())
        run.tests = data.pop("tests")
        run.meta = data
    else:
        run.crashed = f"exit status {returncode}, no result (log: {log_file})"
    return run


def database(suite: Suite, labels: list[str]) -> tuple[str, list[str]]:
    """$DATABASE_URL, or a throwaway embedded PostgreSQL started for this run; and the
    labels that server can run (postgres_tests needs the uuid-ossp extension)."""
    from tests import pgserver  # the repository's tests package

    own = not os.environ.get("DATABASE_URL")
    url = pgserver.database_url()
    command = [str(suite.python), "-m", "django_suite.server", url]
    result = subprocess.run(
        [*command, *(["--stand-in"] if own else [])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise PrepareError("cannot query the PostgreSQL server")
    state = json.loads(result.stdout)
    major, minor = divmod(state["version"], 10000)
    stand_in = " (stand-in uuid-ossp)" if "stand-in" in state else ""
    log(f"PostgreSQL {major}.{minor}{stand_in}")
    if not state["uuid-ossp"] and "stand-in" not in state:
        dropped = [label for label in labels if label.split(".")[0] == "postgres_tests"]
        if dropped:
            log(f"WARNING: the server has no uuid-ossp extension: not running {dropped}")
            labels = [label for label in labels if label not in dropped]
    return url, labels


def default_results(args: argparse.Namespace, version: str) -> Path:
    """``.django-suite/results/django-5.2.19``, ``-quick`` or ``-labels`` for other labels."""
    suffix = "" if args.labels == list(LABELS) else "-quick" if args.quick else "-labels"
    return CACHE / "results" / f"django-{version}{suffix}"


def run_suite(args: argparse.Namespace) -> tuple[dict[str, Any], Path, list[ModeRun]] | int:
    """Set up and run the modes: (what ran, results directory, runs), or an exit status."""
    venv = args.venv.resolve() if args.venv else default_venv(args.django)
    try:
        suite = prepare(args.django, venv, args.python, offline=args.offline)
    except PrepareError as exc:
        log(f"cannot set up the suite: {exc}")
        return 2
    results = (args.results or default_results(args, suite.django_version)).resolve()
    results.mkdir(parents=True, exist_ok=True)
    log(
        f"Django {suite.django_version} on Python {suite.python_version}, "
        f"modes {','.join(args.modes)}, --parallel {args.parallel}, "
        f"labels: {' '.join(args.labels)}"
    )
    try:
        url, args.labels = database(suite, args.labels)
    except PrepareError as exc:
        log(f"cannot set up the suite: {exc}")
        return 2
    runs = [run_mode(suite, mode, args, results, url) for mode in args.modes]
    context = {
        "django": suite.django_version,
        "python": suite.python_version,
        "labels": args.labels,
        "parallel": args.parallel,
        "runtests_args": args.runtests_args,
    }
    return context, results, runs


def load_previous(args: argparse.Namespace) -> tuple[dict[str, Any], Path, list[ModeRun]] | int:
    """--report-only: the runs of the last run of the series, from its results directory."""
    if args.results:
        results = args.results.resolve()
    else:
        cached = cached_sdists(args.django)
        if not cached:
            log(f"no results of Django {args.django}: no sdist cached")
            return 2
        results = default_results(args, cached[0][0])
    summary_file = results / "summary.json"
    if not summary_file.exists():
        log(f"no results in {results}")
        return 2
    summary = json.loads(summary_file.read_text())
    modes = [mode for mode in args.modes if mode in summary["modes"]]
    runs = []
    for mode in modes:
        runs.append(load_run(mode, results, summary["modes"][mode]["seconds"], None))
        runs[-1].cpu_seconds = summary["modes"][mode].get("cpu_seconds", 0.0)
    context = {key: value for key, value in summary.items() if key not in ("modes", "regressions")}
    return context, results, runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    outcome = load_previous(args) if args.report_only else run_suite(args)
    if isinstance(outcome, int):
        return outcome
    context, results, runs = outcome
    series = ".".join(context["django"].split(".")[:2])

    by_mode = {run.mode: run for run in runs}
    found: list[Regression] = []
    plain = by_mode.get("plain")
    if plain and not plain.crashed:
        for run in runs:
            if run.mode != "plain" and not run.crashed:
                found += regressions(plain, run, series)
    print(
        f"\nDjango {context['django']}, Python {context['python']}, "
        f"--parallel {context['parallel']}, labels: {' '.join(context['labels'])}"
    )
    print("\n".join(report(runs, found, series, args.frames)))

    if not args.report_only:
        summary: dict[str, Any] = {
            **context,
            "modes": {
                run.mode: {
                    **run.meta,
                    "seconds": round(run.seconds, 1),
                    "cpu_seconds": round(run.cpu_seconds, 1),
                    "returncode": run.returncode,
                    "crashed": run.crashed,
                    "counts": run.counts(),
                    "log": run.log,
                }
                for run in runs
            },
            "regressions": [r.as_dict() for r in found],
        }
        (results / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nResults: {results}")

    unexpected = [r for r in found if not r.expected]
    crashed = [run.mode for run in runs if run.crashed]
    if crashed:
        print(f"FAILED: run(s) crashed: {', '.join(crashed)}")
    if unexpected:
        print(f"FAILED: {len(unexpected)} unexpected regression(s) with pgmigrate")
    if not crashed and not unexpected:
        print("OK: no unexpected regression")
    return 1 if crashed or unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
