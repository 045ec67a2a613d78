"""A real PgBouncer in front of the test server, started by the tests (Debian: ``apt-get
install pgbouncer``; ``$PGBOUNCER`` names another binary).

``started(mode)`` runs one in the foreground, on 127.0.0.1 and a free port, with
``pool_mode = mode`` and a configuration of its own (``auth_type = trust``, the server's
role in its ``auth_file``), and stops it when the block ends. Run as root, PgBouncer (which
refuses to run as root) runs as the OS user that owns the server's Unix socket directory,
else as ``postgres`` or ``nobody``. Without the binary the tests skip, unless ``$CI`` is set:
then they fail, so CI cannot pass without them.

``pooled_alias`` points the ``pgbouncer`` alias of ``DATABASES`` (settings.py) at it;
``PoolClient`` is a client of the pool (an app server); ``AppTraffic`` runs a few of them,
each querying without pause and noting anything another client left on its server
connection; ``pool_backends`` looks at every server connection of the pool.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from tests.helpers import wait_until

#: The ``DATABASES`` alias of the test database that ``pooled_alias`` points at a PgBouncer.
ALIAS = "pgbouncer"
#: Environment variable naming the pgbouncer binary to use.
BINARY_VARIABLE = "PGBOUNCER"
#: How long PgBouncer may take to listen, and to stop.
START_TIMEOUT = STOP_TIMEOUT = 15.0
#: Ports tried before giving up (another process may take a free port before PgBouncer does).
START_ATTEMPTS = 3
#: What a backend may carry from one client to the next: its settings that pgmigrate sets,
#: and the advisory locks it holds.
STATE = (
    "SELECT pg_backend_pid(), current_setting('lock_timeout'),"
    " current_setting('statement_timeout'),"
    " current_setting('client_connection_check_interval', true),"
    " current_setting('plan_cache_mode'), current_setting('jit'),"
    " (SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'pgmigrate%%'),"
    " (SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory')"
)


def binary() -> str:
    """The pgbouncer binary; skips the test without one (fails it when ``$CI`` is set)."""
    found = os.environ.get(BINARY_VARIABLE) or shutil.which("pgbouncer")
    if not found and os.access("/usr/sbin/pgbouncer", os.X_OK):
        found = "/usr/sbin/pgbouncer"  # Debian's, off a non-root PATH
    if found:
        return found
    reason = (
        "no pgbouncer binary: install it (Debian: apt-get install pgbouncer) or set "
        f"${BINARY_VARIABLE}"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the PgBouncer tests")
    pytest.skip(reason)


#: ``State.settings()``: how many of them the migrating connection sets (the others are the
#: watcher's session's).
MIGRATION = 3


@dataclass
class State:
    """What one server connection of the pool carries (``STATE``)."""

    pid: int
    lock_timeout: str
    statement_timeout: str
    check_interval: str | None
    #: The watcher's session settings: its plan cache mode, JIT and its prepared statements.
    plan_cache_mode: str
    jit: str
    prepared: int
    advisory_locks: int

    def settings(self) -> tuple[str, str, str | None, str, str, int]:
        return (
            self.lock_timeout,
            self.statement_timeout,
            self.check_interval,
            self.plan_cache_mode,
            self.jit,
            self.prepared,
        )


def state(connection: Any) -> State:
    with connection.cursor() as cursor:
        cursor.execute(STATE)
        return State(*cursor.fetchone())


class PgBouncer:
    """A running PgBouncer (see ``started``)."""

    def __init__(self, mode: str, pool_size: int, reset_query: str | None) -> None:
        self.mode = mode
        self.pool_size = pool_size
        self.server = connections["default"].settings_dict
        self.home = Path(tempfile.mkdtemp(prefix="pgmigrate-pgbouncer-")).resolve()
        self.log = self.home / "pgbouncer.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._user = _os_user(self.server.get("HOST") or "")
        self._reset_query = reset_query

    def settings_dict(self) -> dict[str, Any]:
        """Django settings of a connection to the test database through this PgBouncer."""
        return {**self.server, "HOST": "127.0.0.1", "PORT": str(self.port)}

    def _write_config(self) -> Path:
        host, port = self.server.get("HOST") or "localhost", self.server.get("PORT") or "5432"
        extra = (
            f"server_reset_query = {self._reset_query}\n" if self._reset_query is not None else ""
        )
        config = self.home / "pgbouncer.ini"
        config.write_text(
            f"[databases]\n* = host={host} port={port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.home / 'users.txt'}\n"
            f"pool_mode = {self.mode}\ndefault_pool_size = {self.pool_size}\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"{extra}"
        )
        users = self.home / "users.txt"
        users.write_text(
            '"{}" "{}"\n'.format(self.server["USER"], self.server.get("PASSWORD") or "")
        )
        if self._user is not None:  # mkdtemp's directory is 0700: hand it over
            for path in (self.home, config, users):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        return config

    def start(self) -> None:
        for _attempt in range(START_ATTEMPTS):
            if self._start_on(free_port()):
                return
        raise AssertionError(f"PgBouncer did not start:\n{self._log_text()}")

    def _start_on(self, port: int) -> bool:
        """Start PgBouncer on ``port``; False if it ended instead (the port was taken)."""
        self.port = port
        config = self._write_config()
        with self.log.open("ab") as log:
            self.process = process = subprocess.Popen(
                [binary(), str(config)],
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self._user.pw_uid if self._user else None,
                group=self._user.pw_gid if self._user else None,
                extra_groups=[] if self._user else None,
                start_new_session=True,
            )
        listening = f"listening on 127.0.0.1:{port}"
        wait_until(
            lambda: listening in self._log_text() or process.poll() is not None,
            what=f"PgBouncer listens on port {port}",
            timeout=START_TIMEOUT,
        )
        if process.poll() is None:
            return True
        process.wait()
        return False

    def _log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """Stop PgBouncer (immediate shutdown) and remove its directory."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        shutil.rmtree(self.home, ignore_errors=True)


