"""Helpers for tests: independent database sessions, waiting on conditions, running migrate."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.db import connections
from django.db.backends.signals import connection_created

from pgmigrate.watcher import CONNECTED

#: The repository's root (where manage.py is).
ROOT = Path(__file__).resolve().parent.parent
#: How long a test waits for a condition before failing (a safety net, not a speed target).
WAIT_TIMEOUT = 30.0
POLL_EVERY = 0.005


def wait_until(predicate: Callable[[], Any], *, what: str, timeout: float = WAIT_TIMEOUT) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(POLL_EVERY)


def query(sql: str, params: Any = None, *, using: str = "default") -> list[tuple[Any, ...]]:
    """Run ``sql`` on the test's own connection for ``using`` and return all rows."""
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


class Session:
    """A database session of its own (like another app server), independent of Django's."""

    def __init__(
        self,
        using: str = "default",
        *,
        application_name: str = "test-session",
        user: str | None = None,
        database: str | None = None,
    ):
        settings_dict = dict(connections[using].settings_dict)
        if user is not None:
            settings_dict["USER"] = user
        if database is not None:
            settings_dict["NAME"] = database
        settings_dict["OPTIONS"] = {
            **settings_dict.get("OPTIONS", {}),
            "application_name": application_name,
        }
        self.using = using
        self.connection = type(connections[using])(settings_dict, using)
        self.connection.inc_thread_sharing()  # tests may use it from a helper thread
        self.connection.ensure_connection()
        self.pid = self.execute("SELECT pg_backend_pid()")[0][0]

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def hold(self, table: str, mode: str = "ACCESS SHARE") -> Session:
        """Open a transaction holding a lock on ``table`` and stay idle in it."""
        self.connection.set_autocommit(False)
        self.execute(f"LOCK TABLE {table} IN {mode} MODE")
        return self

    def release(self) -> None:
        """End the open transaction (releasing its locks)."""
        self.connection.rollback()
        self.connection.set_autocommit(True)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already terminated by the server
            self.connection.close()


