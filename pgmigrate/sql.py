"""What a SQL statement is, read with PostgreSQL's own parser (``pglast``).

pgmigrate needs to know a few things about the statements a migration runs outside a
transaction: whether they can run inside a transaction block at all, and whether they
build or drop an index concurrently (which leaves an INVALID index behind when cut short,
and whose waits do not block the application). See "Building Indexes Concurrently" in the
PostgreSQL docs (``CREATE INDEX``) and the "cannot run inside a transaction block" notes of
``CREATE INDEX``, ``DROP INDEX``, ``REINDEX``, ``VACUUM``, ``CREATE DATABASE``.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class Kind(enum.Enum):
    """The kinds of statement pgmigrate treats differently."""

    #: ``CREATE [UNIQUE] INDEX CONCURRENTLY``.
    CREATE_INDEX_CONCURRENTLY = "create index concurrently"
    #: ``DROP INDEX CONCURRENTLY``.
    DROP_INDEX_CONCURRENTLY = "drop index concurrently"
    #: ``REINDEX ... CONCURRENTLY``.
    REINDEX_CONCURRENTLY = "reindex concurrently"
    #: ``BEGIN``, ``COMMIT``, ``SAVEPOINT``...: the statement list manages its own
    #: transactions; also a ``CALL`` (a procedure may commit) and a ``DO`` block that commits,
    #: rolls back or calls (PostgreSQL docs, PL/pgSQL "Transaction Management").
    TRANSACTION_CONTROL = "transaction control"
    #: Other statements that cannot run inside a transaction block (``VACUUM``, ...).
    NO_TRANSACTION = "no transaction block"
    #: Anything else: it can run inside a transaction block.
    OTHER = "other"
    #: The parser could not read it.
    UNKNOWN = "unknown"


#: Kinds that build or drop an index concurrently.
CONCURRENT_INDEX_KINDS = frozenset(
    {Kind.CREATE_INDEX_CONCURRENTLY, Kind.DROP_INDEX_CONCURRENTLY, Kind.REINDEX_CONCURRENTLY}
)

#: Statement node types that refuse to run inside a transaction block.
_NO_TRANSACTION_NODES = frozenset(
    {
        "CreatedbStmt",
        "DropdbStmt",
        "CreateTableSpaceStmt",
        "DropTableSpaceStmt",
        "AlterSystemStmt",
        "CreateSubscriptionStmt",
        "DropSubscriptionStmt",
    }
)


@dataclass(frozen=True)
class Statement:
    """One parsed SQL statement.

    Attributes:
        kind: What kind of statement it is.
        index: For the concurrent index kinds, the index named by the statement (``None``
            when ``CREATE INDEX CONCURRENTLY`` gives no name, or for ``REINDEX TABLE``).
        schema: The schema the statement names for the index or table, if any.
        table: The table of ``CREATE INDEX`` and ``REINDEX TABLE``.
        keeps_session_state: See below.
        destroys_data: See below.
        sets_for_transaction: See below.
    """

    kind: Kind
    index: str | None = None
    schema: str | None = None
    table: str | None = None
    #: It leaves state in the session for later statements (``SET``, a temporary table...).
    keeps_session_state: bool = False
    #: It deletes data that undoing it cannot bring back (``DROP TABLE``, ``DROP COLUMN``,
    #: ``DELETE``, ``TRUNCATE``).
    destroys_data: bool = False
    #: It sets something until its transaction ends (``SET LOCAL``, ``SET TRANSACTION``):
    #: outside a transaction it only warns and changes nothing.
    sets_for_transaction: bool = False
    #: A ``DO`` block with a handler for ``query_canceled`` (SQLSTATE 57014): a cancel may
    #: end in its handler instead of failing the statement.
    traps_cancel: bool = False

    @property
    def transactional(self) -> bool | None:
        """True if it can run in a transaction block, False if not, None if unknown."""
        if self.kind is Kind.UNKNOWN:
            return None
        return self.kind is Kind.OTHER

    @property
    def concurrent_index(self) -> bool:
        return self.kind in CONCURRENT_INDEX_KINDS


def digest(sql: str) -> str:
    """A short, stable digest of a statement's text (to recognise it in a later run)."""
    return hashlib.sha256(sql.encode()).hexdigest()[:32]


