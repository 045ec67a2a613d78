"""Read-only catalog lookups for the lock plan, on a Django connection.

Every lookup is a plain ``SELECT`` on ``pg_catalog``: it takes ACCESS SHARE locks on catalog
tables only, never a lock on the user's relations (names are matched as text against
``pg_class``, the way ``to_regclass`` resolves them, without a ``::regclass`` cast). Answers
are cached for the life of the ``Catalog``: make one per plan.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db import connections

from pgmigrate.lockplan.model import RelationKind


@dataclass(frozen=True)
class Relation:
    """A relation that exists: ``pg_class`` row in words."""

    oid: int
    schema: str
    name: str
    kind: RelationKind

    @property
    def qualified(self) -> str:
        """``schema.name``, unquoted, as the lock plan names relations."""
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Column:
    """A table column, from ``pg_attribute``."""

    #: ``atttypid`` and ``atttypmod`` (-1: no modifier).
    type_oid: int
    typmod: int
    #: ``format_type`` of the two, e.g. ``character varying(20)``.
    type_name: str
    not_null: bool
    #: ``attidentity``: ``a`` (ALWAYS), ``d`` (BY DEFAULT) or empty.
    identity: str
    #: ``attcollation`` (0: the type is not collatable).
    collation: int


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key: ``table(columns)`` references ``referenced(keys)``."""

    table: Relation
    referenced: Relation
    columns: tuple[str, ...]
    keys: tuple[str, ...]
    #: The oid of the referenced table's unique index the key uses (``conindid``).
    index_oid: int


class SearchPathLost(Exception):
    """Raised by a lookup of an unqualified name once ``search_path`` may have changed in a
    way the lock plan cannot follow (``Catalog.lost``): the name's schema is unknown."""


