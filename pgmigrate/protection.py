"""Sessions pgmigrate never ends: replication senders, autovacuum, ``PGMIGRATE_PROTECTED``,
and sessions whose protection it cannot decide because PostgreSQL hides the columns to judge.
"""

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

#: The columns of ``pg_stat_activity`` that PostgreSQL shows of every session to every role.
#: Of the sessions of a role whose privileges it lacks, a role that is neither a superuser
#: nor has the privileges of ``pg_read_all_stats`` sees the other columns as NULL (``query``
#: as ``<insufficient privilege>``); checked on PostgreSQL 15 and 18.
VISIBLE_TO_ALL = frozenset(
    {
        "datid",
        "datname",
        "pid",
        "usesysid",
        "usename",
        "application_name",
        "backend_xid",
        "backend_xmin",
    }
)

#: Always protected, whatever the settings say.
ALWAYS_PROTECTED: Mapping[str, Sequence[str]] = {
    "backend_type": ("walsender", "autovacuum worker", "autovacuum launcher"),
}

Rules = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Verdict:
    """Whether a blocking session may be ended.

    ``reason`` says why it is protected. Otherwise ``hidden`` names the columns of
    ``PGMIGRATE_PROTECTED`` that PostgreSQL hides of this session from the migrating role:
    whether the session is protected cannot be decided, so it is treated as protected. The
    session may be ended when both are empty.
    """

    reason: str | None = None
    hidden: tuple[str, ...] = ()

    @property
    def may_end(self) -> bool:
        return self.reason is None and not self.hidden


def hidden_columns(rules: Rules) -> tuple[str, ...]:
    """The columns named by ``rules`` that PostgreSQL may hide from the migrating role."""
    return tuple(sorted(column for column in rules if column not in VISIBLE_TO_ALL))


def judge(row: Mapping[str, object], rules: Rules, *, visible: bool, walsender: bool) -> Verdict:
    """Judge the session described by ``row`` (its ``pg_stat_activity`` columns).

    ``visible``: whether the migrating role sees all of the session's columns (superuser,
    privileges of ``pg_read_all_stats`` or of the session's role); if not, only the columns
    of ``VISIBLE_TO_ALL`` are judged. ``walsender``: whether the session is a WAL sender
    (``pg_stat_get_wal_senders()`` lists its pid to every role).
    """
    always = _always_protected(row, walsender=walsender)
    if always:
        return Verdict(reason=f"always protected: {always}")
    judged = rules if visible else {c: p for c, p in rules.items() if c in VISIBLE_TO_ALL}
    chosen = _match(row, judged)
    if chosen:
        return Verdict(reason=f"PGMIGRATE_PROTECTED: {chosen}")
    return Verdict(hidden=() if visible else hidden_columns(rules))


def _always_protected(row: Mapping[str, object], *, walsender: bool) -> str | None:
    by_type = _match(row, ALWAYS_PROTECTED)
    if by_type:
        return by_type
    if walsender:
        return "a WAL sender (replication), listed by pg_stat_replication"
    if row.get("usesysid") is None:
        # Client backends, WAL senders and background workers have a user; autovacuum and
        # PostgreSQL's other own processes do not (and hide their backend_type).
        return "a server process without a user (autovacuum or another PostgreSQL process)"
    return None


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