def parse(sql: str) -> list[Statement]:
    """The statements of ``sql`` (PostgreSQL's grammar); ``[Statement(UNKNOWN)]`` if the
    parser rejects it (e.g. a syntax newer than pglast's parser)."""
    return list(_parse(sql))


@functools.lru_cache(maxsize=512)
def _parse(sql: str) -> tuple[Statement, ...]:
    statements = parse_tree(sql)
    if statements is None:
        return (Statement(Kind.UNKNOWN),)
    return tuple(_statement(node) for _, node in statements)


@functools.lru_cache(maxsize=512)
def parse_tree(sql: str) -> tuple[tuple[str, dict[str, Any]], ...] | None:
    """``(text, parse node)`` of each statement of ``sql``, as PostgreSQL's parser (pglast,
    JSON form) reads it; None if the parser rejects ``sql``. The nodes are shared (cached):
    read them, never change them."""
    from pglast import parser  # imported when needed: it takes tens of milliseconds

    try:
        tree = json.loads(parser.parse_sql_json(sql))
    except (parser.ParseError, ValueError):
        return None
    raw = sql.encode()  # statement locations are byte offsets
    statements = []
    for entry in tree.get("stmts", []):
        start = entry.get("stmt_location", 0)
        length = entry.get("stmt_len") or len(raw) - start
        text = raw[start : start + length].decode().strip()
        statements.append((text, entry["stmt"]))
    return tuple(statements)


def _statement(node: dict[str, Any]) -> Statement:
    (name, body), *_ = node.items()
    if name == "IndexStmt" and body.get("concurrent"):
        relation = body.get("relation", {})
        return Statement(
            Kind.CREATE_INDEX_CONCURRENTLY,
            index=body.get("idxname"),
            schema=relation.get("schemaname"),
            table=relation.get("relname"),
        )
    if name == "DropStmt" and body.get("concurrent"):
        # DROP INDEX CONCURRENTLY takes exactly one index.
        items = body["objects"][0]["List"]["items"]
        names = [item["String"]["sval"] for item in items]
        return Statement(
            Kind.DROP_INDEX_CONCURRENTLY,
            index=names[-1],
            schema=names[-2] if len(names) > 1 else None,
        )
    if name == "ReindexStmt" and any(
        param.get("DefElem", {}).get("defname") == "concurrently"
        for param in body.get("params", [])
    ):
        relation = body.get("relation") or {}
        on_index = body.get("kind") == "REINDEX_OBJECT_INDEX"
        return Statement(
            Kind.REINDEX_CONCURRENTLY,
            index=relation.get("relname") if on_index else None,
            schema=relation.get("schemaname"),
            table=None if on_index else relation.get("relname"),
        )
    if name in ("TransactionStmt", "CallStmt"):
        return Statement(Kind.TRANSACTION_CONTROL)
    if name == "DoStmt":
        controls_transactions, traps_cancel = _do_block(body)
        if controls_transactions:
            return Statement(Kind.TRANSACTION_CONTROL)
        return Statement(Kind.OTHER, traps_cancel=traps_cancel)
    if name in _NO_TRANSACTION_NODES or _needs_no_transaction(name, body):
        return Statement(Kind.NO_TRANSACTION)
    return Statement(
        Kind.OTHER,
        keeps_session_state=_keeps_session_state(name, body),
        destroys_data=_destroys_data(name, body),
        sets_for_transaction=name == "VariableSetStmt"
        and (bool(body.get("is_local")) or body.get("name") == "TRANSACTION"),
    )


#: The conditions of a PL/pgSQL handler that catch a cancel (``OTHERS`` does not: PostgreSQL
#: docs, PL/pgSQL "Trapping Errors").
_CANCEL_CONDITIONS = frozenset({"query_canceled", "57014"})


def do_block(body: dict[str, Any]) -> tuple[str, str | None]:
    """The language and the body of a ``DO`` statement's parse node (``DoStmt``; plpgsql
    is the default language, PostgreSQL docs "DO"); the body None if not found."""
    options = {
        option.get("DefElem", {}).get("defname"): option.get("DefElem", {}).get("arg", {})
        for option in body.get("args", [])
    }
    language = options.get("language", {}).get("String", {}).get("sval", "plpgsql")
    return language, options.get("as", {}).get("String", {}).get("sval")