def _os_user(host: str) -> pwd.struct_passwd | None:
    """The OS user PgBouncer runs as: None (this process's) unless this is root; as root,
    the owner of the server's socket directory (it may let its owner alone in), else
    ``postgres`` or ``nobody``."""
    if os.geteuid() != 0:
        return None
    if host.startswith("/") and os.path.isdir(host):
        owner = os.stat(host).st_uid
        if owner != 0:
            return pwd.getpwuid(owner)
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("no OS user to run PgBouncer as (it refuses to run as root)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def started(
    mode: str, *, pool_size: int = 4, reset_query: str | None = None
) -> Iterator[PgBouncer]:
    """A PgBouncer with ``pool_mode = mode`` in front of the test server, for the block.
    ``reset_query``: its ``server_reset_query`` (PgBouncer's default, ``DISCARD ALL``, when
    None; ``""`` for none, so that a server connection's next client sees what the last one
    left)."""
    binary()  # skips (or fails, on CI) before anything is made
    bouncer = PgBouncer(mode, pool_size, reset_query)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()


@contextlib.contextmanager
def pooled_alias(bouncer: PgBouncer, alias: str = ALIAS) -> Iterator[str]:
    """Point ``DATABASES[alias]`` (the test database) at ``bouncer`` for the block. Its
    settings dict is shared by the alias's connections in every thread."""
    settings_dict = connections[alias].settings_dict
    saved = {key: settings_dict.get(key) for key in ("HOST", "PORT")}
    connections[alias].close()
    settings_dict.update(HOST="127.0.0.1", PORT=str(bouncer.port))
    try:
        yield alias
    finally:
        connections[alias].close()
        settings_dict.update(saved)


class PoolClient:
    """A client of the pool (like an app server), with a Django connection of its own."""

    def __init__(self, bouncer: PgBouncer, application_name: str = "pool-client") -> None:
        settings_dict = bouncer.settings_dict()
        settings_dict["OPTIONS"] = {
            **settings_dict.get("OPTIONS", {}),
            "application_name": application_name,
        }
        self.connection = type(connections["default"])(settings_dict, "default")
        self.connection.inc_thread_sharing()
        self.connection.ensure_connection()

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def hold(self, table: str, mode: str = "ACCESS SHARE") -> PoolClient:
        """Open a transaction holding a lock on ``table`` and stay idle in it."""
        self.connection.set_autocommit(False)
        self.execute(f"LOCK TABLE {table} IN {mode} MODE")
        return self

    def pid(self) -> int:
        return self.execute("SELECT pg_backend_pid()")[0][0]

    def close(self) -> None:
        with contextlib.suppress(Exception):  # its server connection may have been ended
            self.connection.close()


def pool_backends(bouncer: PgBouncer) -> list[State]:
    """The state of every server connection of the pool: as many clients as the pool has
    server connections, each in a transaction (so each gets one of its own, the idle ones
    first), read it at once. Call it when no other client is connected."""
    clients = [PoolClient(bouncer, f"pool-check-{i}") for i in range(bouncer.pool_size)]
    try:
        for client in clients:
            client.connection.set_autocommit(False)
        return [state(client.connection) for client in clients]
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.connection.rollback()
            client.close()


@dataclass
class AppTraffic:
    """``clients`` app clients querying through ``bouncer`` without pause, each in a thread
    of its own, until the block ends. Each query also reads what its server connection
    carries: what differs from ``expected`` (the settings of a fresh session) is in
    ``leaks``; errors are in ``errors``."""

    bouncer: PgBouncer
    clients: int
    expected: tuple[str, str, str | None, str, int]
    #: False: what the watcher's own session sets is not counted (``State.migration``).
    watcher: bool = True
    queries: int = 0
    leaks: list[State] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"app-{i}", daemon=True)
            for i in range(self.clients)
        ]

    def _run(self, index: int) -> None:
        client = None
        try:
            client = PoolClient(self.bouncer, f"app-{index}")
            while not self._stop.is_set():
                seen = state(client.connection)
                with self._lock:
                    self.queries += 1
                    settings, expected = seen.settings(), self.expected
                    if not self.watcher:
                        settings, expected = settings[:MIGRATION], expected[:MIGRATION]
                    if settings != expected or seen.advisory_locks:
                        self.leaks.append(seen)
        except Exception as exc:
            with self._lock:
                self.errors.append(f"app-{index}: {type(exc).__name__}: {exc}")
        finally:
            if client is not None:
                client.close()

    def __enter__(self) -> AppTraffic:
        for thread in self._threads:
            thread.start()
        wait_until(
            lambda: self.queries >= 10 * self.clients or self.errors,
            what="the app clients are querying",
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(START_TIMEOUT)