def is_alive(pid: int, using: str = "default") -> bool:
    return bool(query("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid], using=using))


def is_waiting_on_lock(pid: int, using: str = "default") -> bool:
    return bool(query("SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", [pid], using=using))


def waited_at_least(pid: int, seconds: float, using: str = "default") -> bool:
    """True when ``pid`` has been waiting on a lock for ``seconds`` (server clock)."""
    return bool(
        query(
            "SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted"
            " AND now() - waitstart >= make_interval(secs => %s)",
            [pid, seconds],
            using=using,
        )
    )


def locked_tables(pid: int, using: str = "default") -> set[str]:
    """Tables on which ``pid`` holds a granted lock."""
    rows = query(
        "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " WHERE l.pid = %s AND l.granted AND c.relkind = 'r'",
        [pid],
        using=using,
    )
    return {name for (name,) in rows}


def columns(table: str, using: str = "default") -> set[str]:
    rows = query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
        [table],
        using=using,
    )
    return {name for (name,) in rows}


def applied(using: str = "default", app: str = "tests") -> list[str]:
    rows = query(
        "SELECT name FROM django_migrations WHERE app = %s ORDER BY name", [app], using=using
    )
    return [name for (name,) in rows]


def manage_env(**env: str) -> dict[str, str]:
    """Environment of a ``manage.py`` child process using this test's database."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.subprocess_settings",
        "PGMIGRATE_TEST_DB_NAME": connections["default"].settings_dict["NAME"],
        **env,
    }


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py`` with ``args`` in a child process (this test's database, ``env``
    added to its environment); what it printed and its exit status."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=manage_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def pgmigrate_sessions(using: str = "default") -> list[tuple[int, str]]:
    return query(
        "SELECT pid, application_name FROM pg_stat_activity"
        " WHERE application_name LIKE 'pgmigrate%%' AND pid <> pg_backend_pid()",
        using=using,
    )


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pgmigrate-watcher")]


#: What the watcher prints when one of its own steps fails (a bug, unless a test provokes it).
WATCHER_ERROR = "pgmigrate: error while"


def migrate(*args: Any, **options: Any) -> str:
    """``call_command("migrate", ...)`` returning what it printed."""
    out = _SafeStringIO()
    options.setdefault("verbosity", 1)
    try:
        call_command("migrate", *args, stdout=out, stderr=out, no_color=True, **options)
    finally:
        assert WATCHER_ERROR not in out.getvalue(), out.getvalue()
    return out.getvalue()


class MigrateThread(threading.Thread):
    """Runs ``migrate`` in a thread of its own so the test can watch and intervene."""

    def __init__(self, *args: Any, command: str = "migrate", **options: Any) -> None:
        super().__init__(name="test-migrate", daemon=True)
        self.args, self.options, self.command = args, options, command
        self.output = _SafeStringIO()
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.options.setdefault("verbosity", 1)
            call_command(
                self.command,
                *self.args,
                stdout=self.output,
                stderr=self.output,
                no_color=True,
                **self.options,
            )
        except BaseException as exc:
            self.error = exc
        finally:
            connections.close_all()

    @property
    def backend_pid(self) -> int:
        """The migrating backend's pid, as printed by pgmigrate."""
        match = wait_until(
            lambda: re.search(r"backend pid (\d+)", self.output.getvalue()),
            what="migrate printed its backend pid",
        )
        return int(match.group(1))

    def finish(self, *, watcher_errors: bool = False) -> str:
        """Wait for the command to end; re-raise its error; return its output."""
        self.join(WAIT_TIMEOUT)
        assert not self.is_alive(), "migrate did not finish"
        if not watcher_errors:
            assert WATCHER_ERROR not in self.output.getvalue(), self.output.getvalue()
        if self.error is not None:
            raise self.error
        return self.output.getvalue()


class _SafeStringIO(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            return super().write(text)

    def getvalue(self) -> str:
        with self._lock:
            return super().getvalue()


def blocked_migrate(sessions: list, table: str = "tests_beta", **options: Any) -> tuple:
    """Apply 0001, block ``table`` from another session, then start migrating to 0002 and
    wait until the migration waits on that lock. Returns ``(blocker, run)``."""
    migrate("tests", "0001", verbosity=0)
    blocker = Session().hold(table)
    sessions.append(blocker)
    run = MigrateThread("tests", "0002", **options)
    wait_until(lambda: is_waiting_on_lock(run.backend_pid), what=f"migrate waits on {table}")
    return blocker, run


@contextlib.contextmanager
def slow_autovacuum_on_beta() -> Iterator[int]:
    """An autovacuum worker that holds its SHARE UPDATE EXCLUSIVE lock on ``tests_beta`` for
    long (it vacuums about a page every 100 ms, of hundreds); yields its pid. ``tests_beta``
    must exist (migration tests 0001)."""
    query("INSERT INTO tests_beta (name) SELECT repeat('x', 200) FROM generate_series(1, 20000)")
    query("DELETE FROM tests_beta")
    query(
        "ALTER TABLE tests_beta SET (autovacuum_vacuum_threshold = 0,"
        " autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100,"
        " autovacuum_vacuum_cost_limit = 1)"
    )
    query("ALTER SYSTEM SET autovacuum_naptime = 1")
    query("SELECT pg_reload_conf()")
    try:
        ((worker,),) = wait_until(
            lambda: query(
                "SELECT a.pid FROM pg_stat_activity AS a JOIN pg_locks AS l ON l.pid = a.pid"
                " WHERE a.backend_type = 'autovacuum worker'"
                " AND l.relation = 'tests_beta'::regclass AND l.granted"
            ),
            what="autovacuum works on tests_beta",
        )
        yield worker
    finally:
        query("ALTER SYSTEM RESET autovacuum_naptime")
        query("SELECT pg_reload_conf()")


#: ``Terminate``'s signal statement, as the watcher prepares it (``WatcherStatements``).
TERMINATE_SIGNAL = "pgmigrate_pg_terminate_backend_checked"


class WatcherStatements:
    """The statements of pgmigrate's watcher connections, recorded as they run (attached to
    each watcher connection made while ``recording()`` is open)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        self.statements.append(str(sql))
        return execute(sql, params, many, context)

    def attach(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        options = connection.settings_dict.get("OPTIONS", {})
        if options.get("application_name") == "pgmigrate watcher":
            connection.execute_wrappers.append(self)

    def executed(self, name: str) -> int:
        """How many times the prepared statement ``name`` was executed."""
        return sum(sql.startswith(f"EXECUTE {name}(") for sql in self.statements)

    def beyond_warm_up(self, name: str) -> int:
        """``executed(name)`` but for the once per watcher connection of its warm-up."""
        return self.executed(name) - self.statements.count(CONNECTED)

    @contextlib.contextmanager
    def recording(self) -> Iterator[WatcherStatements]:
        connection_created.connect(self.attach)
        try:
            yield self
        finally:
            connection_created.disconnect(self.attach)
