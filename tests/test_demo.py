"""``python -m demo`` (``make demo``): both runs, their outcome in words, and no leftovers."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT, query

pytestmark = pytest.mark.django_db

HOLD = 1.0


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demo", *args],
        cwd=ROOT,
        env=os.environ.copy(),  # $DATABASE_URL: the test suite's server
        capture_output=True,
        text=True,
        timeout=120,
    )


def stalls(output: str) -> tuple[float, float]:
    """The app's worst query stall, in seconds: (plain Django, pgmigrate)."""
    line = next(line for line in output.splitlines() if "app's worst query stall" in line)
    values = re.findall(r"([\d,.]+) ms", line)
    plain, pgmigrate = (float(value.replace(",", "")) / 1000 for value in values)
    return plain, pgmigrate


def demo_databases() -> list[tuple[str]]:
    return query("SELECT datname FROM pg_database WHERE datname LIKE 'pgmigrate\\_demo%%'")


def test_demo_runs_plain_django_then_pgmigrate():
    result = run_demo("--hold", str(HOLD))
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())  # undo the line wrapping
    assert "plain Django: the blocking session (pid" in out
    assert "idle in transaction) was left alone." in out
    assert re.search(
        r"pgmigrate: the blocking session \(pid \d+, application 'report', idle in "
        r"transaction\) was ended [\d.]+ ms after migrate started",
        out,
    )
    assert "pgmigrate: terminated 1 session blocking the migration" in out
    plain, pgmigrate = stalls(result.stdout)
    # Plain Django waits for the blocker, which the demo rolls back after HOLD seconds.
    assert HOLD / 2 < plain < HOLD + 1
    assert pgmigrate < plain
    assert demo_databases() == []


def test_demo_show_steps_out_of_the_lock_queue():
    result = run_demo("--hold", "0.3", "--blocking-action", "show")
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "was shown and left alone (--blocking-action show)" in out
    assert "pgmigrate stepped the ALTER out of the lock queue, so the app's queries went on" in out
    assert "to end it: SELECT pg_terminate_backend(" in out
    assert demo_databases() == []


def test_demo_help_and_bad_arguments():
    result = run_demo("--help")
    assert result.returncode == 0
    assert "--blocking-action {terminate,cancel,show,none}" in result.stdout
    assert "--hold SECONDS" in result.stdout
    assert run_demo("--hold", "-1").returncode == 2
