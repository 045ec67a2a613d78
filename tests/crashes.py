"""Helpers for tests that stop ``migrate`` part of the way through: ``manage.py`` in a child
process that a test watches and then kills for real, and what the database holds meanwhile
(locks, indexes, progress, sessions holding an old snapshot).

A child runs in a session of its own (``start_new_session``), so a signal the test sends
reaches it alone. Its output is read as it comes (by two threads), so a test can wait on
what it printed. Leaving its ``with`` block kills and reaps it, whatever happened.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from typing import IO

from tests.helpers import ROOT, Session, is_alive, manage_env, query, wait_until

#: The longest a test waits for a child to end.
CHILD_TIMEOUT = 60.0
#: How long a test waits for the server to end the backend of a killed ``migrate``
#: (``client_connection_check_interval`` is 0.5 s).
BACKEND_GONE_TIMEOUT = 10.0


def progress_rows() -> list[tuple]:
    if not query("SELECT to_regclass('pgmigrate_progress')")[0][0]:
        return []
    return query(
        "SELECT app, name, done, total, direction, statements, inflight FROM pgmigrate_progress"
    )


def index_state(name: str) -> tuple[int, bool] | None:
    """(oid, valid) of index ``name``, or None if there is none."""
    rows = query(
        "SELECT indexrelid::int, indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
        [name],
    )
    return rows[0] if rows else None


def holds_lock(pid: int, table: str) -> bool:
    """Whether ``pid`` holds a (granted) lock on ``table``."""
    return bool(
        query(
            "SELECT 1 FROM pg_locks WHERE pid = %s AND granted AND relation = to_regclass(%s)",
            [pid, table],
        )
    )


def waits_on(pid: int, table: str) -> bool:
    """Whether ``pid`` waits for a lock on ``table``."""
    return bool(
        query(
            "SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted AND relation = to_regclass(%s)",
            [pid, table],
        )
    )


def hold_snapshot(sessions: list) -> Session:
    """A session in a REPEATABLE READ transaction that holds a snapshot (reading another
    table): ``CREATE INDEX CONCURRENTLY`` waits for it to end before it finishes."""
    holder = Session(application_name="old-snapshot")
    sessions.append(holder)
    holder.connection.set_autocommit(False)
    holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    holder.execute("SELECT count(*) FROM tests_gamma")
    return holder


def waits_for_old_snapshot(pid: int, index: str) -> bool:
    """``pid`` builds ``index`` concurrently and waits for another transaction to end."""
    return bool(
        query(
            "SELECT 1 FROM pg_stat_progress_create_index p JOIN pg_locks l"
            " ON l.pid = p.pid AND l.locktype = 'virtualxid' AND NOT l.granted"
            " WHERE p.pid = %s AND p.index_relid = to_regclass(%s)",
            [pid, index],
        )
    )


class ManageProcess:
    """``python manage.py <args>`` with ``manage_env(**env)``."""

    def __init__(self, *args: str, **env: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=manage_env(PYTHONUNBUFFERED="1", **env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._lock = threading.Lock()
        self._out: list[str] = []
        self._err: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(
                target=self._read, args=(self.process.stdout, self._out), daemon=True
            ),
            threading.Thread(
                target=self._read, args=(self.process.stderr, self._err), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str], chunks: list[str]) -> None:
        for line in stream:
            with self._lock:
                chunks.append(line)

    @property
    def stdout(self) -> str:
        with self._lock:
            return "".join(self._out)

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self._err)

    @property
    def backend_pid(self) -> int:
        """The migrating backend's pid, as the child printed it."""
        match = wait_until(
            lambda: (
                re.search(r"backend pid (\d+)", self.stderr) or self.process.poll() is not None
            ),
            what="the child printed its backend pid",
            timeout=CHILD_TIMEOUT,
        )
        assert match is not True, f"the child ended early:\n{self.stdout}\n{self.stderr}"
        return int(match.group(1))

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: the process dies without running any code of its own."""
        self.process.send_signal(signal.SIGKILL)

    def kill_and_wait_for_backend(self, backend_pid: int) -> None:
        """SIGKILL the child, then wait until its backend ended: the server notices that the
        client is gone (``client_connection_check_interval``) instead of running the dead
        client's statement on to its end."""
        self.kill()
        assert self.wait() == -signal.SIGKILL
        wait_until(
            lambda: not is_alive(backend_pid),
            what="the killed migrate's backend ended",
            timeout=BACKEND_GONE_TIMEOUT,
        )

    def wait(self, timeout: float = CHILD_TIMEOUT) -> int:
        """Wait for the child to end (failing after ``timeout``); return its exit status, with
        all its output read."""
        try:
            returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the child did not end within {timeout} s:\n{self.stdout}\n{self.stderr}"
            ) from None
        for reader in self._readers:
            reader.join(CHILD_TIMEOUT)
        return returncode

    def close(self) -> None:
        """Kill (if still running) and reap the child; close its pipes."""
        if self.process.poll() is None:
            self.kill()
        self.process.wait(CHILD_TIMEOUT)
        for reader in self._readers:
            reader.join(CHILD_TIMEOUT)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> ManageProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
