"""What each SQL statement locks, rewrites and scans: the lock classifier of the lock plan.

``classify(sql, catalog)`` reads ``sql`` with PostgreSQL's own parser (``pglast``) and, with
the live catalog, tells for each statement the relations it locks and in which mode, what it
creates, rewrites or reads in full. Lock levels are PostgreSQL's (docs: "Explicit Locking",
"ALTER TABLE" Notes and each subform; src/backend/commands/tablecmds.c,
``AlterTableGetLockLevel``), and were checked against ``pg_locks`` on real servers for every
statement Django's schema editor emits (tests/test_lockplan_locks.py). A statement or
subcommand it does not know, or a decision the catalog cannot settle, gives ``known=False``:
never a guess.

Besides the table itself, a statement may lock its indexes and sequences: an ACCESS EXCLUSIVE
lock on an index blocks every query on its table, since the planner opens all of a table's
indexes (ACCESS SHARE).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from pgmigrate.lockplan import search_path
from pgmigrate.lockplan.catalog import Catalog, Column, Relation, SearchPathLost
from pgmigrate.lockplan.model import (
    Change,
    LockMode,
    RelationKind,
    RelationLock,
    StatementEffect,
)
from pgmigrate.sql import parse_tree

Node = dict[str, Any]

_AE = LockMode.ACCESS_EXCLUSIVE
_SUE = LockMode.SHARE_UPDATE_EXCLUSIVE
_SRE = LockMode.SHARE_ROW_EXCLUSIVE


class Unknown(Exception):
    """Raised inside the classifier when a statement cannot be classified with confidence;
    ``classify`` turns it into ``known=False`` with the reason as a note, then ``after``."""

    def __init__(self, reason: str, *after: str):
        super().__init__(reason)
        self.after = after


def classify(sql: str, catalog: Catalog) -> list[StatementEffect]:
    """What each statement of ``sql`` does: one ``StatementEffect`` per statement, in order.

    ``catalog`` answers the questions that depend on the database (``Catalog`` of the
    connection the statements will run on). Relations that do not exist yet (created by an
    earlier pending statement) are named with ``current_schema()``, and what depends on their
    catalog rows is decided conservatively or left unknown, with a note. Never raises for
    statements it cannot read: the parser's rejection gives one effect with ``known=False``.

    A ``SET``, ``SET LOCAL`` or ``RESET`` of ``search_path`` among the statements changes how
    the names of the statements after it resolve; a statement that may change it unseen (a
    ``DO`` block that sets it, a call of ``set_config``, a ``CALL``...: ``search_path``
    module) leaves their unqualified names unknown. ``catalog`` may itself follow what
    earlier statements set (``search_path_after``).
    """
    statements = parse_tree(sql)
    if statements is None:
        return [
            StatementEffect(
                sql=sql.strip(),
                kind="unparsable",
                known=False,
                notes=("PostgreSQL's parser (pglast) rejects it",),
            )
        ]
    effects = []
    seen = catalog
    for text, node in statements:
        effects.append(_classify(text, node, seen))
        seen = _search_path_after(node, seen)
    return effects


def search_path_after(sql: str, catalog: Catalog) -> Catalog:
    """The catalog the statement after ``sql`` resolves names with on the same connection,
    ``catalog`` being the one ``sql`` was classified with. It follows ``search_path``
    through the statements as ``classify`` does; the end of the transaction they run in is
    the caller's to tell (``Catalog.transaction_ended``)."""
    statements = parse_tree(sql)
    if statements is None:
        return catalog  # the server rejects it too: it changes nothing
    seen = catalog
    for _, node in statements:
        seen = _search_path_after(node, seen)
    return seen


#: What a statement may take from the catalog about a column, or change of it
#: (``StatementEffect.assumes``, ``alters``), for ``schema.table.column``.
_EXISTS = "column {}"
_TYPE = "the type of {}"
_NULLABLE = "whether {} is NOT NULL"
_COLUMN = (_EXISTS, _TYPE, _NULLABLE)


class _Effect:
    """What one statement does, gathered while its parse tree is read."""

    def __init__(self, catalog: Catalog, kind: str):
        self.catalog = catalog
        self.kind = kind
        self.locks: dict[str, RelationLock] = {}
        self.creates: list[str] = []
        self.rewrites: list[str] = []
        self.scans: list[str] = []
        self.notes: list[str] = []
        self.waits_for_snapshots = False
        self.transactional = True
        self.changes: set[Change] = set()
        self.assumes: list[str] = []
        self.alters: list[str] = []

    def lock(self, relation: Relation | None, mode: LockMode) -> None:
        """Record ``mode`` on ``relation`` (kept if stronger than what it has)."""
        if relation is None:
            return
        held = self.locks.get(relation.qualified)
        if held is None or held.mode < mode:
            self.locks[relation.qualified] = RelationLock(relation.qualified, mode, relation.kind)

    def lock_all(self, relations: Iterable[Relation], mode: LockMode) -> None:
        for relation in relations:
            self.lock(relation, mode)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def add(self, names: list[str], name: str) -> None:
        if name not in names:
            names.append(name)

    def column(self, names: list[str], table: Relation, column: str, *aspects: str) -> None:
        """Add ``aspects`` (``_EXISTS``, ``_TYPE``, ``_NULLABLE``) of ``table.column`` to
        ``names`` (``assumes``, ``alters``)."""
        for aspect in aspects:
            self.add(names, aspect.format(f"{table.qualified}.{column}"))

    def rewrite(self, table: Relation) -> None:
        """The table and all its indexes are written anew (and read in full)."""
        self.lock(table, _AE)
        indexes = self.catalog.indexes(table)
        self.lock_all(indexes, _AE)
        for relation in (table, *indexes):
            self.add(self.rewrites, relation.qualified)
        self.add(self.scans, table.qualified)

    def build(self, sql: str) -> StatementEffect:
        return StatementEffect(
            sql=sql,
            kind=self.kind,
            known=True,
            locks=tuple(sorted(self.locks.values(), key=lambda lock: lock.relation)),
            creates=tuple(self.creates),
            rewrites=tuple(self.rewrites),
            scans=tuple(self.scans),
            waits_for_snapshots=self.waits_for_snapshots,
            transactional=self.transactional,
            notes=tuple(self.notes),
            changes=frozenset(self.changes),
            assumes=tuple(self.assumes),
            alters=tuple(self.alters),
        )

    def unknown(self, sql: str, *notes: str) -> StatementEffect:
        """The effect of a statement it cannot classify: no lock, ``notes`` say why. What it
        alters still counts for the statements after it."""
        return StatementEffect(
            sql=sql,
            kind=self.kind,
            known=False,
            transactional=self.transactional,
            waits_for_snapshots=self.waits_for_snapshots,
            notes=notes,
            alters=tuple(self.alters),
        )


def _classify(sql: str, node: Node, catalog: Catalog) -> StatementEffect:
    (name, body), *_ = node.items()
    if name not in _STATEMENTS:
        return StatementEffect(
            sql=sql, kind=name, known=False, notes=(f"{name} is not a statement kind it knows",)
        )
    kind, handler = _STATEMENTS[name]
    effect = _Effect(catalog, kind)
    try:
        handler(effect, copy.deepcopy(body))  # the handlers may change it; the tree is shared
    except Unknown as reason:
        return effect.unknown(sql, *effect.notes, str(reason), *reason.after)
    except SearchPathLost as reason:
        return effect.unknown(sql, f"an earlier statement may have changed search_path: {reason}")
    except (KeyError, IndexError, TypeError, ValueError) as error:
        # A parse tree of a shape it does not expect (another pglast version...).
        return effect.unknown(
            sql, f"its parse tree is not as expected ({type(error).__name__}: {error})"
        )
    return effect.build(sql)


# --- Names -------------------------------------------------------------------------------


