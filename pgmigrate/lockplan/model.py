"""What a statement does to the relations it touches: the vocabulary of the lock plan.

Lock modes and their conflicts are PostgreSQL's, from "Explicit Locking: Table-Level Locks"
(table 13.2, "Conflicting Lock Modes") of the PostgreSQL docs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class LockMode(enum.IntEnum):
    """PostgreSQL's table-level lock modes, weakest first."""

    ACCESS_SHARE = 1
    ROW_SHARE = 2
    ROW_EXCLUSIVE = 3
    SHARE_UPDATE_EXCLUSIVE = 4
    SHARE = 5
    SHARE_ROW_EXCLUSIVE = 6
    EXCLUSIVE = 7
    ACCESS_EXCLUSIVE = 8

    @property
    def label(self) -> str:
        """The mode as the docs and ``LOCK TABLE`` spell it, e.g. ``ACCESS EXCLUSIVE``."""
        return self.name.replace("_", " ")

    @property
    def pg_locks_name(self) -> str:
        """The mode as ``pg_locks.mode`` shows it, e.g. ``AccessExclusiveLock``."""
        return "".join(part.capitalize() for part in self.name.split("_")) + "Lock"

    @classmethod
    def from_pg_locks(cls, name: str) -> LockMode:
        """The mode of a ``pg_locks.mode`` value. Raises ``ValueError`` for other lock kinds."""
        for mode in cls:
            if mode.pg_locks_name == name:
                return mode
        raise ValueError(f"not a table-level lock mode: {name!r}")

    def conflicts_with(self, other: LockMode) -> bool:
        """Whether a lock in this mode and one in ``other`` cannot be held at once."""
        return other in _CONFLICTS[self]

    @property
    def blocks_reads(self) -> bool:
        """Whether it makes plain ``SELECT`` (ACCESS SHARE) wait."""
        return self.conflicts_with(LockMode.ACCESS_SHARE)

    @property
    def blocks_writes(self) -> bool:
        """Whether it makes ``INSERT``/``UPDATE``/``DELETE`` (ROW EXCLUSIVE) wait."""
        return self.conflicts_with(LockMode.ROW_EXCLUSIVE)


_M = LockMode
_CONFLICTS: dict[LockMode, frozenset[LockMode]] = {
    _M.ACCESS_SHARE: frozenset({_M.ACCESS_EXCLUSIVE}),
    _M.ROW_SHARE: frozenset({_M.EXCLUSIVE, _M.ACCESS_EXCLUSIVE}),
    _M.ROW_EXCLUSIVE: frozenset(
        {_M.SHARE, _M.SHARE_ROW_EXCLUSIVE, _M.EXCLUSIVE, _M.ACCESS_EXCLUSIVE}
    ),
    _M.SHARE_UPDATE_EXCLUSIVE: frozenset(
        {
            _M.SHARE_UPDATE_EXCLUSIVE,
            _M.SHARE,
            _M.SHARE_ROW_EXCLUSIVE,
            _M.EXCLUSIVE,
            _M.ACCESS_EXCLUSIVE,
        }
    ),
    _M.SHARE: frozenset(
        {
            _M.ROW_EXCLUSIVE,
            _M.SHARE_UPDATE_EXCLUSIVE,
            _M.SHARE_ROW_EXCLUSIVE,
            _M.EXCLUSIVE,
            _M.ACCESS_EXCLUSIVE,
        }
    ),
    _M.SHARE_ROW_EXCLUSIVE: frozenset(
        {
            _M.ROW_EXCLUSIVE,
            _M.SHARE_UPDATE_EXCLUSIVE,
            _M.SHARE,
            _M.SHARE_ROW_EXCLUSIVE,
            _M.EXCLUSIVE,
            _M.ACCESS_EXCLUSIVE,
        }
    ),
    _M.EXCLUSIVE: frozenset(set(LockMode) - {_M.ACCESS_SHARE}),
    _M.ACCESS_EXCLUSIVE: frozenset(LockMode),
}


class RelationKind(enum.Enum):
    """``pg_class.relkind``, in words."""

    TABLE = "r"
    PARTITIONED_TABLE = "p"
    INDEX = "i"
    PARTITIONED_INDEX = "I"
    SEQUENCE = "S"
    VIEW = "v"
    MATERIALIZED_VIEW = "m"
    FOREIGN_TABLE = "f"
    TOAST = "t"
    COMPOSITE_TYPE = "c"


