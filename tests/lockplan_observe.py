"""What a statement really does, read from the server: the locks its own backend took
(``pg_locks``), the relations it wrote anew (``pg_class.relfilenode``) and the tables it read
in full (``pg_stat_xact_user_tables.seq_scan``). For tests/test_lockplan_locks.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db import connections
from pglast import parser

from pgmigrate.lockplan.catalog import Catalog
from pgmigrate.lockplan.locks import classify
from pgmigrate.lockplan.model import LockMode, RelationKind, StatementEffect

#: Relations of these schemas are the server's, not the app's.
SYSTEM_SCHEMAS = ("pg_catalog", "pg_toast", "information_schema")

_RELATIONS = (
    "SELECT c.oid::int8, n.nspname || '.' || c.relname, c.relkind::text, c.relfilenode::int8"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname <> ALL (%s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%'"
)
_LOCKS = (
    "SELECT relation::int8, mode FROM pg_locks WHERE pid = %s AND locktype = 'relation'"
    " AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_SEQ_SCANS = "SELECT relid::int8, seq_scan, seq_tup_read FROM pg_stat_xact_user_tables"


@dataclass
class Observed:
    """What the server saw one statement do, in the plan's terms."""

    locks: dict[str, tuple[LockMode, RelationKind]]
    rewrites: set[str]
    #: Relations that existed before and not after (dropped, or built again under a new oid).
    gone: set[str]
    scans: set[str]


def rows(sql: str, params: Any = None, *, using: str = "default") -> list[tuple[Any, ...]]:
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def relations(using: str = "default") -> dict[int, tuple[str, RelationKind, int]]:
    """oid -> (schema-qualified name, kind, relfilenode) of the app's relations."""
    found = rows(_RELATIONS, [list(SYSTEM_SCHEMAS)], using=using)
    return {oid: (name, RelationKind(kind), node) for oid, name, kind, node in found}


def _seq_scans(using: str) -> dict[int, tuple[int, int]]:
    """relid -> (seq_scan, seq_tup_read) in this transaction."""
    return {oid: (scans, read) for oid, scans, read in rows(_SEQ_SCANS, using=using)}


def _empty_tables(using: str) -> set[int]:
    """The app's tables without a row (read in their own transactions)."""
    empty = set()
    for oid, (name, kind, _) in relations(using).items():
        if kind is RelationKind.TABLE:
            schema, table = name.split(".", 1)
            found = rows(f'SELECT EXISTS (SELECT FROM "{schema}"."{table}")', using=using)
            if not found[0][0]:
                empty.add(oid)
    return empty


def locks_of(pid: int, known: dict[int, tuple[str, RelationKind, int]], *, using: str) -> dict:
    """The strongest granted mode ``pid`` holds on each relation of ``known``."""
    held: dict[str, tuple[LockMode, RelationKind]] = {}
    for oid, mode in rows(_LOCKS, [pid], using=using):
        if oid not in known:
            continue
        name, kind, _ = known[oid]
        lock_mode = LockMode.from_pg_locks(mode)
        if name not in held or held[name][0] < lock_mode:
            held[name] = (lock_mode, kind)
    return held


def observe(statement: str, *, using: str = "default") -> tuple[StatementEffect, Observed]:
    """Classify ``statement`` and run it in a transaction on the connection ``using``,
    then roll back. Returns the classification (made inside the transaction, just before
    the statement) and what the server saw."""
    (effect,), observed = observe_all(statement, using=using)
    return effect, observed


def observe_all(sql: str, *, using: str = "default") -> tuple[list[StatementEffect], Observed]:
    """``observe`` for several statements, classified in one call and run together: what
    the server saw them all do."""
    connection = connections[using]
    connection.ensure_connection()
    pid = rows("SELECT pg_backend_pid()", using=using)[0][0]
    empty = _empty_tables(using)  # outside the transaction: its locks are gone before it
    rows("BEGIN", using=using)
    try:
        before = relations(using)
        scans_before = _seq_scans(using)
        effects = classify(sql, Catalog(using))
        # Catalog lookups take no lock on the app's relations.
        assert locks_of(pid, before, using=using) == {}, "the catalog lookups took locks"
        rows(sql, using=using)
        held = locks_of(pid, before, using=using)
        after = relations(using)
        scans_after = _seq_scans(using)
    finally:
        rows("ROLLBACK", using=using)
    rewritten = {
        before[oid][0] for oid in before if oid in after and after[oid][2] != before[oid][2]
    }
    gone = {before[oid][0] for oid in before if oid not in after}
    # A sequential scan that read rows, or any on a table that had none (an index built
    # on the new, empty file of a truncated table reads nothing of the old rows).
    scanned = set()
    for oid, (scans, read) in scans_after.items():
        scans_then, read_then = scans_before.get(oid, (0, 0))
        if oid in before and scans > scans_then and (read > read_then or oid in empty):
            scanned.add(before[oid][0])
    return effects, Observed(held, rewritten, gone, scanned)


def disagreements(effect: StatementEffect, observed: Observed) -> list[str]:
    """How the classification and the server differ, one line each (none: they agree)."""
    if not effect.known:
        return [f"classified as unknown: {'; '.join(effect.notes)}"]
    problems = []
    planned = {lock.relation: (lock.mode, lock.kind) for lock in effect.locks}
    if planned != observed.locks:
        problems.append(f"locks: plan {_show(planned)} != pg_locks {_show(observed.locks)}")
    claimed = set(effect.rewrites)
    # A rewritten index may be dropped and built again under a new oid.
    if not observed.rewrites <= claimed or not claimed <= observed.rewrites | observed.gone:
        problems.append(
            f"rewrites: plan {sorted(claimed)} != relfilenode changes"
            f" {sorted(observed.rewrites)} (gone: {sorted(observed.gone)})"
        )
    claimed = set(effect.scans)
    # The query checking a foreign key joins the referenced table: the planner may read it
    # in full (a hash join) or probe its index; the plan claims only the referencing table.
    optional = _referenced_tables(effect.sql)
    if not claimed <= observed.scans or not observed.scans <= claimed | optional:
        problems.append(f"scans: plan {sorted(claimed)} != seq_scan {sorted(observed.scans)}")
    return problems


def _referenced_tables(statement: str) -> set[str]:
    """Tables a statement's foreign keys reference (``REFERENCES`` and ``VALIDATE``)."""
    tree = json.loads(parser.parse_sql_json(statement))
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "pktable" in node:
                table = node["pktable"]
                found.add(f"{table.get('schemaname') or 'public'}.{table['relname']}")
            if node.get("subtype") == "AT_ValidateConstraint":
                found.update(_referenced_by(node["name"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(tree)
    return found


def _referenced_by(constraint: str) -> set[str]:
    """The table a foreign key constraint of that name references."""
    found = rows(
        "SELECT n.nspname || '.' || c.relname FROM pg_constraint k"
        " JOIN pg_class c ON c.oid = k.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE k.conname = %s AND k.contype = 'f'",
        [constraint],
    )
    return {name for (name,) in found}


def _show(locks: dict[str, tuple[LockMode, RelationKind]]) -> str:
    return (
        "{" + ", ".join(f"{name}: {mode.label}" for name, (mode, _) in sorted(locks.items())) + "}"
    )
