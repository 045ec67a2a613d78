"""Ctrl-C and SIGTERM during a blocked ``manage.py migrate``."""

import json
import signal
import subprocess
import sys

import pytest

from tests.helpers import (
    ROOT,
    Session,
    applied,
    columns,
    is_alive,
    is_waiting_on_lock,
    manage_env,
    migrate,
    pgmigrate_sessions,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


@pytest.mark.parametrize(
    ("signum", "returncode", "name"),
    [(signal.SIGINT, 130, "SIGINT (Ctrl-C)"), (signal.SIGTERM, 143, "SIGTERM")],
    ids=["sigint", "sigterm"],
)
def test_signal_ends_a_blocked_migrate_cleanly(scenario, sessions, signum, returncode, name):
    migrate("tests", "0001")
    blocker = Session().hold("tests_alpha")  # blocks the migration's first statement
    sessions.append(blocker)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "migrate", "tests"],
        cwd=ROOT,
        env=manage_env(
            PGMIGRATE_TEST_ACTION="",
            PGMIGRATE_TEST_SETTINGS=json.dumps({"PGMIGRATE_STEP_ASIDE": False}),
            PYTHONUNBUFFERED="1",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pid_line = next(line for line in process.stderr if "backend pid " in line)
        backend_pid = int(pid_line.split("backend pid ")[1].split()[0])
        wait_until(lambda: is_waiting_on_lock(backend_pid), what="migrate waits on the lock")
        process.send_signal(signum)
        _, rest = process.communicate(timeout=30)
        stderr = pid_line + rest
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == returncode, stderr
    assert "Traceback" not in stderr
    assert f"migration tests.0002_add_fields interrupted by {name}" in stderr
    wait_until(lambda: not is_alive(backend_pid), what="the migrating backend ended")
    wait_until(lambda: not pgmigrate_sessions(), what="pgmigrate's connections are gone")
    # History and schema agree: 0002 is neither recorded nor applied.
    assert applied() == ["0001_initial"]
    assert "flag" not in columns("tests_alpha")
    assert is_alive(blocker.pid)
