"""The test runner of the suite runs (``TEST_RUNNER`` in django_suite/settings.py).

``SuiteRunner`` checks, before the first test database is created, that pgmigrate is
installed and patches ``migrate`` exactly in the pgmigrate modes (it stops the run
otherwise), and records every test's outcome in the JSON file ``$DJANGO_SUITE_RESULT``
(written when the run ends; with ``--parallel`` the workers' results come back to this
process, so one file has them all).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import unittest
from pathlib import Path
from typing import Any

import django
from django.apps import apps
from django.test.runner import DiscoverRunner

MODE = os.environ.get("DJANGO_SUITE_MODE", "plain")
PGMIGRATE_APPS = ("pgactivity", "pglock", "pgmigrate")

#: Outcomes, worst first: a test with several (sub-tests) keeps the worst.
STATUSES = ("error", "failure", "unexpected_success", "expected_failure", "skipped", "ok")

#: What the run was, for the JSON file (filled in by SuiteRunner).
META: dict[str, Any] = {}


class ModeError(RuntimeError):
    """The run is not in the state its mode says (pgmigrate missing or present)."""


def migrate_is_pgmigrate() -> bool:
    """True when ``migrate`` runs pgmigrate's command (without importing pgmigrate)."""
    from django.core.management.commands import migrate

    return any(cls.__module__.startswith("pgmigrate.") for cls in migrate.Command.__mro__)


def check_mode() -> dict[str, Any]:
    """Raise ModeError unless pgmigrate is active exactly in the pgmigrate modes."""
    installed = [app for app in PGMIGRATE_APPS if apps.is_installed(app)]
    state: dict[str, Any] = {"installed": installed, "patched": migrate_is_pgmigrate()}
    if MODE == "plain":
        if installed or state["patched"]:
            raise ModeError(f"plain mode, but pgmigrate is active: {state}")
        return state
    from pgmigrate import config, patching

    state["patched"] = patching.is_patched()
    state["atomic"] = config.atomic()
    if installed != list(PGMIGRATE_APPS) or not state["patched"]:
        raise ModeError(f"{MODE} mode, but pgmigrate is not installed and patched: {state}")
    if state["atomic"] != (MODE == "atomic"):
        raise ModeError(f"{MODE} mode, but PGMIGRATE_ATOMIC is {state['atomic']}")
    return state


class SuiteRunner(DiscoverRunner):
    def setup_databases(self, **kwargs: Any) -> Any:
        try:
            state = check_mode()
        except ModeError as exc:
            print(f"\ndjango_suite: FATAL: {exc}\n", file=sys.stderr, flush=True)
            raise
        print(f"django_suite: mode {MODE}: {state}", file=sys.stderr, flush=True)
        META.update(
            mode=MODE,
            django=django.get_version(),
            python=platform.python_version(),
            parallel=self.parallel,
            at_setup=state,
        )
        return super().setup_databases(**kwargs)

    def get_resultclass(self) -> Any:
        base = super().get_resultclass() or unittest.TextTestResult
        return type("JSONTestResult", (JSONResultMixin, base), {})


class JSONResultMixin(unittest.TextTestResult):
    """Keeps each test's outcome (and traceback) and writes them all when the run stops."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: dict[str, dict[str, str]] = {}
        self.started = time.monotonic()

    def record(self, test: unittest.TestCase, status: str, detail: str = "") -> None:
        test_id = test.id()
        previous = self.outcomes.get(test_id)
        if previous and STATUSES.index(previous["status"]) <= STATUSES.index(status):
            return
        self.outcomes[test_id] = {"status": status, "detail": detail}

    def format(self, err: Any, test: unittest.TestCase) -> str:
        """The traceback as unittest prints it (its own frames left out)."""
        return self._exc_info_to_string(err, test)  # type: ignore[attr-defined]

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self.record(test, "ok")

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self.record(test, "error", self.format(err, test))

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self.record(test, "failure", self.format(err, test))

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self.record(test, "skipped", reason)

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self.record(test, "expected_failure")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self.record(test, "unexpected_success")

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:  # a failed sub-test fails its test, which reports nothing else
            failed = issubclass(err[0], test.failureException)
            detail = f"{subtest.id()}\n{self.format(err, test)}"
            self.record(test, "failure" if failed else "error", detail)

    def stopTestRun(self) -> None:
        super().stopTestRun()
        at_end: dict[str, Any] = {"patched": migrate_is_pgmigrate()}
        payload = {
            **META,
            "at_end": at_end,
            "tests_seconds": round(time.monotonic() - self.started, 1),
            "tests": dict(sorted(self.outcomes.items())),
        }
        path = Path(os.environ["DJANGO_SUITE_RESULT"])
        path.write_text(json.dumps(payload, indent=1) + "\n")