class Change(enum.Enum):
    """What a statement does to a table's definition, in PostgreSQL's terms, where the way to
    do it without holding the app back depends on it (``rules.safer_way``). A statement may
    make several (``ALTER TABLE`` with many subcommands)."""

    #: ``ADD PRIMARY KEY``, inline (``ADD COLUMN ... PRIMARY KEY``) or not: builds its index.
    ADD_PRIMARY_KEY = "add primary key"
    #: ``ADD UNIQUE``, inline or not: builds its index.
    ADD_UNIQUE = "add unique constraint"
    #: ``ADD EXCLUDE``: builds its index.
    ADD_EXCLUSION = "add exclusion constraint"
    #: ``ADD CHECK``, inline or not (``NOT VALID`` included).
    ADD_CHECK = "add check constraint"
    #: ``ADD FOREIGN KEY`` (``NOT VALID`` included), or ``REFERENCES`` on a new column.
    ADD_FOREIGN_KEY = "add foreign key"
    #: ``ALTER COLUMN SET NOT NULL``.
    SET_NOT_NULL = "set not null"
    #: ``ADD COLUMN`` whose default calls a volatile function: a value per row.
    VOLATILE_DEFAULT = "add column with a volatile default"
    #: ``ALTER COLUMN TYPE``.
    ALTER_COLUMN_TYPE = "alter column type"
    #: ``CREATE INDEX`` (``UNIQUE``, ``CONCURRENTLY`` or not).
    CREATE_INDEX = "create index"
    #: ``REINDEX`` of an index or a table.
    REINDEX = "reindex"


@dataclass(frozen=True)
class RelationLock:
    """A lock a statement takes on a relation that exists before it runs.

    ``relation`` is schema-qualified and unquoted (``public.app_book``), as
    ``pg_class``/``pg_namespace`` name it.
    """

    relation: str
    mode: LockMode
    kind: RelationKind = RelationKind.TABLE


@dataclass(frozen=True)
class StatementEffect:
    """What one SQL statement does, as far as the app's queries are concerned.

    ``known`` is False for a statement the plan cannot classify: its locks are then unknown
    (never guessed), and the plan says so. Relations the statement creates are listed in
    ``creates`` and carry no lock: no other session can see them until it commits.
    """

    sql: str
    #: The statement in PostgreSQL's words, e.g. ``ALTER TABLE ADD COLUMN``, ``CREATE INDEX``.
    kind: str
    known: bool
    #: Locks on existing relations, the strongest mode per relation.
    locks: tuple[RelationLock, ...] = ()
    #: Relations the statement creates (schema-qualified when the name is known).
    creates: tuple[str, ...] = ()
    #: Tables (or indexes) whose every row is written again: time grows with their size.
    rewrites: tuple[str, ...] = ()
    #: Tables read in full while the locks are held (validating a constraint, building an
    #: index, checking NOT NULL): time grows with their size.
    scans: tuple[str, ...] = ()
    #: Waits for every transaction older than it (``CREATE INDEX CONCURRENTLY``...).
    waits_for_snapshots: bool = False
    #: Whether it can run inside a transaction block.
    transactional: bool = True
    #: Why, in a few words each: "the default gen_random_uuid() is volatile", ...
    notes: tuple[str, ...] = field(default=())
    #: What it changes where the safer way depends on it (empty when unknown).
    changes: frozenset[Change] = frozenset()
    #: What it was judged on as the catalog shows it now, which an earlier statement of the
    #: plan may have changed: relations (``schema.name``, e.g. taken as absent by ``IF
    #: EXISTS``) and what it took of columns (``the type of schema.table.column``...).
    assumes: tuple[str, ...] = ()
    #: What it changes of columns, in the words of ``assumes`` (added, dropped or renamed:
    #: all of it; a new type; NOT NULL set or dropped): later statements cannot judge
    #: that from the catalog.
    alters: tuple[str, ...] = ()

    @property
    def strongest(self) -> LockMode | None:
        """The strongest mode it takes on any existing relation (None: none, or unknown)."""
        return max((lock.mode for lock in self.locks), default=None)
