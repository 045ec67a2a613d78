"""The lock plan's rules: what makes a pending statement unsafe to run on a busy database.

Each rule has an ID in the style of Django's system checks (``pgmigrate.L001``) and a level:
``"error"`` (``--lock-plan --ci`` exits with status 1), ``"warning"`` (shown, never fails) or
``"off"``. ``PGMIGRATE_LOCK_PLAN_RULES`` changes a rule's level and size threshold;
``PGMIGRATE_LOCK_PLAN_ALLOW`` accepts a rule for one migration.

The size a rule compares with its threshold is the one the work grows with: the table with
its indexes and TOAST for a rewrite (``pg_total_relation_size``), the table alone for a scan
or an index build (``pg_relation_size``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pgmigrate.lockplan.model import Change, LockMode, StatementEffect
from pgmigrate.lockplan.sizes import (
    RelationSize,
    builds_index,
    describe_bytes,
    scanned,
    tables,
)

#: Levels a rule can have.
LEVELS = ("off", "warning", "error")


@dataclass(frozen=True)
class Rule:
    """A rule of the lock plan."""

    id: str
    #: Its default level (``LEVELS``).
    level: str
    #: What it stands for, in a few words.
    title: str
    #: Whether it compares a table's size with a threshold.
    sized: bool = True


L001 = Rule(
    "pgmigrate.L001",
    "error",
    "ACCESS EXCLUSIVE lock while rewriting a table over the threshold",
)
L002 = Rule(
    "pgmigrate.L002",
    "error",
    "lock that blocks writes while reading a table over the threshold in full",
)
L003 = Rule(
    "pgmigrate.L003",
    "error",
    "index built without CONCURRENTLY on a table over the threshold",
)
L004 = Rule(
    "pgmigrate.L004",
    "warning",
    "SQL whose locks the plan cannot tell (or that Django cannot write yet)",
    sized=False,
)
L005 = Rule(
    "pgmigrate.L005", "warning", "Python code (RunPython) whose locks are unknown", sized=False
)
#: Every rule, by ID.
RULES: dict[str, Rule] = {rule.id: rule for rule in (L001, L002, L003, L004, L005)}


@dataclass(frozen=True)
class Setting:
    """A rule's level and threshold (bytes) as configured."""

    level: str
    threshold: int


@dataclass(frozen=True)
class Verdict:
    """A rule a statement breaks.

    ``level`` is the configured one (``"warning"`` or ``"error"``); ``allowed`` when
    ``PGMIGRATE_LOCK_PLAN_ALLOW`` accepts it for the migration (it then never fails).
    ``safer`` says how to write it instead, when there is a known way.
    """

    rule: str
    level: str
    message: str
    safer: str | None = None
    allowed: bool = False

    @property
    def fails(self) -> bool:
        """Whether it makes ``--ci`` fail."""
        return self.level == "error" and not self.allowed


@dataclass(frozen=True)
class Override:
    """What ``PGMIGRATE_LOCK_PLAN_RULES`` says of one rule (None: the default)."""

    level: str | None = None
    threshold: int | None = None


def resolve(overrides: Mapping[str, Override], threshold: int) -> dict[str, Setting]:
    """Each rule's ``Setting``: its default level and ``threshold`` (bytes,
    ``PGMIGRATE_LOCK_PLAN_THRESHOLD``), with the ``overrides`` of
    ``PGMIGRATE_LOCK_PLAN_RULES`` on top."""
    settings: dict[str, Setting] = {}
    for rule in RULES.values():
        override = overrides.get(rule.id, Override())
        settings[rule.id] = Setting(
            override.level or rule.level,
            threshold if override.threshold is None else override.threshold,
        )
    return settings


#: The safer ways, by what the statement changes (``model.Change``) or does.
_KEY_FIRST = (
    "build its unique index first with CREATE UNIQUE INDEX CONCURRENTLY in a migration "
    "with atomic = False, then ADD CONSTRAINT ... UNIQUE (or PRIMARY KEY) USING INDEX: "
    "a catalog change only"
)
_CONCURRENT_INDEX = (
    "build it with django.contrib.postgres.operations.AddIndexConcurrently (or "
    "CREATE INDEX CONCURRENTLY in RunSQL) in a migration with atomic = False: it "
    "takes SHARE UPDATE EXCLUSIVE, which blocks neither reads nor writes"
)
_CONCURRENT_REINDEX = (
    "rebuild it with REINDEX ... CONCURRENTLY (PostgreSQL 12+) in RunSQL in a migration "
    "with atomic = False: it takes SHARE UPDATE EXCLUSIVE, which blocks neither reads nor "
    "writes"
)
_NOT_VALID = (
    "add the constraint NOT VALID, then VALIDATE CONSTRAINT in a later migration "
    "(SHARE UPDATE EXCLUSIVE, reads and writes go on): "
    "django.contrib.postgres.operations.AddConstraintNotValid then ValidateConstraint "
    "(Django 4.0+) for check constraints, RunSQL for foreign keys"
)
_CHECK_FIRST = (
    "add CHECK (column IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT it in a later "
    "migration, then SET NOT NULL: PostgreSQL 12+ skips the scan when a valid check "
    "proves it"
)
_CONSTANT_DEFAULT = (
    "add the column without a default, or with a constant one (db_default, Django "
    "5.0+, or default=): PostgreSQL 11+ adds it without rewriting; fill the rows in "
    "batches in a separate migration, then set the volatile default for new rows"
)
_NEW_COLUMN = (
    "add a new column of the new type, fill it in batches, then switch to it in a "
    "separate migration, instead of rewriting the table under ACCESS EXCLUSIVE"
)
_QUIET_TIME = (
    "run the rewrite in a separate migration, at a quiet time, so that nothing else "
    "waits behind it"
)