class Catalog:
    """Catalog lookups on the connection of alias ``using`` (its ``search_path``).

    Nothing raises for a relation, column or function that does not exist: the lookups
    return ``None`` (or an empty tuple), since a pending migration may create it first.
    ``following``, ``lost`` and ``transaction_ended`` give the catalog as later statements
    see it after one of them changes ``search_path`` or ends a transaction.
    """

    def __init__(self, using: str = "default"):
        self.using = using
        self._cache: dict[tuple[Any, ...], Any] = {}
        #: The schemas unqualified names are looked up in, in order (None: the
        #: connection's ``current_schemas(true)``), and where they are created.
        self._path: tuple[str, ...] | None = None
        self._creation: str | None = None
        #: Why unqualified names cannot be resolved (``lost``), or where new relations go
        #: (``current_schema``), or None.
        self._lost: str | None = None
        self._creation_lost: str | None = None
        #: The session's ``search_path`` under a ``SET LOCAL`` (what the end of the
        #: transaction returns to); None: this one.
        self._session: Catalog | None = None
        #: Whether ``search_path`` is as the transaction found it (no ``SET`` since).
        self._settled = True
        #: Whether a ``BEGIN`` opened a transaction block that is still open.
        self._block = False

    def _derived(self, *, local: bool) -> Catalog:
        """A catalog sharing this one's cache, for a new ``search_path`` set by ``SET``
        (``local``: ``SET LOCAL``, until the transaction ends)."""
        found = Catalog(self.using)
        found._cache = self._cache
        found._session = (self._session or self) if local else None
        found._settled = False
        found._block = self._block
        return found

    def _copy(self) -> Catalog:
        found = self._derived(local=False)
        found._path, found._creation = self._path, self._creation
        found._lost, found._creation_lost = self._lost, self._creation_lost
        found._session, found._settled = self._session, self._settled
        return found

    @property
    def settled(self) -> bool:
        """Whether ``search_path`` is as the transaction found it: no ``SET`` of it (nor
        anything that may change it) since the transaction began."""
        return self._settled

    @property
    def in_block(self) -> bool:
        """Whether the statements so far left a transaction block open (``BEGIN``)."""
        return self._block

    def block_begun(self) -> Catalog:
        """This catalog once ``BEGIN`` opens a transaction block."""
        found = self._copy()
        found._block = True
        return found

    def transaction_ended(self) -> Catalog:
        """This catalog once its transaction commits: a ``SET LOCAL``'s ``search_path``
        gives way to the session's; a ``SET``'s stays (docs: "SET")."""
        found = (self._session or self)._copy()
        found._session, found._settled, found._block = None, True, False
        return found

    def following(self, items: list[str], *, local: bool = False) -> Catalog:
        """This catalog as names resolve after ``SET search_path`` (``local``: ``SET
        LOCAL``) to ``items`` (as written: ``$user``, ``pg_temp`` and schemas that do not
        exist included): the schemas that exist and may be used, behind the implicit
        ``pg_temp`` and ``pg_catalog`` (namespace.c, ``recomputeNamespacePath``)."""
        rows = self._rows(
            "SELECT p.item, n.nspname::text"
            " FROM unnest(%s::text[]) WITH ORDINALITY AS p(item, position)"
            " LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = CASE p.item"
            "  WHEN '$user' THEN current_user::text"
            "  WHEN 'pg_temp' THEN pg_catalog.pg_my_temp_schema()::regnamespace::text"
            "  ELSE p.item END AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')"
            " ORDER BY p.position",
            (items,),
        )
        explicit = list(dict.fromkeys(name for _, name in rows if name is not None))
        temp = self._rows(
            "SELECT nspname::text FROM pg_catalog.pg_namespace"
            " WHERE oid = pg_catalog.pg_my_temp_schema()",
            (),
        )
        implicit = [name for (name,) in temp] + ["pg_catalog"]
        found = self._derived(local=local)
        found._path = (*(name for name in implicit if name not in explicit), *explicit)
        found._creation = explicit[0] if explicit else None
        usable = [item for item, name in rows if name is not None or item == "pg_temp"]
        if usable[:1] == ["pg_temp"] and not temp:
            # New relations go to a temporary schema the session has not made yet.
            found._creation_lost = "pg_temp comes first: what it creates is temporary"
        return found

    def reset_search_path(self) -> list[str]:
        """The items of ``search_path``'s reset value (``pg_settings.reset_val``, what
        ``RESET search_path`` restores), as written, e.g. ``["$user", "public"]``."""
        from pglast import parser

        value = self._rows(
            "SELECT reset_val FROM pg_catalog.pg_settings WHERE name = 'search_path'", ()
        )[0][0]
        # An empty value is an empty list, as '' is.
        tree = json.loads(parser.parse_sql_json(f"SET search_path = {value or repr('')}"))
        arguments = tree["stmts"][0]["stmt"]["VariableSetStmt"]["args"]
        return [argument["A_Const"]["sval"]["sval"] for argument in arguments]

    def lost(self, reason: str, *, local: bool = False) -> Catalog:
        """This catalog once ``search_path`` may have changed unseen (``reason``; ``local``:
        until the transaction ends): every lookup of an unqualified name raises
        ``SearchPathLost``."""
        found = self._derived(local=local)
        found._lost = reason
        return found

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        # Array parameters are lists: cached by their items.
        key = (sql, tuple(tuple(p) if isinstance(p, list) else p for p in params))
        if key not in self._cache:
            with connections[self.using].cursor() as cursor:
                cursor.execute(sql, params)
                self._cache[key] = cursor.fetchall()
        return self._cache[key]

    def _schemas(self, schema: str | None) -> tuple[str, tuple[Any, ...]]:
        """SQL for the array of schemas a name is looked up in, and its parameters:
        ``schema``, else the search path. Raises ``SearchPathLost`` (see ``lost``)."""
        if schema is not None:
            return "ARRAY[%s]::name[]", (schema,)
        if self._lost is not None:
            raise SearchPathLost(self._lost)
        if self._path is not None:
            return "%s::name[]", (list(self._path),)
        return "current_schemas(true)", ()

    def _lookup(self, select: str, name: str, schema: str | None) -> list[tuple[Any, ...]]:
        """The first row of ``select`` (whose namespace column is ``n.nspname`` and name
        ``%s``) along the search path, as ``to_regclass`` and the parser look names up."""
        schemas, params = self._schemas(schema)
        along = f" JOIN unnest({schemas}) WITH ORDINALITY AS p(nspname, position)"
        return self._rows(
            select.replace(" WHERE ", along + " ON p.nspname = n.nspname WHERE ")
            + " ORDER BY p.position LIMIT 1",
            (*params, name),
        )

    @property
    def server_version(self) -> int:
        """The server's ``server_version_num`` (e.g. 180001), as Django reads it."""
        return connections[self.using].pg_version

    def current_schema(self) -> str | None:
        """``current_schema()``: where unqualified names are created (None: no schema of
        the search path exists). Raises ``SearchPathLost`` (see ``lost``)."""
        lost = self._lost or self._creation_lost
        if lost is not None:
            raise SearchPathLost(lost)
        if self._path is not None:
            return self._creation
        return self._rows("SELECT current_schema()", ())[0][0]

    def relation(self, name: str, schema: str | None = None) -> Relation | None:
        """The relation ``schema.name``, or ``name`` looked up along ``search_path``
        (``current_schemas(true)``, so ``pg_temp`` and ``pg_catalog`` too), as
        ``to_regclass`` would; ``None`` when there is none."""
        rows = self._lookup(
            "SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text"
            " FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = %s",
            name,
            schema,
        )
        return _relation(rows[0]) if rows else None

    def by_oid(self, oid: int) -> Relation | None:
        rows = self._rows(
            "SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text"
            " FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s",
            (oid,),
        )
        return _relation(rows[0]) if rows else None

    def indexes(self, table: Relation) -> tuple[Relation, ...]:
        """The indexes of ``table`` (``pg_index``), valid or not."""
        rows = self._rows(
            "SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text"
            " FROM pg_catalog.pg_index i"
            " JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE i.indrelid = %s ORDER BY c.oid",
            (table.oid,),
        )
        return tuple(_relation(row) for row in rows)

    def column_indexes(self, table: Relation, column: str) -> tuple[Relation, ...]:
        """The indexes of ``table`` that use ``column``: as a key or included column
        (``pg_index.indkey``), in an expression or a partial index's predicate
        (``pg_depend``), as PostgreSQL finds the indexes to drop or rebuild with it."""
        rows = self._rows(
            "SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text"
            " FROM pg_catalog.pg_index i"
            " JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attname = %s"
            " JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE i.indrelid = %s AND (a.attnum = ANY (i.indkey) OR EXISTS ("
            "  SELECT FROM pg_catalog.pg_depend d"
            "  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = i.indexrelid"
            "  AND d.refclassid = 'pg_catalog.pg_class'::regclass"
            "  AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum))"
            " ORDER BY c.oid",
            (column, table.oid),
        )
        return tuple(_relation(row) for row in rows)

    def index_table(self, index: Relation) -> Relation | None:
        """The table an index is on (``pg_index.indrelid``)."""
        rows = self._rows(
            "SELECT indrelid::int8 FROM pg_catalog.pg_index WHERE indexrelid = %s",
            (index.oid,),
        )
        return self.by_oid(rows[0][0]) if rows else None

    def owned_sequences(self, table: Relation) -> tuple[Relation, ...]:
        """Sequences owned by a column of ``table`` (``serial`` and identity columns)."""
        return tuple(sequence for _, sequence in self.column_sequences(table))

    def column(self, table: Relation, name: str) -> Column | None:
        """The column ``name`` of ``table``, ``None`` if there is none."""
        rows = self._rows(
            "SELECT atttypid::int8, atttypmod, pg_catalog.format_type(atttypid, atttypmod),"
            " attnotnull, attidentity::text, attcollation::int8"
            " FROM pg_catalog.pg_attribute"
            " WHERE attrelid = %s AND attname = %s AND attnum > 0 AND NOT attisdropped",
            (table.oid, name),
        )
        return Column(*rows[0]) if rows else None

    def column_constraints(self, table: Relation, column: str) -> tuple[str, ...]:
        """The ``contype`` of each constraint that uses ``table.column``: its own (CHECK,
        UNIQUE, foreign key...) and other tables' foreign keys that reference it."""
        rows = self._rows(
            "SELECT c.contype::text FROM pg_catalog.pg_constraint c"
            " JOIN pg_catalog.pg_attribute a ON a.attrelid = %s AND a.attname = %s"
            " WHERE (c.conrelid = a.attrelid AND a.attnum = ANY (c.conkey))"
            " OR (c.confrelid = a.attrelid AND a.attnum = ANY (c.confkey))"
            " ORDER BY 1",
            (table.oid, column),
        )
        return tuple(contype for (contype,) in rows)

    def collation_oid(self, name: str, schema: str | None = None) -> int | None:
        """The oid of collation ``name`` (``pg_collation``), along ``search_path``."""
        rows = self._lookup(
            "SELECT c.oid::int8 FROM pg_catalog.pg_collation c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace"
            " WHERE c.collname = %s AND c.collencoding IN (-1, pg_catalog.pg_char_to_encoding("
            "pg_catalog.getdatabaseencoding()))",
            name,
            schema,
        )
        return rows[0][0] if rows else None

    def column_sequences(self, table: Relation) -> tuple[tuple[str, Relation], ...]:
        """``(column, sequence)`` for each sequence owned by a column of ``table`` (identity
        and ``serial`` columns)."""
        rows = self._rows(
            "SELECT a.attname::text, d.objid::int8 FROM pg_catalog.pg_depend d"
            " JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid"
            "  AND a.attnum = d.refobjsubid"
            " JOIN pg_catalog.pg_class c ON c.oid = d.objid AND c.relkind = 'S'"
            " WHERE d.classid = 'pg_catalog.pg_class'::regclass"
            " AND d.refclassid = 'pg_catalog.pg_class'::regclass"
            " AND d.refobjid = %s AND d.deptype IN ('a', 'i') ORDER BY 1",
            (table.oid,),
        )
        return tuple((column, sequence) for column, oid in rows if (sequence := self.by_oid(oid)))

    def column_sequence(self, table: Relation, column: str) -> Relation | None:
        """The sequence owned by ``table.column`` (an identity or ``serial`` column)."""
        return dict(self.column_sequences(table)).get(column)

    def dependent_views(self, table: Relation) -> tuple[Relation, ...]:
        """Views and materialized views whose query uses ``table`` (``pg_rewrite``)."""
        rows = self._rows(
            "SELECT DISTINCT r.ev_class::int8 FROM pg_catalog.pg_depend d"
            " JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid"
            " WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass"
            " AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = %s"
            " AND r.ev_class <> %s ORDER BY 1",
            (table.oid, table.oid),
        )
        return tuple(view for (oid,) in rows if (view := self.by_oid(oid)))

    def column_views(self, table: Relation, column: str) -> tuple[Relation, ...]:
        """The relations whose rules (a view's or materialized view's query, ``pg_rewrite``)
        use column ``column`` of ``table`` (``pg_depend`` on the column): ``DROP COLUMN
        ... CASCADE`` drops them; a change of its type fails."""
        rows = self._rows(
            "SELECT DISTINCT r.ev_class::int8 FROM pg_catalog.pg_depend d"
            " JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid"
            " JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid"
            "  AND a.attnum = d.refobjsubid"
            " WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass"
            " AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = %s"
            " AND a.attname = %s AND r.ev_class <> %s ORDER BY 1",
            (table.oid, column, table.oid),
        )
        return tuple(view for (oid,) in rows if (view := self.by_oid(oid)))

    def view_tables(self, view: Relation) -> tuple[Relation, ...]:
        """The relations the query of (materialized) view ``view`` reads (``pg_rewrite``)."""
        rows = self._rows(
            "SELECT DISTINCT d.refobjid::int8 FROM pg_catalog.pg_rewrite r"
            " JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass"
            "  AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass"
            " WHERE r.ev_class = %s AND d.refobjid <> %s ORDER BY 1",
            (view.oid, view.oid),
        )
        return tuple(relation for (oid,) in rows if (relation := self.by_oid(oid)))

    def in_inheritance(self, relation: Relation) -> bool:
        """Whether ``relation`` has partitions or inheritance children, or is one
        (``pg_inherits``): statements on it may lock the others too."""
        rows = self._rows(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_inherits WHERE %s IN (inhrelid, inhparent))",
            (relation.oid,),
        )
        return bool(rows[0][0])

    def has_user_triggers(self, table: Relation) -> bool:
        """Whether ``table`` has triggers of its own (not those of its foreign keys)."""
        rows = self._rows(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_trigger"
            " WHERE tgrelid = %s AND NOT tgisinternal)",
            (table.oid,),
        )
        return bool(rows[0][0])

    def foreign_keys(self, table: Relation) -> tuple[ForeignKey, ...]:
        """The foreign keys of ``table`` and those of other tables that reference it."""
        rows = self._rows(
            "SELECT c.conrelid::int8, c.confrelid::int8,"
            " ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a"
            "  WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) ORDER BY 1),"
            " ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a"
            "  WHERE a.attrelid = c.confrelid AND a.attnum = ANY (c.confkey) ORDER BY 1),"
            " c.conindid::int8 FROM pg_catalog.pg_constraint c"
            " WHERE c.contype = 'f' AND %s IN (c.conrelid, c.confrelid) ORDER BY c.oid",
            (table.oid,),
        )
        return tuple(
            ForeignKey(referencing, referenced, tuple(columns), tuple(keys), index_oid)
            for referencing_oid, referenced_oid, columns, keys, index_oid in rows
            if (referencing := self.by_oid(referencing_oid))
            and (referenced := self.by_oid(referenced_oid))
        )

    def unique_index(self, table: Relation, columns: tuple[str, ...]) -> Relation | None:
        """The valid, non-partial unique index of ``table`` on exactly ``columns`` (the
        primary key's when ``columns`` is empty): the one a foreign key references."""
        rows = self._rows(
            "SELECT i.indexrelid::int8, i.indisprimary,"
            " ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, o)"
            "  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            "  ORDER BY k.o)"
            " FROM pg_catalog.pg_index i WHERE i.indrelid = %s AND i.indisunique"
            " AND i.indisvalid AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL"
            " ORDER BY i.indexrelid",
            (table.oid,),
        )
        for oid, primary, keys in rows:
            if (primary and not columns) or (columns and sorted(keys) == sorted(columns)):
                return self.by_oid(oid)
        return None

    def type_oid(self, name: str, schema: str | None = None) -> int | None:
        """The oid of the type ``schema.name`` (``name`` as ``pg_type.typname``, e.g.
        ``int8``, ``varchar``), along ``search_path`` when unqualified."""
        rows = self._lookup(
            "SELECT t.oid::int8 FROM pg_catalog.pg_type t"
            " JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE t.typname = %s",
            name,
            schema,
        )
        return rows[0][0] if rows else None

    def type_kind(self, type_oid: int) -> str | None:
        """``pg_type.typtype``: ``b`` base, ``d`` domain, ``e`` enum, ``c`` composite..."""
        rows = self._rows(
            "SELECT typtype::text FROM pg_catalog.pg_type WHERE oid = %s", (type_oid,)
        )
        return rows[0][0] if rows else None

    def binary_coercible(self, source: int, target: int) -> bool:
        """Whether a value of type ``source`` is a valid ``target`` (another type) as it is:
        a cast ``WITHOUT FUNCTION`` (``pg_cast.castmethod = 'b'``)."""
        rows = self._rows(
            "SELECT 1 FROM pg_catalog.pg_cast"
            " WHERE castsource = %s AND casttarget = %s AND castmethod = 'b'",
            (source, target),
        )
        return bool(rows)

    def volatility(self, function: str, schema: str | None = None) -> str | None:
        """The strongest ``pg_proc.provolatile`` (``i``, ``s`` or ``v``; ``v`` strongest)
        among the functions of that name along ``search_path`` (all overloads, since the
        call's argument types are not resolved here); ``None`` if there is none."""
        schemas, params = self._schemas(schema)
        rows = self._rows(
            "SELECT max(CASE f.provolatile WHEN 'v' THEN 3 WHEN 's' THEN 2 ELSE 1 END)"
            " FROM pg_catalog.pg_proc f"
            " JOIN pg_catalog.pg_namespace n ON n.oid = f.pronamespace"
            f" WHERE n.nspname = ANY({schemas}) AND f.proname = %s",
            (*params, function),
        )
        level = rows[0][0] if rows else None
        return {1: "i", 2: "s", 3: "v"}.get(level) if level else None

    def not_null_proven(self, table: Relation, column: str) -> bool:
        """Whether a valid ``CHECK (column IS NOT NULL)`` constraint of ``table`` proves the
        column has no NULL, so ``SET NOT NULL`` skips its scan (PostgreSQL 12+, "ALTER
        TABLE": "SET/DROP NOT NULL"). Only the plain form is recognised."""
        rows = self._rows(
            "SELECT pg_catalog.pg_get_expr(c.conbin, c.conrelid) FROM pg_catalog.pg_constraint c"
            " WHERE c.conrelid = %s AND c.contype = 'c' AND c.convalidated",
            (table.oid,),
        )
        return any(_proves_not_null(expression, column) for (expression,) in rows)

    def constraint(self, table: Relation, name: str) -> tuple[str, Relation | None] | None:
        """``(contype, the table a foreign key references or None)`` of the constraint
        ``name`` of ``table``, ``None`` if there is none."""
        rows = self._rows(
            "SELECT contype::text, NULLIF(confrelid, 0)::int8"
            " FROM pg_catalog.pg_constraint WHERE conrelid = %s AND conname = %s",
            (table.oid, name),
        )
        if not rows:
            return None
        contype, referenced = rows[0]
        return contype, self.by_oid(referenced) if referenced else None

    def constraint_index(self, table: Relation, name: str) -> Relation | None:
        """The index behind constraint ``name`` of ``table`` (``pg_constraint.conindid``)."""
        rows = self._rows(
            "SELECT NULLIF(conindid, 0)::int8"
            " FROM pg_catalog.pg_constraint WHERE conrelid = %s AND conname = %s",
            (table.oid, name),
        )
        return self.by_oid(rows[0][0]) if rows and rows[0][0] else None


def _proves_not_null(expression: str, column: str) -> bool:
    """Whether the boolean ``expression`` (``pg_get_expr`` of a CHECK) is ``column IS NOT
    NULL``, alone or ANDed with other conditions."""
    from pglast import parser

    # pg_get_expr writes SQL the parser reads back.
    tree = json.loads(parser.parse_sql_json(f"SELECT {expression}"))
    target = tree["stmts"][0]["stmt"]["SelectStmt"]["targetList"][0]["ResTarget"]["val"]
    return _implies_not_null(target, column)


def _implies_not_null(node: dict[str, Any], column: str) -> bool:
    if "BoolExpr" in node and node["BoolExpr"].get("boolop") == "AND_EXPR":
        return any(_implies_not_null(arg, column) for arg in node["BoolExpr"]["args"])
    test = node.get("NullTest")
    if not test or test.get("nulltesttype") != "IS_NOT_NULL":
        return False
    fields = test["arg"].get("ColumnRef", {}).get("fields", [])
    return len(fields) == 1 and fields[0].get("String", {}).get("sval") == column


def _relation(row: tuple[Any, ...]) -> Relation:
    oid, schema, name, relkind = row
    return Relation(int(oid), schema, name, RelationKind(relkind))