def _search_path_after(node: Node, seen: Catalog) -> Catalog:
    """The catalog the statement after ``node`` resolves names with: ``seen`` (what
    ``node`` saw), following a ``SET``/``RESET`` of ``search_path`` and the end of a
    transaction (a ``SET LOCAL`` ends with it), or lost once it may have changed unseen
    (``search_path.may_change``, for the statements that run code)."""
    (name, body), *_ = node.items()
    if name == "VariableSetStmt":
        return _variable_set(body, seen)
    if name == "TransactionStmt":
        kind = body.get("kind")
        if kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
            return seen.block_begun()
        if kind in ("TRANS_STMT_COMMIT", "TRANS_STMT_PREPARE"):
            return seen.transaction_ended()
        # A rollback undoes the SETs since the transaction (or the savepoint) began.
        undone = "a rollback after search_path was set may undo it"
        if kind == "TRANS_STMT_ROLLBACK":
            ended = seen.transaction_ended()
            return ended if seen.settled else ended.lost(undone)
        if kind == "TRANS_STMT_ROLLBACK_TO" and not seen.settled:
            return seen.lost(undone)
        return seen
    reason = search_path.may_change(node) if name in _RUNS_CODE else None
    return seen if reason is None else seen.lost(f"{_RUNS_CODE[name]} may change it: {reason}")


#: Statements that may run the user's code (which may call ``set_config``) or reset
#: settings (``DISCARD ALL``), in words.
_RUNS_CODE = {
    "DoStmt": "DO",
    "CallStmt": "CALL",
    "ExecuteStmt": "EXECUTE",
    "ExplainStmt": "EXPLAIN",
    "SelectStmt": "SELECT",
    "InsertStmt": "INSERT",
    "UpdateStmt": "UPDATE",
    "DeleteStmt": "DELETE",
    "MergeStmt": "MERGE",
    "CreateTableAsStmt": "CREATE TABLE AS",
    "CopyStmt": "COPY",
    "DiscardStmt": "DISCARD",
}


def _variable_set(body: Node, seen: Catalog) -> Catalog:
    """The catalog after ``SET``/``RESET`` (docs: "SET", "RESET"): a ``search_path`` of
    plain names is followed, ``RESET``/``DEFAULT`` return to the setting's reset value
    (``pg_settings.reset_val``); anything else that changes it is not followed."""
    kind, variable = body["kind"], body.get("name")
    local = bool(body.get("is_local"))  # SET LOCAL: until the transaction ends
    if variable != "search_path" or kind == "VAR_RESET_ALL":
        if search_path.changes_variable(body):  # RESET ALL, SET ROLE...
            return seen.lost(f"{search_path.set_words(body)} may change it", local=local)
        return seen
    if kind in ("VAR_RESET", "VAR_SET_DEFAULT"):
        return seen.following(seen.reset_search_path(), local=local)
    items = [arg.get("A_Const", {}).get("sval", {}).get("sval") for arg in body.get("args", [])]
    if kind != "VAR_SET_VALUE" or None in items:
        return seen.lost(f"{search_path.set_words(body)} is not followed", local=local)
    return seen.following([item for item in items if item is not None], local=local)


def _resolve(
    effect: _Effect, range_var: Node, kind: RelationKind = RelationKind.TABLE
) -> Relation:
    """The relation a ``RangeVar`` names. One not in the catalog yet (an earlier pending
    statement creates it) gets oid 0, a name in ``current_schema()`` and a note: its
    indexes, columns and constraints are unknown."""
    schema, name = range_var.get("schemaname"), range_var["relname"]
    relation = effect.catalog.relation(name, schema)
    if relation is not None and effect.catalog.in_inheritance(relation):
        raise Unknown(
            f"{relation.qualified} has partitions or inheritance children, or is one:"
            " the locks it takes on them are not modelled"
        )
    if relation is None:
        qualified = _qualified(effect, range_var)
        effect.note(f"{qualified} is not in the catalog yet (created by a pending statement?)")
        schema_name, relation_name = qualified.split(".", 1)
        relation = Relation(0, schema_name, relation_name, kind)
    return relation


def _qualified(effect: _Effect, range_var: Node) -> str:
    """``schema.name`` of a ``RangeVar`` that is not in the catalog: its own schema, else
    ``current_schema()`` (where an unqualified name is created)."""
    schema = range_var.get("schemaname") or effect.catalog.current_schema()
    if schema is None:
        raise Unknown("no schema of search_path exists: nothing can be created")
    return f"{schema}.{range_var['relname']}"


def _listed(relations: Iterable[Relation]) -> str:
    """``schema.a, schema.b``: the names of ``relations``."""
    return ", ".join(relation.qualified for relation in relations)


def _object_word(objtype: str) -> str:
    """``OBJECT_MATVIEW`` -> ``MATERIALIZED VIEW``: an ``ObjectType`` as SQL spells it."""
    word = objtype.removeprefix("OBJECT_").replace("TABCONSTRAINT", "CONSTRAINT")
    return word.replace("MATVIEW", "MATERIALIZED VIEW")


def _string_list(items: list[Node]) -> list[str]:
    return [item["String"]["sval"] for item in items]


def _names(node: Node) -> list[str]:
    """The dotted name of a ``List`` of ``String`` nodes (``DROP``, ``COMMENT`` objects)."""
    return _string_list(node["List"]["items"])


def _range_var(names: list[str]) -> Node:
    return {"relname": names[-1], **({"schemaname": names[-2]} if len(names) > 1 else {})}


# --- Statements --------------------------------------------------------------------------


def _create_table(effect: _Effect, body: Node) -> None:
    relation = body["relation"]
    if body.get("inhRelations") or body.get("partbound") or body.get("ofTypename"):
        raise Unknown("CREATE TABLE ... INHERITS / PARTITION OF / OF locks other tables")
    if body.get("relation", {}).get("relpersistence") == "t":
        effect.note("a temporary table: no other session sees it")
    name = _qualified(effect, relation)
    effect.add(effect.creates, name)
    schema = name.split(".")[0]
    for element in body.get("tableElts", []):
        if "TableLikeClause" in element:
            raise Unknown("CREATE TABLE ... (LIKE ...) reads another table")
        if "ColumnDef" in element:
            column = element["ColumnDef"]
            constraints = [c["Constraint"] for c in column.get("constraints", [])]
            if _sequence_backed(column):
                effect.add(effect.creates, _sequence_name(schema, relation["relname"], column))
            for constraint in constraints:
                _table_constraint(effect, constraint, name)
        else:
            _table_constraint(effect, element["Constraint"], name)


def _table_constraint(effect: _Effect, constraint: Node, table: str) -> None:
    """Constraints of the new table ``table``: the referenced tables of its foreign keys
    are locked SHARE ROW EXCLUSIVE (but the new table itself), and the unique index a key
    references ACCESS SHARE."""
    contype = constraint["contype"]
    schema = table.split(".")[0]
    if contype == "CONSTR_FOREIGN":
        if _qualified(effect, constraint["pktable"]) == table:
            effect.note("a foreign key to itself: no other table is locked")
            return
        _reference(effect, constraint)
    elif contype in ("CONSTR_PRIMARY", "CONSTR_UNIQUE", "CONSTR_EXCLUSION"):
        if constraint.get("conname"):
            effect.add(effect.creates, f"{schema}.{constraint['conname']}")
        else:
            effect.note("creates the index of a key under a name PostgreSQL chooses")


