"""Sessions pgmigrate never ends: replication senders, autovacuum, and ``PGMIGRATE_PROTECTED``."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.db import connections

#: Columns of ``pg_stat_activity`` (PostgreSQL 14 to 18) that protection rules may name.
ACTIVITY_COLUMNS = frozenset(
    {
        "datid",
        "datname",
        "pid",
        "leader_pid",
        "usesysid",
        "usename",
        "application_name",
        "client_addr",
        "client_hostname",
        "client_port",
        "backend_start",
        "xact_start",
        "query_start",
        "state_change",
        "wait_event_type",
        "wait_event",
        "state",
        "backend_xid",
        "backend_xmin",
        "query_id",
        "query",
        "backend_type",
    }
)

#: Always protected, whatever the settings say.
ALWAYS_PROTECTED: Mapping[str, Sequence[str]] = {
    "backend_type": ("walsender", "autovacuum worker", "autovacuum launcher"),
}

Rules = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class ProtectedBlocker:
    """A blocking session left alone, and the rule that protects it."""

    pid: int
    usename: str | None
    application_name: str | None
    reason: str


def _match(row: Mapping[str, object], rules: Rules) -> str | None:
    for column, patterns in rules.items():
        value = row.get(column)
        if value is None:
            continue
        text = str(value)
        for pattern in patterns:
            if fnmatch.fnmatchcase(text, pattern):
                return f"{column} {text!r} matches {pattern!r}"
    return None


def protected_blockers(backend_pid: int, using: str, rules: Rules) -> list[ProtectedBlocker]:
    """The sessions blocking ``backend_pid`` that ``rules`` (or ``ALWAYS_PROTECTED``) protect."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT * FROM pg_stat_activity WHERE pid = ANY(pg_blocking_pids(%s))"
            " AND datname = current_database()",
            [backend_pid],
        )
        names = [column.name for column in cursor.description]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    found = []
    for row in rows:
        always = _match(row, ALWAYS_PROTECTED)
        reason = always and f"always protected: {always}"
        if reason is None:
            chosen = _match(row, rules)
            reason = chosen and f"PGMIGRATE_PROTECTED: {chosen}"
        if reason:
            found.append(
                ProtectedBlocker(
                    pid=int(row["pid"]),  # type: ignore[arg-type]
                    usename=row.get("usename"),  # type: ignore[arg-type]
                    application_name=row.get("application_name"),  # type: ignore[arg-type]
                    reason=reason,
                )
            )
    return found
