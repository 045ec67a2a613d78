"""Runs Django's tests/runtests.py in one mode, inside the suite's virtualenv.

``python -m django_suite.child --mode default --tests-dir DIR --django-version 5.2.19
--result FILE -- RUNTESTS_ARGS`` (started by ``python -m django_suite`` with the repository
root as working directory).

runtests.py sets ``INSTALLED_APPS`` itself (its ``ALWAYS_INSTALLED_APPS``, then the test
apps) just before its one ``django.setup()``. In the pgmigrate modes that call is wrapped
once to add pgactivity, pglock and pgmigrate to that list, as a project would have them:
runtests.py then appends the test apps to the same list and installs it, so the apps are
there for the test databases' ``migrate`` and for every test, and absent only where a test
replaces ``INSTALLED_APPS`` itself. ``django_suite.settings`` adds the mode's settings and
``django_suite.runner`` checks the result before the first test database is created.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import runpy
import sys
from collections.abc import Callable
from pathlib import Path

MODES = ("plain", "default", "atomic")
PGMIGRATE_APPS = ("pgactivity", "pglock", "pgmigrate")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m django_suite.child")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--tests-dir", type=Path, required=True)
    parser.add_argument("--django-version", required=True)
    parser.add_argument("--result", type=Path, required=True, help="JSON outcomes file")
    parser.add_argument("runtests_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.runtests_args[:1] == ["--"]:
        args.runtests_args = args.runtests_args[1:]
    return args


def add_apps_at_setup(apps_to_add: tuple[str, ...]) -> None:
    """Make the next ``django.setup()`` install ``apps_to_add`` too (once)."""
    import django

    original: Callable[..., None] = django.setup

    def setup(set_prefix: bool = True) -> None:
        from django.conf import settings

        django.setup = original  # only runtests.py's own set-up is touched
        installed = list(settings.INSTALLED_APPS)
        settings.INSTALLED_APPS = installed + [a for a in apps_to_add if a not in installed]
        original(set_prefix)

    django.setup = setup


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tests_dir = args.tests_dir.resolve()
    root = str(Path(__file__).resolve().parents[1])
    # As `cd tests && ./runtests.py`: the test apps are top-level modules of tests/. This
    # repository goes last, only for django_suite.settings and django_suite.runner.
    sys.path[:] = [str(tests_dir), *(p for p in sys.path if p not in ("", root)), root]
    os.chdir(tests_dir)
    os.environ["DJANGO_SUITE_MODE"] = args.mode
    os.environ["DJANGO_SUITE_RESULT"] = str(args.result.resolve())
    args.result.unlink(missing_ok=True)

    import django

    if django.get_version() != args.django_version:
        sys.exit(
            f"django_suite: Django {django.get_version()} is installed, "
            f"but the tests are Django {args.django_version}'s"
        )
    # Parallel workers inherit the wrapped set-up and the patch only when forked.
    multiprocessing.set_start_method("fork", force=True)
    if args.mode != "plain":
        add_apps_at_setup(PGMIGRATE_APPS)

    runtests = tests_dir / "runtests.py"
    sys.argv = [str(runtests), "--settings=django_suite.settings", *args.runtests_args]
    runpy.run_path(str(runtests), run_name="__main__")


if __name__ == "__main__":
    main()
