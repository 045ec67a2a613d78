"""Per-operation progress of statement-by-statement migrations, so a failed one resumes.

The table ``pgmigrate_progress`` (created on first use, like ``django_migrations``) holds,
for each migration that stopped part of the way through, how many of its operations are
applied, and a fingerprint of its operations to notice when the migration file changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

TABLE = "pgmigrate_progress"


def fingerprint(migration: Any) -> str:
    """A digest of the migration's operations (class and description, in order)."""
    text = "\n".join(f"{type(op).__name__}: {op.describe()}" for op in migration.operations)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    fingerprint: str


class ProgressRecorder:
    """Reads and writes ``pgmigrate_progress`` on one connection."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._known: dict[tuple[str, str], Progress] | None = None
        self._table_exists = False

    def load(self) -> dict[tuple[str, str], Progress]:
        """All recorded progress (one query; none if the table does not exist yet)."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [TABLE])
            self._table_exists = cursor.fetchone()[0]
            known: dict[tuple[str, str], Progress] = {}
            if self._table_exists:
                cursor.execute(f"SELECT app, name, done, total, fingerprint FROM {TABLE}")
                for app, name, done, total, digest in cursor.fetchall():
                    known[(app, name)] = Progress(done, total, digest)
        self._known = known
        return known

    def get(self, app: str, name: str) -> Progress | None:
        known = self._known if self._known is not None else self.load()
        return known.get((app, name))

    def save(self, migration: Any, done: int) -> None:
        with self.connection.cursor() as cursor:
            if not self._table_exists:
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                    " app varchar(255) NOT NULL, name varchar(255) NOT NULL,"
                    " done integer NOT NULL, total integer NOT NULL,"
                    " fingerprint varchar(64) NOT NULL,"
                    " updated timestamptz NOT NULL DEFAULT now(),"
                    " PRIMARY KEY (app, name))"
                )
                self._table_exists = True
            cursor.execute(
                f"INSERT INTO {TABLE} (app, name, done, total, fingerprint)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (app, name) DO UPDATE"
                " SET done = EXCLUDED.done, total = EXCLUDED.total,"
                " fingerprint = EXCLUDED.fingerprint, updated = now()",
                [
                    migration.app_label,
                    migration.name,
                    done,
                    len(migration.operations),
                    fingerprint(migration),
                ],
            )
        if self._known is not None:
            self._known[(migration.app_label, migration.name)] = Progress(
                done, len(migration.operations), fingerprint(migration)
            )

    def forget(self, app: str, name: str) -> None:
        """Drop the progress of one migration (it is now applied, or being restarted)."""
        if self._known is not None and (app, name) not in self._known:
            return
        with self.connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {TABLE} WHERE app = %s AND name = %s", [app, name])
        if self._known is not None:
            self._known.pop((app, name), None)

    def forget_all(self) -> int:
        """Drop all recorded progress (``--pgmigrate-restart``); return how many rows."""
        known = self.load()
        if known:
            with self.connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {TABLE}")
        self._known = {}
        return len(known)
