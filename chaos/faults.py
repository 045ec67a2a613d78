"""The faults a trial injects into its first ``migrate`` run, one per trial.

A fault may change the first run's settings (``settings``: pgmigrate settings, or for plain
Django the equivalent PostgreSQL ``options``), do something at a random moment while it
runs (``inject``), and must take its cause away before the re-run (``remove``).
"""

from __future__ import annotations

import contextlib
import random
import re
import signal
import threading
import time
from typing import Any, ClassVar

import psycopg
from psycopg import sql

from chaos.child import Child
from chaos.outcome import chaos_tables
from chaos.server import Server

#: application_name of the session that holds a table lock in ``lock_timeout`` trials.
BLOCKER = "chaos-blocker"
LOCK_TIMEOUT = 0.2
#: ``statement_timeout`` trials draw a value in this range (milliseconds).
STATEMENT_TIMEOUT_MS = (5, 200)


class Fault:
    """No fault; the base of the others."""

    kind: ClassVar[str] = ""
    #: Whether the fault is injected at a random moment (else only ``settings`` matter).
    timed: ClassVar[bool] = True

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.note = ""

    def settings(self, plain: bool) -> tuple[dict[str, Any], str]:
        """Extra Django settings and libpq ``options`` for the first run."""
        return {}, ""

    def inject(self, server: Server, database: str, child: Child) -> str:
        """Inject the fault into the running ``child``; a description of what was done."""
        raise NotImplementedError

    def remove(self, server: Server) -> None:
        """Take the fault's cause away before the re-run."""

    def describe(self) -> str:
        return self.kind


class Signal(Fault):
    signum: ClassVar[signal.Signals]

    def inject(self, server: Server, database: str, child: Child) -> str:
        child.signal(self.signum)
        return f"sent {self.signum.name} to pid {child.pid}"


class Kill9(Signal):
    kind = "kill9"
    signum = signal.SIGKILL


class Sigterm(Signal):
    kind = "sigterm"
    signum = signal.SIGTERM


class Sigint(Signal):
    kind = "sigint"
    signum = signal.SIGINT


class Restart(Fault):
    kind = "restart"

    def inject(self, server: Server, database: str, child: Child) -> str:
        started = time.monotonic()
        server.restart()
        return f"pg_ctl restart -m fast ({time.monotonic() - started:.2f} s)"

    def remove(self, server: Server) -> None:
        server.wait_ready()


_BACKEND_PID = re.compile(r"migrating with PostgreSQL backend pid (\d+)")


class Terminate(Fault):
    """``pg_terminate_backend`` of the migrating backend: the pid pgmigrate printed, else
    the trial database's client backends not named "pgmigrate..." (its watcher)."""

    kind = "terminate"

    def inject(self, server: Server, database: str, child: Child) -> str:
        candidates = [
            pid
            for (pid,) in server.query(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                " AND application_name NOT LIKE 'pgmigrate%%'",
                [database],
            )
        ]
        printed = [int(pid) for pid in _BACKEND_PID.findall(child.output)]
        targets = [pid for pid in printed[-1:] if pid in candidates] or candidates
        ended = [
            pid
            for pid in targets
            if server.query("SELECT pg_terminate_backend(%s)", [pid]) == [(True,)]
        ]
        if not ended:
            return "no migrating backend to terminate"
        return f"pg_terminate_backend({', '.join(map(str, ended))})"


class LockTimeout(Fault):
    """A protected session takes ``ACCESS SHARE`` on a random chaos table while migrate runs
    with a short lock timeout; it keeps the lock until the first run has ended."""

    kind = "lock_timeout"

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self._conn: psycopg.Connection | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()
        self._started = 0.0
        self._granted: float | None = None
        self._error = ""

    def settings(self, plain: bool) -> tuple[dict[str, Any], str]:
        if plain:
            return {}, f"-c lock_timeout={LOCK_TIMEOUT * 1000:.0f}ms"
        protected = {"application_name": [BLOCKER]}
        return {"PGMIGRATE_LOCK_TIMEOUT": LOCK_TIMEOUT, "PGMIGRATE_PROTECTED": protected}, ""

    def inject(self, server: Server, database: str, child: Child) -> str:
        try:
            self._conn = conn = server.connect(database, application_name=BLOCKER)
            tables = chaos_tables(conn)
        except psycopg.Error as exc:
            return f"blocker could not connect: {str(exc).strip().splitlines()[0]}"
        if not tables:
            return "no chaos table to lock yet"
        table = self.rng.choice(tables)
        self._thread = threading.Thread(
            target=self._hold, args=(conn, table), name="chaos-blocker", daemon=True
        )
        self._started = time.monotonic()
        self._thread.start()
        return f"LOCK TABLE {table} IN ACCESS SHARE MODE"

    def _hold(self, conn: psycopg.Connection, table: str) -> None:
        try:
            with conn.transaction():
                conn.execute(
                    sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(sql.Identifier(table))
                )
                self._granted = time.monotonic() - self._started
                self._release.wait()
        except psycopg.Error as exc:
            self._error = str(exc).strip().splitlines()[0]

    def remove(self, server: Server) -> None:
        self._release.set()
        if self._thread is not None:
            if self._granted is None and self._conn is not None:
                with contextlib.suppress(psycopg.Error):
                    self._conn.cancel()  # still queued for the lock
            self._thread.join(30)
            if self._error:
                self.note = f"blocker: {self._error}"
            elif self._granted is None:
                self.note = "blocker never got its lock"
            else:
                self.note = f"blocker got its lock after {self._granted * 1000:.0f} ms"
        if self._conn is not None:
            self._conn.close()


class StatementTimeout(Fault):
    """The first run has a small random statement timeout (the re-run none)."""

    kind = "statement_timeout"
    timed = False

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.milliseconds = rng.randint(*STATEMENT_TIMEOUT_MS)

    def settings(self, plain: bool) -> tuple[dict[str, Any], str]:
        if plain:
            return {}, f"-c statement_timeout={self.milliseconds}ms"
        return {"PGMIGRATE_STATEMENT_TIMEOUT": self.milliseconds / 1000}, ""

    def describe(self) -> str:
        return f"statement_timeout {self.milliseconds} ms"


FAULTS: dict[str, type[Fault]] = {
    fault.kind: fault
    for fault in (Kill9, Sigterm, Sigint, Restart, Terminate, LockTimeout, StatementTimeout)
}