def parse_plpgsql_block(source: str) -> Any:
    """The parse tree (JSON form) of the PL/pgSQL block ``source``, the body of a ``DO``,
    read with PL/pgSQL's parser (``pglast.parse_plpgsql``).

    Raises:
        pglast.parser.ParseError, ValueError: When the parser rejects it.
    """
    import pglast  # imported when needed, as parse_tree does

    tag = "$pgmigrate$"
    while tag in source:  # a dollar quote the body does not hold
        tag = f"{tag[:-1]}_$"
    return pglast.parse_plpgsql(f"DO {tag}{source}{tag}")


def walk(tree: Any) -> Iterator[tuple[str, Any]]:
    """Every ``(key, value)`` of every dict in a parse tree in JSON form, at any depth."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield key, value
            yield from walk(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from walk(item)


def _do_block(body: dict[str, Any]) -> tuple[bool, bool]:
    """Whether a ``DO`` block may commit or roll back (``COMMIT``, ``ROLLBACK``, or a
    ``CALL`` or ``DO`` of its own, which may), and whether it traps a cancel, read with
    PL/pgSQL's parser. A block in another language, or one the parser rejects, may do both."""
    language, source = do_block(body)
    if language != "plpgsql" or source is None:
        return True, True
    return _plpgsql_block(source)


@functools.lru_cache(maxsize=256)
def _plpgsql_block(source: str) -> tuple[bool, bool]:
    from pglast import parser

    try:
        tree = parse_plpgsql_block(source)
    except (parser.ParseError, ValueError):
        return True, True
    controls_transactions = traps_cancel = False
    for key, value in walk(tree):
        if key in ("PLpgSQL_stmt_commit", "PLpgSQL_stmt_rollback", "PLpgSQL_stmt_call"):
            controls_transactions = True
        elif key == "PLpgSQL_condition" and value.get("condname") in _CANCEL_CONDITIONS:
            traps_cancel = True
    return controls_transactions, traps_cancel


def _needs_no_transaction(name: str, body: dict[str, Any]) -> bool:
    """Statements refused in a transaction block depending on their options."""
    if name == "VacuumStmt":
        return bool(body.get("is_vacuumcmd"))  # not ANALYZE
    if name == "ReindexStmt":  # REINDEX SCHEMA, DATABASE, SYSTEM
        return body.get("kind") != "REINDEX_OBJECT_INDEX" and "relation" not in body
    if name == "DiscardStmt":
        return body.get("target") == "DISCARD_ALL"
    if name == "ClusterStmt":
        return "relation" not in body  # CLUSTER of every table
    if name == "AlterDatabaseStmt":
        return any(
            option.get("DefElem", {}).get("defname") == "tablespace"
            for option in body.get("options", [])
        )
    return _detaches_concurrently(name, body)


#: Statement nodes whose effect lasts for the session, not the transaction.
_SESSION_NODES = frozenset({"PrepareStmt", "ListenStmt", "DeclareCursorStmt", "LoadStmt"})


def _keeps_session_state(name: str, body: dict[str, Any]) -> bool:
    if name in _SESSION_NODES:
        return True
    if name == "VariableSetStmt":
        return not body.get("is_local")
    temporary = {
        "CreateStmt": body.get("relation", {}),
        "CreateTableAsStmt": body.get("into", {}).get("rel", {}),
        "ViewStmt": body.get("view", {}),
        "CreateSeqStmt": body.get("sequence", {}),
    }.get(name)
    return bool(temporary) and temporary.get("relpersistence") == "t"


def _destroys_data(name: str, body: dict[str, Any]) -> bool:
    if name in ("DeleteStmt", "TruncateStmt"):
        return True
    if name == "DropStmt":
        return body.get("removeType") in ("OBJECT_TABLE", "OBJECT_SCHEMA", "OBJECT_MATVIEW")
    if name == "AlterTableStmt":
        return any(
            command.get("AlterTableCmd", {}).get("subtype") == "AT_DropColumn"
            for command in body.get("cmds", [])
        )
    return False


def _detaches_concurrently(name: str, body: dict[str, Any]) -> bool:
    """``ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY``."""
    if name != "AlterTableStmt":
        return False
    return any(
        command.get("AlterTableCmd", {}).get("def", {}).get("PartitionCmd", {}).get("concurrent")
        for command in body.get("cmds", [])
    )
