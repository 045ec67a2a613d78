"""How big the relations a statement touches are now, and how long it is likely to hold the
app's queries back.

Sizes come from the live catalog: ``pg_class.reltuples`` (the planner's row estimate, -1 for
a table never vacuumed or analyzed since PostgreSQL 14) and ``pg_relation_size`` /
``pg_total_relation_size`` (PostgreSQL docs, "Database Object Management Functions"). Those
two functions open the relation with an ACCESS SHARE lock, which waits behind an ACCESS
EXCLUSIVE lock held by another session: under a short ``lock_timeout`` the plan falls back
to ``pg_class.relpages`` (pages as of the last vacuum or analyze), which takes no lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.db import DatabaseError, connections

from pgmigrate.db import atomic
from pgmigrate.errors import sqlstate
from pgmigrate.lockplan.model import Change, LockMode, RelationKind, StatementEffect

#: Rough speeds (bytes per second) of the work that grows with a table's size, on a server
#: that also serves the app: rewriting a table with its indexes, reading it in full (a
#: validation, a NOT NULL check) and building an index on it. Estimates, not measurements of
#: this server: they tell seconds from hours, nothing finer.
REWRITE_BYTES_PER_SECOND = 50 * 1024**2
SCAN_BYTES_PER_SECOND = 200 * 1024**2
INDEX_BYTES_PER_SECOND = 50 * 1024**2
#: ``lock_timeout`` of the size lookups (the sizes of a table another session holds in
#: ACCESS EXCLUSIVE mode come from ``relpages`` instead of waiting for it).
SIZE_LOCK_TIMEOUT = "100ms"
#: SQLSTATE ``lock_not_available``.
LOCK_NOT_AVAILABLE = "55P03"

_SIZES = """
SELECT c.oid::int8, n.nspname, c.relname, c.reltuples::float8,
       {table_bytes}, {total_bytes}
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.oid = ANY(%s::oid[])
"""
#: Exact sizes (they take ACCESS SHARE on each relation, under ``SIZE_LOCK_TIMEOUT``).
SIZES = _SIZES.format(
    table_bytes="pg_catalog.pg_relation_size(c.oid)",
    total_bytes="pg_catalog.pg_total_relation_size(c.oid)",
)
#: Sizes from ``relpages`` (no lock; as of the last vacuum or analyze; indexes left out).
SIZES_FROM_PAGES = _SIZES.format(
    table_bytes="c.relpages::int8 * current_setting('block_size')::int8",
    total_bytes="c.relpages::int8 * current_setting('block_size')::int8",
)


@dataclass(frozen=True)
class RelationSize:
    """A relation's size now.

    ``rows`` is the planner's estimate (None: never analyzed); ``table_bytes`` the main fork
    (``pg_relation_size``), ``total_bytes`` with its indexes and TOAST
    (``pg_total_relation_size``). ``new``: created earlier in the plan (empty). ``exact``:
    False when the bytes come from ``relpages`` (the relation was locked).
    """

    relation: str
    rows: int | None
    table_bytes: int
    total_bytes: int
    new: bool = False
    exact: bool = True


def new_relation(relation: str) -> RelationSize:
    """The size of a relation created earlier in the plan: empty."""
    return RelationSize(relation, rows=0, table_bytes=0, total_bytes=0, new=True)


def read(using: str, oids: Iterable[int]) -> dict[int, RelationSize]:
    """The sizes of the relations ``oids`` on database ``using``, by oid. Reads only the
    catalog; a relation locked by another session is measured by ``relpages``."""
    wanted = sorted(set(oids))
    if not wanted:
        return {}
    try:
        with atomic(using), connections[using].cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{SIZE_LOCK_TIMEOUT}'")
            cursor.execute(SIZES, [wanted])
            rows, exact = cursor.fetchall(), True
    except DatabaseError as exc:
        if sqlstate(exc) != LOCK_NOT_AVAILABLE:
            raise
        with connections[using].cursor() as cursor:
            cursor.execute(SIZES_FROM_PAGES, [wanted])
            rows, exact = cursor.fetchall(), False
    return {
        oid: RelationSize(
            f"{schema}.{name}",
            rows=int(tuples) if tuples >= 0 else None,
            table_bytes=table_bytes,
            total_bytes=total_bytes,
            exact=exact,
        )
        for oid, schema, name, tuples, table_bytes, total_bytes in rows
    }


@dataclass(frozen=True)
class Estimate:
    """How long a statement is likely to hold the app's queries back, and which ones.

    ``holds_back``: ``"reads and writes"``, ``"writes"`` or ``"nothing"`` (from the modes'
    conflicts with ACCESS SHARE and ROW EXCLUSIVE). ``seconds``: the rough time its locks are
    held (0 for catalog-only changes; None: unknown). ``snapshots``: it also waits until
    every transaction older than it ends.
    """

    holds_back: str
    seconds: float | None
    snapshots: bool = False
    #: What the time is proportional to, in words ("rewrites 1.2 GB", "instant").
    basis: str = ""
    #: How long its transaction goes on after it (s): the later statements of operations
    #: sharing it, whose work the locks are held through (0: none; None: unknown).
    after: float | None = 0.0

    def describe(self) -> str:
        """The estimate in words, e.g. ``holds back reads and writes for ~2.1 s (rewrites
        100 MB)``."""
        wait = "; first waits until older transactions end" if self.snapshots else ""
        basis = f" ({self.basis})" if self.basis else ""
        if self.holds_back == "nothing":
            return (
                f"holds back no app query: runs {_duration(self.seconds).removeprefix('for ')}"
                f"{basis}{wait}"
            )
        if self.after == 0:
            return f"holds back {self.holds_back} {_duration(self.seconds)}{basis}{wait}"
        # Its locks stay until the shared transaction commits, after the later statements.
        total = None if self.seconds is None or self.after is None else self.seconds + self.after
        own = _duration(self.seconds).removeprefix("only ").removeprefix("for ")
        later = _duration(self.after).removeprefix("only ").removeprefix("for ")
        return (
            f"holds back {self.holds_back} {_duration(total)}: {own} for its own work{basis}"
            f"{wait}, then {later} more until its transaction commits"
        )


def _duration(seconds: float | None) -> str:
    """``for ~2.1 s``, ``only for an instant``, ``for an unknown time``."""
    if seconds is None:
        return "for an unknown time"
    if seconds == 0:
        return "only for an instant"
    return f"for {_seconds(seconds)}" if seconds < 0.01 else f"for ~{_seconds(seconds)}"


def holds_back(modes: Iterable[LockMode]) -> str:
    """Which of the app's queries the ``modes`` make wait."""
    found = list(modes)
    if any(mode.blocks_reads for mode in found):
        return "reads and writes"
    if any(mode.blocks_writes for mode in found):
        return "writes"
    return "nothing"


