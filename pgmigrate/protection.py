"""Sessions pgmigrate never ends: replication senders, autovacuum, ``PGMIGRATE_PROTECTED``,
and sessions whose protection it cannot decide because PostgreSQL hides the columns to judge.
"""

from __future__ import annotations

import enum
import fnmatch
import functools
import re
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

#: The columns of ``pg_stat_activity`` that stay the same for a session's whole life (set
#: when it connects). The others may change from one transaction (or statement) to the next:
#: ``query``, ``state``, ``application_name`` (``SET application_name``)...
SESSION_COLUMNS = frozenset(
    {
        "datid",
        "datname",
        "pid",
        "usesysid",
        "usename",
        "client_addr",
        "client_hostname",
        "client_port",
        "backend_start",
        "backend_type",
    }
)


def judged_per_session(rules: Rules) -> bool:
    """Whether ``rules`` judge only what stays the same for a session's whole life
    (``SESSION_COLUMNS``): then a verdict read in one of its transactions holds in the
    next ones too (what ends a session for a lock it holds across its transactions needs)."""
    return all(column in SESSION_COLUMNS for column in rules)


#: Always protected, whatever the settings say.
ALWAYS_PROTECTED: Mapping[str, Sequence[str]] = {
    "backend_type": (
        "walsender",
        "autovacuum worker",
        "autovacuum launcher",
        # A subscription's workers: "logical replication worker" (PostgreSQL 14, 15), its
        # apply, tablesync and parallel apply workers (16+), and their launcher.
        "logical replication *",
    ),
}

Rules = Mapping[str, Sequence[str]]

#: SQL select-list columns, for a query with a session's ``pg_stat_get_activity`` row as
#: ``a`` and its ``pg_database`` row as ``d``, of what ``standing`` needs besides the
#: session's own columns: whether it is a session of this database; whether the migrating
#: role sees all of its columns (PostgreSQL's rule: superuser, privileges of
#: ``pg_read_all_stats`` or of the session's role); whether it replicates: a WAL sender or
#: a subscription's worker (``pg_stat_get_wal_senders()`` and ``pg_stat_get_subscription()``,
#: behind ``pg_stat_replication`` and ``pg_stat_subscription``, show their pids to every
#: role, while ``backend_type`` may be hidden). Also its user's name and its transaction's
#: age.
JUDGING_COLUMNS = """
       pg_catalog.pg_get_userbyid(a.usesysid) AS usename, d.datname,
       now() - a.xact_start AS transaction_age,
       a.datid IS NOT DISTINCT FROM
           (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
           AS in_database,
       COALESCE(pg_catalog.pg_has_role(a.usesysid, 'USAGE'), false)
           OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE') AS visible,
       a.pid IN (SELECT pid FROM pg_catalog.pg_stat_get_wal_senders()
                 UNION ALL SELECT pid FROM pg_catalog.pg_stat_get_subscription(NULL))
           AS replication"""


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


def hidden_columns(rules: Rules) -> tuple[str, ...]:
    """The columns named by ``rules`` that PostgreSQL may hide from the migrating role."""
    return tuple(sorted(column for column in rules if column not in VISIBLE_TO_ALL))


def judge(row: Mapping[str, object], rules: Rules, *, visible: bool, replication: bool) -> Verdict:
    """Judge the session described by ``row`` (its ``pg_stat_activity`` columns).

    ``visible``: whether the migrating role sees all of the session's columns (superuser,
    privileges of ``pg_read_all_stats`` or of the session's role); if not, only the columns
    of ``VISIBLE_TO_ALL`` are judged. ``replication``: whether the session is a WAL
    sender or a subscription's worker (PostgreSQL lists their pids to every role).
    """
    always = _always_protected(row, replication=replication)
    if always:
        return Verdict(reason=f"always protected: {always}")
    judged = rules if visible else {c: p for c, p in rules.items() if c in VISIBLE_TO_ALL}
    chosen = _match(row, judged)
    if chosen:
        return Verdict(reason=f"PGMIGRATE_PROTECTED: {chosen}")
    return Verdict(hidden=() if visible else hidden_columns(rules))


