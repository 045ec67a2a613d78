"""Sessions pgmigrate never ends: replication senders, autovacuum, and ``PGMIGRATE_PROTECTED``."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


def reason_protected(row: Mapping[str, object], rules: Rules) -> str | None:
    """Why the session described by ``row`` (a ``pg_stat_activity`` row) is protected."""
    always = _match(row, ALWAYS_PROTECTED)
    if always:
        return f"always protected: {always}"
    chosen = _match(row, rules)
    return chosen and f"PGMIGRATE_PROTECTED: {chosen}"


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
