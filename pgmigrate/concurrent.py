"""Running a ``CONCURRENTLY`` index statement again after it was cut short.

``CREATE INDEX CONCURRENTLY`` commits its catalog entry before it builds the index; when it
fails or is cancelled it leaves an INVALID index of that name behind ("Building Indexes
Concurrently", PostgreSQL docs, ``CREATE INDEX``), and running it again fails with
``relation ... already exists``. ``DROP INDEX CONCURRENTLY`` may leave the index INVALID,
``REINDEX CONCURRENTLY`` leaves ``<index>_ccnew``/``_ccold`` indexes. pgmigrate runs such a
statement again only after ``prepare()`` has dropped what an earlier attempt of the *same*
statement left (never an index another session is building), or has found it done.
"""

from __future__ import annotations

from typing import Any

from pgmigrate.sql import Kind, Statement

#: The index the statement names: oid, valid, and whether a session is building it now.
_INDEX = (
    "SELECT c.oid, i.indisvalid, EXISTS (SELECT 1 FROM pg_stat_progress_create_index p"
    "   WHERE p.index_relid = c.oid)"
    " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " WHERE c.oid = to_regclass(CASE WHEN %(schema)s::text IS NULL THEN quote_ident(%(name)s)"
    "   ELSE quote_ident(%(schema)s) || '.' || quote_ident(%(name)s) END)"
)
#: INVALID ``_ccnew``/``_ccold`` indexes that a cut-short ``REINDEX CONCURRENTLY`` left on the
#: table of an index (``%(name)s``) or on a table (``%(table)s``), not being built now.
_REINDEX_LEFTOVERS = (
    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)"
    " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE NOT i.indisvalid"
    " AND i.indrelid = COALESCE("
    "   (SELECT indrelid FROM pg_index WHERE indexrelid = to_regclass(%(qualified)s)),"
    "   to_regclass(%(qualified)s))"
    " AND (c.relname LIKE %(base)s || '\\_ccnew%%' OR c.relname LIKE %(base)s || '\\_ccold%%')"
    " AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p"
    "   WHERE p.index_relid = c.oid)"
)


def _quoted(connection: Any, schema: str | None, name: str) -> str:
    quote = connection.ops.quote_name
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)


def _index(connection: Any, statement: Statement) -> tuple[bool, bool] | None:
    """(valid, being built by a session) of the statement's index, None if it is absent."""
    with connection.cursor() as cursor:
        cursor.execute(_INDEX, {"schema": statement.schema, "name": statement.index})
        row = cursor.fetchone()
    return None if row is None else (row[1], row[2])


def _drop(connection: Any, qualified: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {qualified}")


def _reindex_leftovers(connection: Any, statement: Statement) -> list[str]:
    target = statement.index or statement.table
    if target is None:  # pragma: no cover (REINDEX SCHEMA/DATABASE: nothing named)
        return []
    qualified = _quoted(connection, statement.schema, target)
    with connection.cursor() as cursor:
        cursor.execute(
            _REINDEX_LEFTOVERS,
            {"qualified": qualified, "base": statement.index or "%"},
        )
        return [name for (name,) in cursor.fetchall()]


def prepare(connection: Any, statement: Statement) -> bool:
    """Make running ``statement`` again safe; True when what it does is already done.

    Only call it for a statement that pgmigrate itself started before (an earlier run or
    attempt), so that an index of that name is known to be its own.
    """
    if statement.kind is Kind.CREATE_INDEX_CONCURRENTLY and statement.index:
        found = _index(connection, statement)
        if found is None:
            return False
        valid, building = found
        if valid:
            return True  # the earlier attempt built it: done
        if not building:
            _drop(connection, _quoted(connection, statement.schema, statement.index))
        return False
    if statement.kind is Kind.DROP_INDEX_CONCURRENTLY and statement.index:
        return _index(connection, statement) is None  # already gone: done
    if statement.kind is Kind.REINDEX_CONCURRENTLY:
        for leftover in _reindex_leftovers(connection, statement):
            _drop(connection, leftover)
    return False


def untouched(connection: Any, statement: Statement) -> bool:
    """Whether ``statement``, which an earlier run of pgmigrate started and which was cut
    short, changed nothing that undoing it would have to undo, once ``prepare`` returned
    False (it has dropped the INVALID index such a ``CREATE`` left, unless a session is
    building it). False when that cannot be told: the statement must then be run to its end
    before it is undone.

    ``CREATE INDEX CONCURRENTLY``: its index does not exist (it never got to create it, or
    ``prepare`` dropped what it left). ``DROP INDEX CONCURRENTLY``: its index is still valid
    (the drop marks it INVALID first). ``REINDEX CONCURRENTLY``: always (once ``prepare``
    dropped its ``_ccnew``/``_ccold`` leftovers, the indexes are as before, or rebuilt).
    """
    if statement.kind is Kind.CREATE_INDEX_CONCURRENTLY and statement.index:
        return _index(connection, statement) is None
    if statement.kind is Kind.DROP_INDEX_CONCURRENTLY and statement.index:
        found = _index(connection, statement)
        return found is not None and found[0]
    return statement.kind is Kind.REINDEX_CONCURRENTLY


def completed(statement: Statement, seq: int) -> str:
    """What a statement that ran to its end outside a transaction, but whose count could not
    be recorded, left, in words (the connection may be gone: nothing is read)."""
    if statement.kind is Kind.CREATE_INDEX_CONCURRENTLY and statement.index:
        done = f"the index {statement.index} was built"
        after = "the next migrate finds it and counts the statement as done"
    elif statement.kind is Kind.DROP_INDEX_CONCURRENTLY and statement.index:
        done = f"the index {statement.index} was dropped"
        after = "the next migrate finds it gone and counts the statement as done"
    else:
        done = "it ran to its end"
        after = "the next migrate runs it again"
    return (
        f"statement {seq} (outside a transaction) completed: {done}, but recording that "
        f"failed; {after}"
    )


def leftovers(connection: Any, statement: Statement) -> str | None:
    """What ``statement``, which just failed, left in the database, in words (None: nothing
    that needs saying)."""
    if statement.kind is Kind.CREATE_INDEX_CONCURRENTLY:
        if not statement.index:
            return (
                f"it may have left an INVALID index on {statement.table}: the statement does "
                "not name its index, so pgmigrate cannot drop it; name the index"
            )
        found = _index(connection, statement)
        if found is None:
            return None
        if found[0]:
            return f"the index {statement.index} was built; the next migrate counts it as done"
        return (
            f"an INVALID index {statement.index} was left; the next migrate drops and rebuilds it"
        )
    if statement.kind is Kind.DROP_INDEX_CONCURRENTLY and statement.index:
        found = _index(connection, statement)
        if found is not None and not found[0]:
            return f"the index {statement.index} was left INVALID; the next migrate drops it"
        return None
    if statement.kind is Kind.REINDEX_CONCURRENTLY:
        names = _reindex_leftovers(connection, statement)
        if names:
            return (
                f"INVALID indexes {', '.join(names)} were left; the next migrate drops them "
                "before it reindexes again"
            )
    return None