def safer_way(effect: StatementEffect, rule: Rule) -> str | None:
    """How to write ``effect`` so that it does not break ``rule``, when there is a known way
    (None: a separate, quieter time is all there is), from what it changes
    (``StatementEffect.changes``)."""
    changes = effect.changes
    if rule is L003:
        return _CONCURRENT_REINDEX if Change.REINDEX in changes else _CONCURRENT_INDEX
    if rule is L002:
        if changes & {Change.ADD_PRIMARY_KEY, Change.ADD_UNIQUE}:
            # Neither can be NOT VALID ("ALTER TABLE": ADD table_constraint_using_index).
            return _KEY_FIRST
        if Change.ADD_EXCLUSION in changes:
            return None  # no NOT VALID, no USING INDEX: only a quieter time
        if changes & {Change.ADD_CHECK, Change.ADD_FOREIGN_KEY}:
            return _NOT_VALID
        if Change.SET_NOT_NULL in changes:
            return _CHECK_FIRST
        # ALTER COLUMN TYPE checking its CHECK constraints again, or building its indexes
        # again for a new collation: none of the above applies.
        return None
    if rule is L001:
        if Change.VOLATILE_DEFAULT in changes:
            return _CONSTANT_DEFAULT
        if Change.ALTER_COLUMN_TYPE in changes:
            return _NEW_COLUMN
        return _QUIET_TIME
    return None


def judge(
    effect: StatementEffect | None,
    sizes: Mapping[str, RelationSize],
    settings: Mapping[str, Setting],
    allowed: frozenset[str] = frozenset(),
) -> list[Verdict]:
    """The rules ``effect`` breaks (None: Python code) given the ``sizes`` of the relations
    it touches (by name), each rule's ``settings`` and the rule IDs ``allowed`` for its
    migration."""
    found: list[Verdict] = []

    def add(rule: Rule, message: str) -> None:
        setting = settings[rule.id]
        if setting.level == "off":
            return
        safer = safer_way(effect, rule) if effect is not None else None
        found.append(Verdict(rule.id, setting.level, message, safer, rule.id in allowed))

    if effect is None:
        add(L005, "RunPython: Python code, its locks are unknown")
        return found
    if not effect.known:
        add(L004, f"{effect.kind}: SQL whose locks are unknown")
        return found
    modes = {lock.relation: lock.mode for lock in effect.locks}
    strongest = effect.strongest
    rewritten = tables(effect, effect.rewrites)
    for name in rewritten:
        if strongest is LockMode.ACCESS_EXCLUSIVE:
            _over(add, L001, settings, sizes, name, total=True, doing="rewrites")
    for name in scanned(effect, sizes):
        mode = modes.get(name, strongest)
        if builds_index(effect) and not effect.waits_for_snapshots:
            _over(add, L003, settings, sizes, name, total=False, doing="builds an index on")
        elif mode is not None and mode.blocks_writes and name not in rewritten:
            _over(add, L002, settings, sizes, name, total=False, doing="reads in full")
    return found


def _over(
    add: Callable[[Rule, str], None],
    rule: Rule,
    settings: Mapping[str, Setting],
    sizes: Mapping[str, RelationSize],
    name: str,
    *,
    total: bool,
    doing: str,
) -> None:
    """Report ``rule`` when relation ``name`` is over the rule's threshold (a relation of
    unknown size counts as over it; one created earlier in the plan as empty)."""
    size = sizes.get(name)
    threshold = settings[rule.id].threshold
    if size is None:
        add(rule, f"{doing} {name} (size unknown) under {_lock_words(rule)}")
        return
    measured = size.total_bytes if total else size.table_bytes
    if measured <= threshold:
        return
    add(
        rule,
        f"{doing} {name} ({describe_bytes(measured)}, over {describe_bytes(threshold)}) "
        f"under {_lock_words(rule)}",
    )


def _lock_words(rule: Rule) -> str:
    return {
        L001.id: "ACCESS EXCLUSIVE (reads and writes wait)",
        L002.id: "a lock that makes writes wait",
        L003.id: "SHARE (writes wait)",
    }.get(rule.id, "its locks")