def _reference(effect: _Effect, constraint: Node) -> Relation:
    """Lock the table a foreign key references (SHARE ROW EXCLUSIVE: it gets triggers) and
    the unique index the key uses (ACCESS SHARE)."""
    referenced = _resolve(effect, constraint["pktable"])
    effect.lock(referenced, _SRE)
    version = effect.catalog.server_version
    if version not in _FK_INDEX_LOCK_SEEN:
        effect.note(_FK_INDEX_UNVERIFIED)
    if not referenced.oid:
        effect.note(f"the index it references on {referenced.qualified} is new too")
        return referenced
    columns = tuple(_string_list(constraint.get("pk_attrs", [])))
    index = effect.catalog.unique_index(referenced, columns)
    if index is None:
        # "there is no unique constraint matching given keys for referenced table"
        raise Unknown(f"no unique index of {referenced.qualified} matches the foreign key")
    if version >= _FK_INDEX_LOCKED_SINCE.get(version // 10000, 0):
        effect.lock(index, LockMode.ACCESS_SHARE)
    return referenced


#: The first minor release of each major version seen (pg_locks, the test file run on
#: each) to lock the unique index a new foreign key references, ACCESS SHARE: a change of
#: a minor release. The one before was seen not to (14.23, 15.18, 16.14, 17.10, 18.4);
#: 14.24 and 18.5 were not seen, nor any other major version (taken to lock it).
_FK_INDEX_LOCKED_SINCE = {14: 140024, 15: 150019, 16: 160015, 17: 170011, 18: 180006}
#: The versions whose behaviour was seen; for others a note says it was not.
_FK_INDEX_LOCK_SEEN = frozenset(
    {140023, 150018, 160014, 170010, 180004, 150019, 160015, 170011, 180006}
)
_FK_INDEX_UNVERIFIED = (
    "whether this PostgreSQL release locks the index the key references (ACCESS SHARE) was"
    " not checked: 15.19, 16.15, 17.11 and 18.6 do; 14.23, 15.18, 16.14, 17.10, 18.4 do not"
)


def _sequence_backed(column: Node) -> bool:
    """Whether a new column gets a sequence of its own (``serial`` or identity)."""
    return _serial(column) or any(
        c["Constraint"]["contype"] == "CONSTR_IDENTITY" for c in column.get("constraints", [])
    )


def _sequence_name(schema: str, table: str, column: Node) -> str:
    """The name PostgreSQL gives the sequence of a serial or identity column (unless too
    long or taken: then it picks another)."""
    return f"{schema}.{table}_{column['colname']}_seq"


def _serial(column: Node) -> bool:
    type_name = _string_list(column.get("typeName", {}).get("names", []))
    return bool(type_name) and type_name[-1] in (
        "serial",
        "serial4",
        "bigserial",
        "serial8",
        "smallserial",
        "serial2",
    )


def _drop(effect: _Effect, body: Node) -> None:
    remove = body["removeType"]
    effect.kind = f"DROP {_object_word(remove)}"
    if remove not in _DROPPED_KINDS:
        raise Unknown(f"{effect.kind} is not modelled")
    concurrent = bool(body.get("concurrent"))
    if concurrent:
        # Never in a transaction block, whether the index exists or not (ExecDropStmt).
        effect.kind = "DROP INDEX CONCURRENTLY"
        effect.transactional = False
    for target in body.get("objects", []):
        kind = _DROPPED_KINDS[remove]
        relation = _resolve(effect, _range_var(_names(target)), kind)
        if not relation.oid:
            if body.get("missing_ok"):
                # Nothing to drop, unless an earlier statement of the plan creates it.
                effect.add(effect.assumes, relation.qualified)
                continue
            raise Unknown(f"what depends on {relation.qualified} is not in the catalog yet")
        if remove == "OBJECT_INDEX":
            _drop_index(effect, relation, concurrent=concurrent)
            continue
        effect.lock(relation, _AE)
        if remove in ("OBJECT_VIEW", "OBJECT_MATVIEW"):
            effect.lock_all(effect.catalog.indexes(relation), _AE)
            if effect.catalog.dependent_views(relation):
                raise Unknown("other views depend on it")
        if remove == "OBJECT_TABLE":
            effect.lock_all(effect.catalog.indexes(relation), _AE)
            effect.lock_all(effect.catalog.owned_sequences(relation), _AE)
            for key in effect.catalog.foreign_keys(relation):
                # Dropping a foreign key drops its triggers on both tables.
                other = key.referenced if key.table == relation else key.table
                if other == relation:
                    continue
                if key.referenced == relation and body.get("behavior") != "DROP_CASCADE":
                    raise Unknown(f"{other.qualified} references it: it fails without CASCADE")
                effect.lock(other, _AE)
                effect.note(f"drops a foreign key between it and {other.qualified}")
            if effect.catalog.dependent_views(relation):
                raise Unknown("views depend on it")


_DROPPED_KINDS = {
    "OBJECT_TABLE": RelationKind.TABLE,
    "OBJECT_INDEX": RelationKind.INDEX,
    "OBJECT_SEQUENCE": RelationKind.SEQUENCE,
    "OBJECT_VIEW": RelationKind.VIEW,
    "OBJECT_MATVIEW": RelationKind.MATERIALIZED_VIEW,
}


def _drop_index(effect: _Effect, index: Relation, *, concurrent: bool) -> None:
    table = effect.catalog.index_table(index)
    if concurrent:
        effect.waits_for_snapshots = True
        # index.c, index_drop: SHARE UPDATE EXCLUSIVE on both while it waits out the
        # transactions that may use the index, then ACCESS EXCLUSIVE on the index.
        effect.lock(table, _SUE)
        effect.lock(index, _AE)
        effect.note(
            "takes ACCESS EXCLUSIVE on the index only after every transaction using it ended"
        )
        return
    effect.lock(table, _AE)
    effect.lock(index, _AE)


def _create_index(effect: _Effect, body: Node) -> None:
    table = _resolve(effect, body["relation"])
    concurrent = bool(body.get("concurrent"))
    effect.kind = "CREATE {}INDEX{}".format(
        "UNIQUE " if body.get("unique") else "", " CONCURRENTLY" if concurrent else ""
    )
    effect.changes.add(Change.CREATE_INDEX)
    if body.get("idxname"):
        effect.add(effect.creates, f"{table.schema}.{body['idxname']}")
    else:
        effect.note("PostgreSQL chooses the new index's name")
    if concurrent:
        effect.lock(table, _SUE)
        effect.transactional = False
        effect.waits_for_snapshots = True
        effect.note("reads the table twice and waits for older transactions in between")
    else:
        effect.lock(table, LockMode.SHARE)
    effect.add(effect.scans, table.qualified)


def _rename(effect: _Effect, body: Node) -> None:
    rename = body["renameType"]
    if rename in ("OBJECT_COLUMN", "OBJECT_TABCONSTRAINT"):
        effect.kind = f"ALTER TABLE RENAME {_object_word(rename)}"
    else:
        effect.kind = f"ALTER {_object_word(rename)} RENAME"
    if "relation" not in body:
        raise Unknown(f"{effect.kind} is not modelled")
    relation = _resolve(effect, body["relation"])
    if rename == "OBJECT_COLUMN":
        effect.column(effect.alters, relation, body["subname"], *_COLUMN)
        effect.column(effect.alters, relation, body["newname"], *_COLUMN)
    if rename == "OBJECT_INDEX" or (
        rename in ("OBJECT_TABLE", "OBJECT_SEQUENCE", "OBJECT_VIEW")
        and relation.kind in (RelationKind.INDEX, RelationKind.PARTITIONED_INDEX)
    ):
        # PostgreSQL 12+: renaming an index takes SHARE UPDATE EXCLUSIVE ("ALTER INDEX").
        effect.lock(relation, _SUE)
    elif rename in ("OBJECT_TABLE", "OBJECT_SEQUENCE", "OBJECT_VIEW", "OBJECT_COLUMN"):
        effect.lock(relation, _AE)
    elif rename == "OBJECT_TABCONSTRAINT":
        effect.lock(relation, _AE)
        # The index of a key constraint is renamed with it.
        effect.lock(effect.catalog.constraint_index(relation, body["subname"]), _SUE)
    else:
        raise Unknown(f"{effect.kind} is not modelled")


def _comment(effect: _Effect, body: Node) -> None:
    objtype = body["objtype"]
    effect.kind = f"COMMENT ON {_object_word(objtype)}"
    if objtype in ("OBJECT_TABLE", "OBJECT_INDEX", "OBJECT_SEQUENCE", "OBJECT_VIEW"):
        relation = _resolve(effect, _range_var(_names(body["object"])))
    elif objtype == "OBJECT_COLUMN":
        relation = _resolve(effect, _range_var(_names(body["object"])[:-1]))
    else:
        raise Unknown(f"{effect.kind} is not modelled")
    effect.lock(relation, _SUE)


def _nothing(effect: _Effect, body: Node) -> None:
    """Statements that take no lock on a relation."""


def _constraints_set(effect: _Effect, body: Node) -> None:
    effect.note(
        "runs the foreign key checks deferred so far in the transaction (rows written by"
        " earlier statements): each locks rows of the referenced table (ROW SHARE)"
    )


def _truncate(effect: _Effect, body: Node) -> None:
    if body.get("behavior") == "DROP_CASCADE":
        raise Unknown("TRUNCATE ... CASCADE empties the tables that reference these too")
    for range_var in body.get("relations", []):
        table = _resolve(effect, range_var["RangeVar"])
        effect.lock(table, _AE)
        indexes = effect.catalog.indexes(table)
        effect.lock_all(indexes, _AE)
        effect.add(effect.rewrites, table.qualified)
        for index in indexes:
            effect.add(effect.rewrites, index.qualified)
        effect.note("new, empty files: quick whatever the size")
        if body.get("restart_seqs"):
            # Each owned sequence starts again in a new file.
            for sequence in effect.catalog.owned_sequences(table):
                effect.lock(sequence, _AE)
                effect.add(effect.rewrites, sequence.qualified)


def _vacuum(effect: _Effect, body: Node) -> None:
    vacuum = bool(body.get("is_vacuumcmd"))
    options = {option["DefElem"]["defname"] for option in body.get("options", [])}
    effect.kind = "VACUUM" if vacuum else "ANALYZE"
    effect.transactional = not vacuum
    if "full" in options:
        raise Unknown("VACUUM FULL is not modelled")
    relations = body.get("rels", [])
    if not relations:
        raise Unknown(f"{effect.kind} of every table")
    for relation in relations:
        table = _resolve(effect, relation["VacuumRelation"]["relation"])
        effect.lock(table, _SUE)
        indexes = effect.catalog.indexes(table)
        if vacuum:
            # vacuum_rel opens the indexes ROW EXCLUSIVE and reads the whole table.
            effect.lock_all(indexes, LockMode.ROW_EXCLUSIVE)
            effect.add(effect.scans, table.qualified)
        else:
            # ANALYZE reads a sample of rows (300 x the statistics target), not the table.
            effect.lock_all(indexes, LockMode.ACCESS_SHARE)
            effect.note("reads a sample of the rows, whatever the table's size")


def _reindex(effect: _Effect, body: Node) -> None:
    concurrent = any(
        option.get("DefElem", {}).get("defname") == "concurrently"
        for option in body.get("params", [])
    )
    effect.kind = "REINDEX" + (" CONCURRENTLY" if concurrent else "")
    relation = body.get("relation")
    if concurrent or relation is None:
        raise Unknown(f"{effect.kind} of this kind is not modelled")
    target = _resolve(effect, relation)
    if not target.oid:
        raise Unknown(f"{target.qualified} is not in the catalog yet")
    if body.get("kind") == "REINDEX_OBJECT_INDEX":
        table, indexes = effect.catalog.index_table(target), (target,)
        if table is None:
            raise Unknown(f"{target.qualified} is not an index")
    else:
        table, indexes = target, effect.catalog.indexes(target)
    effect.lock(table, LockMode.SHARE)
    effect.lock_all(indexes, _AE)
    effect.changes.add(Change.REINDEX)
    for index in indexes:
        effect.add(effect.rewrites, index.qualified)
    effect.add(effect.scans, table.qualified)


def _create_sequence(effect: _Effect, body: Node) -> None:
    effect.add(effect.creates, _qualified(effect, body["sequence"]))
    for option in body.get("options", []):
        if option["DefElem"]["defname"] == "owned_by":
            raise Unknown("CREATE SEQUENCE ... OWNED BY is not modelled")


def _alter_sequence(effect: _Effect, body: Node) -> None:
    sequence = _resolve(effect, body["sequence"], RelationKind.SEQUENCE)
    options = {option["DefElem"]["defname"] for option in body.get("options", [])}
    if options - {"as", "increment", "minvalue", "maxvalue", "start", "restart", "cache", "cycle"}:
        raise Unknown(f"ALTER SEQUENCE {', '.join(sorted(options))} is not modelled")
    # AlterSequence: SHARE ROW EXCLUSIVE, and a new file for the sequence's one row.
    effect.lock(sequence, _SRE)
    effect.add(effect.rewrites, sequence.qualified)
    effect.note("the sequence's one row is written anew: quick")


def _create_view(effect: _Effect, body: Node) -> None:
    view = body["view"]
    existing = effect.catalog.relation(view["relname"], view.get("schemaname"))
    if existing is not None and body.get("replace"):
        effect.lock(existing, _AE)
    else:
        effect.add(effect.creates, _qualified(effect, view))
    if _found(body["query"], "withClause"):
        raise Unknown("a view's WITH query is not modelled")
    for range_var in _range_vars(body["query"]):
        effect.lock(_resolve(effect, range_var), LockMode.ACCESS_SHARE)


def _range_vars(node: Any) -> list[Node]:
    """Every ``RangeVar`` in a parse tree (the relations a query reads)."""
    return _found(node, "RangeVar")


def _found(node: Any, name: str) -> list[Node]:
    """Every node of type ``name`` in a parse tree."""
    found: list[Node] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == name:
                found.append(value)
            found.extend(_found(value, name))
    elif isinstance(node, list):
        for item in node:
            found.extend(_found(item, name))
    return found


def _create_table_as(effect: _Effect, body: Node) -> None:
    if body.get("objtype") == "OBJECT_MATVIEW":
        effect.kind = "CREATE MATERIALIZED VIEW"
    if "SelectStmt" not in body["query"]:
        raise Unknown(f"{effect.kind} of anything but a SELECT is not modelled")
    effect.add(effect.creates, _qualified(effect, body["into"]["rel"]))
    if body["into"].get("skipData"):
        # The query is analysed (its relations locked ACCESS SHARE), not planned nor run.
        effect.note("WITH NO DATA: its query does not run")
        if _found(body["query"], "withClause"):
            raise Unknown("a WITH query is not modelled here")
        for range_var in _range_vars(body["query"]):
            effect.lock(_resolve(effect, range_var), LockMode.ACCESS_SHARE)
        return
    _select(effect, body["query"]["SelectStmt"])


def _create_trigger(effect: _Effect, body: Node) -> None:
    # CreateTrigger: SHARE ROW EXCLUSIVE on the table (PostgreSQL 9.5+).
    effect.lock(_resolve(effect, body["relation"]), _SRE)


def _refresh(effect: _Effect, body: Node) -> None:
    view = _resolve(effect, body["relation"], RelationKind.MATERIALIZED_VIEW)
    if body.get("concurrent"):
        effect.kind = "REFRESH MATERIALIZED VIEW CONCURRENTLY"
        effect.lock(view, LockMode.EXCLUSIVE)
        raise Unknown("the diff it computes against the old rows is not modelled")
    if not view.oid:
        raise Unknown(f"the query of {view.qualified} is not in the catalog yet")
    # New files for the view and its indexes, filled by running its query (whose planner
    # opens the indexes of the tables it reads); the indexes are built from the new rows.
    effect.rewrite(view)
    for table in effect.catalog.view_tables(view):
        _not_a_view(table, "reads")
        effect.lock(table, LockMode.ACCESS_SHARE)
        effect.lock_all(effect.catalog.indexes(table), LockMode.ACCESS_SHARE)
        effect.add(effect.scans, table.qualified)
    effect.note("runs the view's query again: reads its tables unless an index serves")


def _lock(effect: _Effect, body: Node) -> None:
    """``LOCK TABLE``: the mode given (ACCESS EXCLUSIVE when none is) on each table, and
    nothing else (docs: "LOCK"). ``LOCK`` of a view locks the tables of its query too: not
    modelled."""
    mode = LockMode(body.get("mode", _AE))
    effect.note(
        f"takes {mode.label} until the transaction ends"
        + (" (NOWAIT: fails at once rather than wait)" if body.get("nowait") else "")
    )
    for item in body["relations"]:
        table = _resolve(effect, item["RangeVar"])
        if table.kind not in (RelationKind.TABLE, RelationKind.PARTITIONED_TABLE):
            raise Unknown(f"LOCK of a {table.kind.name.lower().replace('_', ' ')} is not modelled")
        effect.lock(table, mode)


def _unknown(effect: _Effect, body: Node) -> None:
    raise Unknown("it runs code of its own: its locks cannot be known before it runs")


def _do(effect: _Effect, body: Node) -> None:
    """A ``DO`` block: its locks are unknown; whether it may change ``search_path`` is
    read from its code (``search_path.may_change``), as for the statements after it."""
    reason = search_path.may_change({"DoStmt": body})
    raise Unknown(
        "it runs code of its own: its locks cannot be known before it runs",
        "search_path is taken as unchanged: nothing in the block sets it"
        " (the functions it calls are taken not to)"
        if reason is None
        else f"it may change search_path: {reason}",
    )


# --- ALTER TABLE -------------------------------------------------------------------------

#: Subcommands whose only effect is a lock on the table, and its mode
#: (``AlterTableGetLockLevel``).
_PLAIN_SUBCOMMANDS: dict[str, tuple[str, LockMode]] = {
    "AT_DropNotNull": ("ALTER COLUMN DROP NOT NULL", _AE),
    "AT_ColumnDefault": ("ALTER COLUMN SET/DROP DEFAULT", _AE),
    "AT_SetStorage": ("ALTER COLUMN SET STORAGE", _AE),
    "AT_SetCompression": ("ALTER COLUMN SET COMPRESSION", _AE),
    "AT_DropExpression": ("ALTER COLUMN DROP EXPRESSION", _AE),
    "AT_ChangeOwner": ("OWNER TO", _AE),
    "AT_ReplicaIdentity": ("REPLICA IDENTITY", _AE),
    "AT_SetStatistics": ("ALTER COLUMN SET STATISTICS", _SUE),
    "AT_SetOptions": ("ALTER COLUMN SET (...)", _SUE),
    "AT_ResetOptions": ("ALTER COLUMN RESET (...)", _SUE),
    "AT_DropCluster": ("SET WITHOUT CLUSTER", _SUE),
    "AT_EnableTrig": ("ENABLE TRIGGER", _SRE),
    "AT_EnableAlwaysTrig": ("ENABLE ALWAYS TRIGGER", _SRE),
    "AT_EnableReplicaTrig": ("ENABLE REPLICA TRIGGER", _SRE),
    "AT_DisableTrig": ("DISABLE TRIGGER", _SRE),
    "AT_EnableTrigAll": ("ENABLE TRIGGER ALL", _SRE),
    "AT_DisableTrigAll": ("DISABLE TRIGGER ALL", _SRE),
    "AT_EnableTrigUser": ("ENABLE TRIGGER USER", _SRE),
    "AT_DisableTrigUser": ("DISABLE TRIGGER USER", _SRE),
    "AT_EnableRowSecurity": ("ENABLE ROW LEVEL SECURITY", _AE),
    "AT_DisableRowSecurity": ("DISABLE ROW LEVEL SECURITY", _AE),
    "AT_ForceRowSecurity": ("FORCE ROW LEVEL SECURITY", _AE),
    "AT_NoForceRowSecurity": ("NO FORCE ROW LEVEL SECURITY", _AE),
}


def _alter_table(effect: _Effect, body: Node) -> None:
    objtype = body.get("objtype", "OBJECT_TABLE")
    if objtype != "OBJECT_TABLE":
        effect.kind = f"ALTER {_object_word(objtype)}"
        raise Unknown(f"{effect.kind} is not modelled")
    table = _resolve(effect, body["relation"])
    if not table.oid and body.get("missing_ok"):
        effect.add(effect.assumes, table.qualified)
        effect.notes.clear()
        effect.note(
            f"{table.qualified} is not in the catalog: IF EXISTS makes it do nothing (the"
            " plan says unknown if an earlier statement of it creates the table)"
        )
        return
    labels: list[str] = []
    for item in body.get("cmds", []):
        command = item["AlterTableCmd"]
        subtype = command["subtype"]
        plain = _PLAIN_SUBCOMMANDS.get(subtype)
        if plain is not None:
            labels.append(plain[0])
            effect.lock(table, plain[1])
            if subtype == "AT_DropNotNull":  # a later SET NOT NULL checks the rows again
                effect.column(effect.alters, table, command["name"], _NULLABLE)
            continue
        handler = _SUBCOMMANDS.get(subtype)
        if handler is None:
            effect.kind = f"ALTER TABLE {subtype.removeprefix('AT_')}"
            raise Unknown(f"ALTER TABLE subcommand {subtype} is not modelled")
        labels.append(handler(effect, table, command))
    effect.kind = "ALTER TABLE " + ", ".join(dict.fromkeys(labels))


def _column_of(effect: _Effect, table: Relation, name: str) -> Column:
    column = effect.catalog.column(table, name) if table.oid else None
    if column is None:
        raise Unknown(f"column {name} of {table.qualified} is not in the catalog yet")
    return column


def _add_column(effect: _Effect, table: Relation, command: Node) -> str:
    effect.lock(table, _AE)
    column = command["def"]["ColumnDef"]
    effect.column(effect.alters, table, column["colname"], *_COLUMN)
    constraints = [c["Constraint"] for c in column.get("constraints", [])]
    contypes = {constraint["contype"] for constraint in constraints}
    if not _serial(column):
        names = _string_list(column["typeName"]["names"])
        type_oid = effect.catalog.type_oid(names[-1], names[-2] if len(names) > 1 else None)
        if type_oid is None:
            raise Unknown(f"type {'.'.join(names)} is not in the catalog yet")
        if effect.catalog.type_kind(type_oid) == "d":
            # A domain's constraints are checked against the column's value in every row.
            raise Unknown(f"a column of domain {'.'.join(names)}: its checks are not modelled")
    if _sequence_backed(column):
        effect.add(effect.creates, _sequence_name(table.schema, table.name, column))
        effect.note(f"{column['colname']} gets a value from a sequence in every row")
        effect.rewrite(table)
    default = next((c for c in constraints if c["contype"] == "CONSTR_DEFAULT"), None)
    if default is not None and _volatile(effect, default["raw_expr"]):
        effect.changes.add(Change.VOLATILE_DEFAULT)
        effect.rewrite(table)
    elif default is not None:
        effect.note(
            "a non-volatile default is stored once in the catalog, not in each row"
            " (PostgreSQL 11+)"
        )
    for constraint in constraints:
        contype = constraint["contype"]
        if contype == "CONSTR_GENERATED":
            if constraint.get("generated_kind", "s") == "s":
                effect.note("a STORED generated column is computed into every row")
                effect.rewrite(table)
            else:
                effect.note("a VIRTUAL generated column is computed when read")
        elif contype == "CONSTR_CHECK":
            effect.changes.add(Change.ADD_CHECK)
            effect.add(effect.scans, table.qualified)
        elif contype in ("CONSTR_PRIMARY", "CONSTR_UNIQUE"):
            effect.changes.add(_KEY_CHANGES[contype])
            _key_index(effect, table, constraint)
        elif contype == "CONSTR_FOREIGN":
            effect.changes.add(Change.ADD_FOREIGN_KEY)
            if default is not None:
                raise Unknown("a foreign key on a new column with a default is checked row by row")
            _reference(effect, constraint)
            effect.lock(table, _SRE)
            effect.note("a new column is NULL in every row: no row to check for the foreign key")
        elif (
            contype == "CONSTR_NOTNULL"
            and default is None
            and not (_serial(column) or contypes & {"CONSTR_IDENTITY", "CONSTR_GENERATED"})
        ):
            raise Unknown("NOT NULL without a default fails on a table with rows")
    return "ADD COLUMN"


def _key_index(effect: _Effect, table: Relation, constraint: Node) -> None:
    """A PRIMARY KEY, UNIQUE or EXCLUDE constraint builds its index: reads the table."""
    if constraint.get("conname"):
        effect.add(effect.creates, f"{table.schema}.{constraint['conname']}")
    else:
        effect.note("PostgreSQL chooses the name of the key's index")
    effect.add(effect.scans, table.qualified)


def _volatile(effect: _Effect, expression: Node) -> bool:
    """Whether a default expression calls a volatile function (``pg_proc.provolatile``).
    Raises ``Unknown`` for expressions it cannot judge."""
    (name, body), *_ = expression.items()
    if name in ("A_Const", "SQLValueFunction"):
        return False
    if name == "TypeCast":
        # A cast of a constant runs the type's input function, immutable or stable.
        return _volatile(effect, body["arg"])
    if name == "FuncCall":
        function = _string_list(body["funcname"])
        volatility = effect.catalog.volatility(
            function[-1], function[-2] if len(function) > 1 else None
        )
        if volatility is None:
            raise Unknown(f"function {'.'.join(function)} is not in the catalog")
        if volatility == "v":
            effect.note(f"the default {'.'.join(function)}() is volatile: a value per row")
            return True
        return any(_volatile(effect, arg) for arg in body.get("args", []))
    if name == "A_ArrayExpr":
        return any(_volatile(effect, element) for element in body.get("elements", []))
    raise Unknown(f"cannot tell whether the default ({name}) is volatile")


def _drop_column(effect: _Effect, table: Relation, command: Node) -> str:
    effect.lock(table, _AE)
    name = command["name"]
    effect.column(effect.alters, table, name, *_COLUMN)
    if not table.oid:
        raise Unknown(f"{table.qualified} is not in the catalog yet")
    # The column, its indexes and views as the catalog shows them.
    effect.add(effect.assumes, table.qualified)
    effect.column(effect.assumes, table, name, _EXISTS)
    if effect.catalog.column(table, name) is None:
        if command.get("missing_ok"):
            return "DROP COLUMN"
        raise Unknown(f"column {name} of {table.qualified} does not exist")
    contypes = effect.catalog.column_constraints(table, name)
    if "f" in contypes:
        raise Unknown("a foreign key uses the column: it is dropped with it")
    views = effect.catalog.column_views(table, name)
    if views:
        them = "it" if len(views) == 1 else "them"
        raise Unknown(
            f"the column is used by {_listed(views)}: "
            + (
                f"CASCADE drops {them} too (ACCESS EXCLUSIVE on each, and on the views that"
                f" use {them})"
                if command.get("behavior") == "DROP_CASCADE"
                else "it fails without CASCADE"
            )
        )
    effect.lock_all(effect.catalog.column_indexes(table, name), _AE)
    effect.lock(effect.catalog.column_sequence(table, name), _AE)
    effect.note("the column is only marked dropped: no rewrite")
    return "DROP COLUMN"


def _set_not_null(effect: _Effect, table: Relation, command: Node) -> str:
    effect.lock(table, _AE)
    effect.changes.add(Change.SET_NOT_NULL)
    name = command["name"]
    effect.column(effect.alters, table, name, _NULLABLE)
    column = _column_of(effect, table, name)
    effect.add(effect.assumes, table.qualified)
    effect.column(effect.assumes, table, name, _NULLABLE)
    if column.not_null:
        effect.note(f"{name} is already NOT NULL")
    elif effect.catalog.not_null_proven(table, name):
        effect.note(f"a valid CHECK ({name} IS NOT NULL) constraint proves it: no scan")
    else:
        effect.add(effect.scans, table.qualified)
    return "ALTER COLUMN SET NOT NULL"


#: Types whose length or precision modifier can grow without a rewrite (their length
#: coercion's planner support function drops it: varchar_support, numeric_support,
#: timestamp_support, time_support).
_GROWABLE = frozenset({"varchar", "numeric", "timestamp", "timestamptz", "time", "timetz"})
#: Types whose length coercion is kept whatever the modifiers: any change rewrites.
_LENGTH_CHECKED = frozenset({"bpchar", "varchar", "numeric"})
_PRECISION_TYPES = frozenset({"timestamp", "timestamptz", "time", "timetz"})


def _alter_column_type(effect: _Effect, table: Relation, command: Node) -> str:
    effect.lock(table, _AE)
    effect.changes.add(Change.ALTER_COLUMN_TYPE)
    name = command["name"]
    effect.column(effect.alters, table, name, _TYPE)
    column = _column_of(effect, table, name)
    # Judged by the type the catalog shows: an earlier statement of the plan may change it.
    effect.add(effect.assumes, table.qualified)
    effect.column(effect.assumes, table, name, _TYPE)
    views = effect.catalog.column_views(table, name)
    if views:
        raise Unknown(
            f"the column is used by {_listed(views)}: PostgreSQL refuses to change its type"
        )
    definition = command["def"]["ColumnDef"]
    type_name = definition["typeName"]
    names = _string_list(type_name["names"])
    if type_name.get("arrayBounds"):
        raise Unknown("a change to an array type is not modelled")
    target = effect.catalog.type_oid(names[-1], names[-2] if len(names) > 1 else None)
    if target is None or effect.catalog.type_kind(target) != "b":
        raise Unknown(f"type {'.'.join(names)} is not a base type in the catalog")
    typmod = _typmod(names[-1], type_name)
    using = definition.get("raw_default")
    if using is not None and not _plain_cast(using, name):
        effect.note("the USING expression is computed for every row")
        rewrite = True
    else:
        rewrite = _type_change_rewrites(effect, column, target, names[-1], typmod)
    if rewrite:
        effect.rewrite(table)
        effect.note(f"{name}: {column.type_name} to {names[-1]} rewrites the table")
    else:
        indexes = effect.catalog.column_indexes(table, name)
        effect.lock_all(indexes, _AE)
        collation = definition.get("collClause")
        if collation is not None:
            collation_names = _string_list(collation["collname"])
            oid = effect.catalog.collation_oid(
                collation_names[-1], collation_names[-2] if len(collation_names) > 1 else None
            )
            if oid is None:
                raise Unknown(f"collation {'.'.join(collation_names)} is not in the catalog")
            if oid != column.collation and indexes:
                effect.note("a new collation: the column's indexes are built again")
                for index in indexes:
                    effect.add(effect.rewrites, index.qualified)
                effect.add(effect.scans, table.qualified)
        if "c" in effect.catalog.column_constraints(table, name):
            effect.note("the column's CHECK constraints are checked again")
            effect.add(effect.scans, table.qualified)
        effect.note(f"{name}: {column.type_name} to {names[-1]} needs no rewrite")
    if column.identity:
        # The identity's sequence follows the column's type (ALTER SEQUENCE ... AS).
        sequences = [s for c, s in effect.catalog.column_sequences(table) if c == name]
        for sequence in sequences:
            effect.lock(sequence, _SRE)
            effect.add(effect.rewrites, sequence.qualified)
    if "f" in effect.catalog.column_constraints(table, name):
        raise Unknown("a foreign key uses the column: PostgreSQL adds it again")
    return "ALTER COLUMN TYPE"


def _plain_cast(expression: Node, column: str) -> bool:
    """Whether a USING expression is the column itself, or the column cast to a type (as
    Django writes it: ``USING "col"::type``), the same as no USING."""
    if "TypeCast" in expression:
        expression = expression["TypeCast"]["arg"]
    fields = expression.get("ColumnRef", {}).get("fields", [])
    return len(fields) == 1 and fields[0].get("String", {}).get("sval") == column


def _typmod(type_name: str, node: Node) -> int | None:
    """The type modifier ``atttypmod`` of a type's modifiers: -1 without one; ``None`` for
    modifiers of types it does not know."""
    values = [
        modifier.get("A_Const", {}).get("ival", {}).get("ival", 0)
        for modifier in node.get("typmods", [])
    ]
    if not values:
        return -1
    if type_name in ("varchar", "bpchar") and len(values) == 1:
        return values[0] + 4  # VARHDRSZ
    if type_name == "numeric" and len(values) in (1, 2):
        precision, scale = values[0], values[1] if len(values) == 2 else 0
        return ((precision << 16) | (scale & 0x7FF)) + 4
    if type_name in _PRECISION_TYPES and len(values) == 1:
        return values[0]
    return None


def _type_change_rewrites(
    effect: _Effect, column: Column, target: int, type_name: str, typmod: int | None
) -> bool:
    """Whether changing ``column`` to ``target`` (with ``typmod``) rewrites the table
    (tablecmds.c ``ATColumnChangeRequiresRewrite``: only a binary-coercible change, or a
    length/precision that only grows, keeps the rows as they are)."""
    catalog = effect.catalog
    if column.type_oid == target:
        if typmod is None:
            raise Unknown(f"cannot tell whether {type_name}'s new modifier rewrites")
        if typmod == column.typmod:
            return False
        if type_name == "bpchar":
            return True  # char(n) pads to its length: a new length rewrites
        # _typmod knows the modifiers of bpchar and of the growable types only.
        if typmod == -1:
            return False
        if column.typmod == -1:
            return True
        if type_name == "numeric":
            old_scale, new_scale = (column.typmod - 4) & 0xFFFF, (typmod - 4) & 0xFFFF
            return old_scale != new_scale or typmod < column.typmod
        return typmod < column.typmod
    if catalog.binary_coercible(column.type_oid, target):
        if typmod == -1:
            return False
        if type_name in _LENGTH_CHECKED:
            return True  # the new length is checked on every row
        raise Unknown(f"cannot tell whether the {type_name} modifier rewrites")
    if {column.type_name, type_name} & {"timestamp without time zone", "timestamp"}:
        raise Unknown("timestamp to timestamptz rewrites unless the TimeZone is UTC")
    return True


def _add_constraint(effect: _Effect, table: Relation, command: Node) -> str:
    constraint = command["def"]["Constraint"]
    contype = constraint["contype"]
    validated = not constraint.get("skip_validation")
    if contype == "CONSTR_FOREIGN":
        effect.changes.add(Change.ADD_FOREIGN_KEY)
        effect.lock(table, _SRE)
        referenced = _reference(effect, constraint)
        if validated:
            _check_reference(effect, table, referenced)
        else:
            effect.note("NOT VALID: existing rows are not checked")
        return "ADD FOREIGN KEY" + ("" if validated else " NOT VALID")
    effect.lock(table, _AE)
    if contype == "CONSTR_CHECK":
        effect.changes.add(Change.ADD_CHECK)
        if validated:
            effect.add(effect.scans, table.qualified)
        return "ADD CHECK" + ("" if validated else " NOT VALID")
    if contype in ("CONSTR_PRIMARY", "CONSTR_UNIQUE") and constraint.get("indexname"):
        index = effect.catalog.relation(constraint["indexname"], table.schema)
        if index is None:
            raise Unknown(f"index {constraint['indexname']} is not in the catalog yet")
        if constraint.get("conname", index.name) != index.name:
            # Renamed to the constraint's name, as ALTER INDEX RENAME does.
            effect.lock(index, _SUE)
            effect.note("USING INDEX: the index exists, only renamed to the constraint's name")
        else:
            effect.lock(index, LockMode.ACCESS_SHARE)
            effect.note("USING INDEX: the index exists and becomes the constraint's")
        return "ADD CONSTRAINT USING INDEX"
    if contype in _KEY_CHANGES:
        effect.changes.add(_KEY_CHANGES[contype])
        _key_index(effect, table, constraint)
        return {"CONSTR_PRIMARY": "ADD PRIMARY KEY", "CONSTR_UNIQUE": "ADD UNIQUE"}.get(
            contype, "ADD EXCLUDE"
        )
    raise Unknown(f"ADD CONSTRAINT {contype.removeprefix('CONSTR_')} is not modelled")


#: The constraints that build an index, by ``Constraint.contype``.
_KEY_CHANGES = {
    "CONSTR_PRIMARY": Change.ADD_PRIMARY_KEY,
    "CONSTR_UNIQUE": Change.ADD_UNIQUE,
    "CONSTR_EXCLUSION": Change.ADD_EXCLUSION,
}


def _check_reference(effect: _Effect, table: Relation, referenced: Relation) -> None:
    """A foreign key's check of the existing rows: one query joining both tables, whose
    planner opens every index of both (ACCESS SHARE); it reads both tables."""
    effect.lock(referenced, LockMode.ROW_SHARE)
    for relation in (table, referenced):
        effect.lock(relation, LockMode.ACCESS_SHARE)
        effect.lock_all(effect.catalog.indexes(relation), LockMode.ACCESS_SHARE)
    effect.add(effect.scans, table.qualified)
    effect.note(
        f"checks every row of {table.qualified} against {referenced.qualified} (one query"
        " joining them: it may read the referenced table in full too)"
    )


def _drop_constraint(effect: _Effect, table: Relation, command: Node) -> str:
    effect.lock(table, _AE)
    name = command["name"]
    found = effect.catalog.constraint(table, name) if table.oid else None
    if found is None:
        if command.get("missing_ok") and table.oid:
            return "DROP CONSTRAINT"
        raise Unknown(f"constraint {name} of {table.qualified} is not in the catalog yet")
    contype, referenced = found
    if referenced is not None:
        effect.lock(referenced, _AE)
        effect.note("dropping a foreign key drops triggers on the referenced table too")
    if contype in ("p", "u", "x"):
        index = effect.catalog.constraint_index(table, name)
        effect.lock(index, _AE)
        for key in effect.catalog.foreign_keys(table):
            if index is None or key.referenced != table or key.index_oid != index.oid:
                continue
            if command.get("behavior") != "DROP_CASCADE":
                raise Unknown(f"the foreign key of {key.table.qualified} needs it: it fails")
            effect.lock(key.table, _AE)
            effect.note(f"CASCADE drops the foreign key of {key.table.qualified}")
    return "DROP CONSTRAINT"


def _validate_constraint(effect: _Effect, table: Relation, command: Node) -> str:
    effect.lock(table, _SUE)
    name = command["name"]
    found = effect.catalog.constraint(table, name) if table.oid else None
    if found is None:
        raise Unknown(f"constraint {name} of {table.qualified} is not in the catalog yet")
    contype, referenced = found
    if referenced is not None:
        _check_reference(effect, table, referenced)
    elif contype == "c":
        effect.add(effect.scans, table.qualified)
    else:
        raise Unknown(f"VALIDATE of a constraint of type {contype} is not modelled")
    effect.note("SHARE UPDATE EXCLUSIVE: reads and writes go on while it checks")
    return "VALIDATE CONSTRAINT"


def _add_identity(effect: _Effect, table: Relation, command: Node) -> str:
    effect.lock(table, _AE)
    effect.add(
        effect.creates, _sequence_name(table.schema, table.name, {"colname": command["name"]})
    )
    return "ALTER COLUMN ADD IDENTITY"


def _change_identity(effect: _Effect, table: Relation, command: Node) -> str:
    """DROP IDENTITY drops the column's sequence; SET GENERATED / SET sequence options
    alter it (SHARE ROW EXCLUSIVE, as ALTER SEQUENCE)."""
    effect.lock(table, _AE)
    if not table.oid:
        raise Unknown(f"{table.qualified} is not in the catalog yet")
    dropped = command["subtype"] == "AT_DropIdentity"
    sequence = effect.catalog.column_sequence(table, command["name"])
    effect.lock(sequence, _AE if dropped else _SRE)
    return "ALTER COLUMN DROP IDENTITY" if dropped else "ALTER COLUMN SET identity option"


def _cluster_on(effect: _Effect, table: Relation, command: Node) -> str:
    """CLUSTER ON marks an index: SHARE UPDATE EXCLUSIVE on the table and the index."""
    effect.lock(table, _SUE)
    index = effect.catalog.relation(command["name"], table.schema) if table.oid else None
    if index is None:
        raise Unknown(f"index {command['name']} is not in the catalog yet")
    effect.lock(index, _SUE)
    return "CLUSTER ON"


def _set_logged(effect: _Effect, table: Relation, command: Node) -> str:
    effect.rewrite(table)
    if effect.catalog.server_version >= 150000:
        # PostgreSQL 15+ makes the table's own (identity, serial) sequences follow it
        # (tablecmds.c, ATExecCmd: AT_SetLogged/AT_SetUnLogged), each a new file.
        for sequence in effect.catalog.owned_sequences(table):
            effect.lock(sequence, _AE)
            effect.add(effect.rewrites, sequence.qualified)
    return "SET LOGGED" if command["subtype"] == "AT_SetLogged" else "SET UNLOGGED"


_SUBCOMMANDS = {
    "AT_AddColumn": _add_column,
    "AT_DropColumn": _drop_column,
    "AT_SetNotNull": _set_not_null,
    "AT_AlterColumnType": _alter_column_type,
    "AT_AddConstraint": _add_constraint,
    "AT_DropConstraint": _drop_constraint,
    "AT_ValidateConstraint": _validate_constraint,
    "AT_AddIdentity": _add_identity,
    "AT_DropIdentity": _change_identity,
    "AT_SetIdentity": _change_identity,
    "AT_ClusterOn": _cluster_on,
    "AT_SetLogged": _set_logged,
    "AT_SetUnLogged": _set_logged,
}


# --- Data --------------------------------------------------------------------------------


def _modify(effect: _Effect, body: Node) -> None:
    _write(effect, body, effect.kind)


def _write(effect: _Effect, body: Node, verb: str) -> None:
    """``INSERT``, ``UPDATE``, ``DELETE`` (``verb``): ROW EXCLUSIVE on the table (and, for
    UPDATE and DELETE, on its indexes, which the planner opens to find the rows; for
    ``INSERT ... ON CONFLICT``, on the indexes it may find a conflict in)."""
    table = _resolve(effect, body["relation"])
    others = [rv for rv in _range_vars({k: v for k, v in body.items() if k != "relation"})]
    if others or _contains(body, ("FuncCall", "SubLink")):
        raise Unknown("reads other tables or calls functions: not modelled")
    if not table.oid:
        raise Unknown(f"{table.qualified} is not in the catalog yet")
    _not_a_view(table, "writes")
    if effect.catalog.has_user_triggers(table):
        raise Unknown("its triggers may lock other tables")
    effect.lock(table, LockMode.ROW_EXCLUSIVE)
    inserting, deleting = verb == "INSERT", verb == "DELETE"
    written = [
        *body.get("cols" if inserting else "targetList", []),
        # ON CONFLICT DO UPDATE writes the columns of its SET to the rows in conflict.
        *body.get("onConflictClause", {}).get("targetList", []),
    ]
    listed = {target["ResTarget"]["name"] for target in written}
    for key in effect.catalog.foreign_keys(table):
        # A foreign key's triggers lock rows of the other table when a row's key changes:
        # the check of a new or changed key, the ON DELETE/UPDATE action of a referenced one.
        if key.table == table and (inserting or listed & set(key.columns)):
            raise Unknown(f"its foreign key checks lock rows of {key.referenced.qualified}")
        if key.referenced == table and (deleting or listed & set(key.keys)):
            raise Unknown(f"the foreign key of {key.table.qualified} acts on its changes")
    if inserting:
        if not listed:
            raise Unknown("INSERT without a column list is not modelled")
        for sequence_column, sequence in effect.catalog.column_sequences(table):
            if sequence_column not in listed:
                effect.lock(sequence, LockMode.ROW_EXCLUSIVE)
        if "onConflictClause" in body:
            _on_conflict(effect, table, body["onConflictClause"])
        return
    effect.lock_all(effect.catalog.indexes(table), LockMode.ROW_EXCLUSIVE)
    effect.add(effect.scans, table.qualified)
    effect.note("reads the rows its WHERE selects: all of them unless an index serves")


def _on_conflict(effect: _Effect, table: Relation, clause: Node) -> None:
    """The indexes ``ON CONFLICT`` opens ROW EXCLUSIVE to find its arbiters (plancat.c,
    ``infer_arbiter_indexes``): every index of the table for a list of columns, those up
    to the constraint's own (in oid order) for ``ON CONSTRAINT``, none without a target."""
    indexes = effect.catalog.indexes(table)
    constraint = clause.get("infer", {}).get("conname")
    if constraint is not None:
        arbiter = effect.catalog.constraint_index(table, constraint)
        if arbiter is None:
            raise Unknown(f"constraint {constraint} of {table.qualified} has no index")
        indexes = indexes[: indexes.index(arbiter) + 1]
    elif "infer" not in clause:
        indexes = ()
    effect.lock_all(indexes, LockMode.ROW_EXCLUSIVE)


def _contains(node: Any, names: tuple[str, ...]) -> bool:
    if isinstance(node, dict):
        return any(key in names or _contains(value, names) for key, value in node.items())
    if isinstance(node, list):
        return any(_contains(item, names) for item in node)
    return False


def _select(effect: _Effect, body: Node) -> None:
    if _contains(body, ("SubLink", "intoClause", "lockingClause")):
        raise Unknown("subqueries and row locks are not modelled")
    for function in _found(body, "FuncCall"):
        names = _string_list(function["funcname"])
        if effect.catalog.volatility(names[-1], names[-2] if len(names) > 1 else None) != "i":
            # Only an immutable function is sure not to read the database.
            raise Unknown(f"it calls {'.'.join(names)}(), which may read other tables")
    queries = _with_queries(effect, body)
    for range_var in _range_vars(body):
        if not range_var.get("schemaname") and range_var["relname"] in queries:
            continue  # a WITH query's name hides a table's
        relation = _resolve(effect, range_var)
        if not relation.oid:
            raise Unknown(
                f"{relation.qualified} is not in the catalog yet: if it is a view, the tables"
                " of its query are read too"
            )
        _not_a_view(relation, "reads")
        effect.lock(relation, LockMode.ACCESS_SHARE)
        effect.lock_all(effect.catalog.indexes(relation), LockMode.ACCESS_SHARE)
        effect.add(effect.scans, relation.qualified)
    effect.note("reads the tables in full unless an index serves its WHERE (the planner's choice)")


def _not_a_view(relation: Relation, verb: str) -> None:
    """Raise ``Unknown`` for a view: a query that ``verb`` (reads, writes) it locks the
    relations of the view's query too (views of views, joins, their sequences), which are not
    modelled; a materialized view is only written by ``REFRESH``."""
    if relation.kind is RelationKind.VIEW:
        raise Unknown(
            f"it {verb} view {relation.qualified}: the locks it takes on the relations of"
            " the view's query are not modelled"
        )
    if relation.kind is RelationKind.MATERIALIZED_VIEW and verb == "writes":
        raise Unknown(f"{relation.qualified} is a materialized view: writing it fails")


def _with_queries(effect: _Effect, body: Node) -> set[str]:
    """The names of the ``WITH`` queries of a ``SELECT`` (docs: "WITH Queries"). What its
    data-modifying ones (``INSERT``, ``UPDATE``, ``DELETE``) do is added to ``effect`` and
    they are taken out of ``body``, whose reads are the ``SELECT``'s. Raises ``Unknown``
    where a name may mean a table or a query depending on where it stands."""
    clause = body.pop("withClause", {"ctes": []})
    queries = [item["CommonTableExpr"] for item in clause["ctes"]]
    names = [query["ctename"] for query in queries]
    if _found(body, "withClause") or len(set(names)) < len(names):
        raise Unknown("a WITH inside another query, or a WITH name given twice, is not modelled")
    for position, query in enumerate(queries):
        # A WITH query sees the ones before it (and, with RECURSIVE, all of them).
        hidden = set() if clause.get("recursive") else set(names[position:])
        if any(
            not range_var.get("schemaname") and range_var["relname"] in hidden
            for range_var in _range_vars(query["ctequery"])
        ):
            raise Unknown(f"WITH query {query['ctename']} names a later one")
        (kind, statement), *_ = query["ctequery"].items()
        verb = {"InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE"}
        if kind in verb:
            _write(effect, statement, verb[kind])
            effect.kind = f"WITH {verb[kind]} ... SELECT"
            query["ctequery"] = {}
        elif kind != "SelectStmt":
            raise Unknown(f"a WITH query of {kind} is not modelled")
    body["withClause"] = clause
    return set(names)


#: Each statement node: the statement in PostgreSQL's words, and what reads it.
_STATEMENTS: dict[str, tuple[str, Callable[[_Effect, Node], None]]] = {
    "AlterTableStmt": ("ALTER TABLE", _alter_table),
    "CreateStmt": ("CREATE TABLE", _create_table),
    "CreateTableAsStmt": ("CREATE TABLE AS", _create_table_as),
    "DropStmt": ("DROP", _drop),
    "RenameStmt": ("RENAME", _rename),
    "IndexStmt": ("CREATE INDEX", _create_index),
    "CommentStmt": ("COMMENT", _comment),
    "AlterSeqStmt": ("ALTER SEQUENCE", _alter_sequence),
    "CreateSeqStmt": ("CREATE SEQUENCE", _create_sequence),
    "ViewStmt": ("CREATE VIEW", _create_view),
    "RefreshMatViewStmt": ("REFRESH MATERIALIZED VIEW", _refresh),
    "TruncateStmt": ("TRUNCATE", _truncate),
    "VacuumStmt": ("VACUUM", _vacuum),
    "ReindexStmt": ("REINDEX", _reindex),
    "DoStmt": ("DO", _do),
    "CreateExtensionStmt": ("CREATE EXTENSION", _unknown),
    "CreateFunctionStmt": ("CREATE FUNCTION", _nothing),
    "CreateDomainStmt": ("CREATE DOMAIN", _nothing),
    "CreateEnumStmt": ("CREATE TYPE AS ENUM", _nothing),
    "CreateTrigStmt": ("CREATE TRIGGER", _create_trigger),
    "InsertStmt": ("INSERT", _modify),
    "UpdateStmt": ("UPDATE", _modify),
    "DeleteStmt": ("DELETE", _modify),
    "SelectStmt": ("SELECT", _select),
    "ConstraintsSetStmt": ("SET CONSTRAINTS", _constraints_set),
    "VariableSetStmt": ("SET", _nothing),
    "TransactionStmt": ("transaction control", _nothing),
    "LockStmt": ("LOCK TABLE", _lock),
}