def estimate(effect: StatementEffect | None, sizes: Mapping[str, RelationSize]) -> Estimate:
    """The ``Estimate`` of ``effect`` (None: Python code or an unknown statement), given
    the ``sizes`` of the relations it touches (by name; a missing one is of unknown size)."""
    if effect is None or not effect.known:
        return Estimate("unknown", None)
    seconds = 0.0
    parts: list[str] = []
    unknown = False
    index = builds_index(effect)
    scan_verb, scan_speed = (
        ("builds an index on", INDEX_BYTES_PER_SECOND)
        if index
        else ("scans", SCAN_BYTES_PER_SECOND)
    )
    rewritten = tables(effect, effect.rewrites)
    work = [(name, "rewrites", REWRITE_BYTES_PER_SECOND, True) for name in rewritten]
    work += [
        (name, scan_verb, scan_speed, False)
        for name in scanned(effect, sizes)
        if name not in rewritten  # a rewrite reads it anyway
    ]
    for name, verb, speed, total in work:
        size = sizes.get(name)
        if size is None:
            unknown = True
            parts.append(f"{verb} {name}, size unknown")
            continue
        size_bytes = size.total_bytes if total else size.table_bytes
        seconds += size_bytes / speed
        parts.append(f"{verb} {name}, {describe_bytes(size_bytes)}")
    if parts:
        basis = "; ".join(parts)
    elif effect.scans:
        basis = "no row to check: the referencing table is new or empty"
    else:
        basis = "catalog only"
    return Estimate(
        holds_back(lock.mode for lock in effect.locks),
        None if unknown else seconds,
        snapshots=effect.waits_for_snapshots,
        basis=basis,
    )


#: Kinds of relation that are indexes: their work is counted with their table's.
INDEX_KINDS = frozenset({RelationKind.INDEX, RelationKind.PARTITIONED_INDEX})


#: Kinds of relation whose rewrite or scan is no work of its own: an index's goes with its
#: table's (``pg_total_relation_size``); a sequence is one page.
NOT_TABLES = INDEX_KINDS | {RelationKind.SEQUENCE}


def tables(effect: StatementEffect, names: Iterable[str]) -> list[str]:
    """``names`` without the indexes and sequences among them (by the kind of the
    statement's locks; see ``NOT_TABLES``)."""
    skipped = {lock.relation for lock in effect.locks if lock.kind in NOT_TABLES}
    return [name for name in names if name not in skipped]


def scanned(effect: StatementEffect, sizes: Mapping[str, RelationSize]) -> list[str]:
    """The tables ``effect`` reads in full, as far as time goes: none for a foreign key (and
    nothing else) whose referencing table is new or empty (PostgreSQL checks the constraint
    with a join of the referencing table's rows to the referenced table, which has nothing
    to do then)."""
    found = tables(effect, effect.scans)
    if effect.changes == {Change.ADD_FOREIGN_KEY} and any(
        (size := sizes.get(name)) is not None and (size.new or size.table_bytes == 0)
        for name in found
    ):
        return []
    return found


def builds_index(effect: StatementEffect) -> bool:
    """Whether ``effect`` builds an index (``CREATE INDEX``, ``REINDEX``)."""
    return bool(effect.changes & {Change.CREATE_INDEX, Change.REINDEX})


def _seconds(value: float) -> str:
    if value < 0.01:
        return "under 0.01 s"
    if value < 1:
        return f"{value:.2f} s"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def describe_bytes(value: int) -> str:
    """``value`` bytes for people: ``8 kB``, ``1.2 GB`` (powers of 1024, as
    ``pg_size_pretty``)."""
    size = float(value)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit in ("bytes", "kB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} bytes"  # pragma: no cover