def _always_protected(row: Mapping[str, object], *, replication: bool) -> str | None:
    by_type = _match(row, ALWAYS_PROTECTED)
    if by_type:
        return by_type
    if replication:
        return (
            "a WAL sender (replication) or a subscription's worker, listed by "
            "pg_stat_replication or pg_stat_subscription"
        )
    if row.get("usesysid") is None:
        # Client backends, WAL senders and background workers have a user; autovacuum and
        # PostgreSQL's other own processes do not (and hide their backend_type).
        return "a server process without a user (autovacuum or another PostgreSQL process)"
    return None


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    """``pattern`` (shell-style, as ``fnmatch.fnmatchcase`` reads it) as a regular expression."""
    return re.compile(fnmatch.translate(pattern))


def compile_patterns(rules: Rules) -> None:
    """Compile the patterns of ``rules`` and of ``ALWAYS_PROTECTED`` now: compiling one takes
    a fraction of a millisecond, which must not be spent while the app waits behind the
    migration (the watcher calls this when it starts)."""
    for patterns in (*ALWAYS_PROTECTED.values(), *rules.values()):
        for pattern in patterns:
            _compiled(pattern)


def _match(row: Mapping[str, object], rules: Rules) -> str | None:
    for column, patterns in rules.items():
        value = row.get(column)
        if value is None:
            continue
        text = str(value)
        for pattern in patterns:
            if _compiled(pattern).match(text):
                return f"{column} {text!r} matches {pattern!r}"
    return None


def cancelled_by_postgres(row: Mapping[str, object]) -> bool:
    """Whether ``row`` is an autovacuum worker that PostgreSQL itself cancels once a lock
    request has waited behind it for ``deadlock_timeout``: every one but those that prevent
    transaction ID wraparound (PostgreSQL docs, "The Autovacuum Daemon"). Its user is NULL;
    a role without ``pg_read_all_stats`` sees neither its type nor its query, and takes it
    for an ordinary one."""
    autovacuum = row.get("backend_type") == "autovacuum worker" or (
        row.get("usesysid") is None and row.get("backend_type") is None
    )
    return autovacuum and "to prevent wraparound" not in str(row.get("query") or "")


class Standing(enum.Enum):
    """Where a session in the migration's way stands, decided in this order (the watcher's
    ``_act`` while migrating, the lock plan's ``holders`` before)."""

    #: Protected, and PostgreSQL cancels it itself (``cancelled_by_postgres``).
    AUTOVACUUM = "autovacuum"
    #: Protected (``judge``: always, or ``PGMIGRATE_PROTECTED``).
    PROTECTED = "protected"
    #: A session of another database.
    ELSEWHERE = "another database"
    #: PostgreSQL hides the columns its protection depends on.
    UNDECIDABLE = "undecidable"
    #: None of those: the blocking action decides.
    ENDABLE = "endable"


def standing(row: Mapping[str, object], rules: Rules) -> tuple[Standing, Verdict]:
    """Where the session of ``row`` stands, with the protection verdict. ``row`` holds its
    ``pg_stat_activity`` columns and the booleans ``visible``, ``replication`` (see
    ``judge``) and ``in_database`` (whether it is a session of the migrating database)."""
    verdict = judge(row, rules, visible=bool(row["visible"]), replication=bool(row["replication"]))
    if verdict.reason is not None:
        kind = Standing.AUTOVACUUM if cancelled_by_postgres(row) else Standing.PROTECTED
        return kind, verdict
    if not row["in_database"]:
        return Standing.ELSEWHERE, verdict
    if verdict.hidden:
        return Standing.UNDECIDABLE, verdict
    return Standing.ENDABLE, verdict
