"""The lock plan for people (text) and for pipelines (JSON, ``SCHEMA_VERSION``)."""

from __future__ import annotations

import json
from typing import Any

from pgmigrate.lockplan import rules
from pgmigrate.lockplan.plan import LockPlan, PlannedStatement
from pgmigrate.lockplan.sizes import INDEX_KINDS, RelationSize, describe_bytes, tables
from pgmigrate.text import printable

#: The version of the JSON document's layout: it changes only when a field changes meaning
#: or goes away (new fields may come without it).
SCHEMA_VERSION = 1
#: SQL longer than this is cut short in the text output at verbosity 1.
SQL_CHARS = 100


def text(plan: LockPlan, *, verbosity: int = 1) -> str:
    """The plan as lines for people: by migration, then operation, then statement."""
    lines = [
        f"Lock plan of database {plan.database!r} (PostgreSQL {plan.server_version}): "
        f"{_count(len(plan.migrations), 'pending migration')}."
    ]
    for migration in plan.migrations:
        lines.append("")
        atomic = "" if migration.atomic else " (atomic = False)"
        lines.append(f"{printable(migration.label)}{atomic}")
        if migration.progress:
            lines.append(f"  {migration.progress}: those operations are not run again")
        for operation in migration.operations:
            lines.append(
                f"  {operation.number}. {printable(operation.description)}"
                f"  [{operation.transaction}]"
            )
            if operation.applied:
                lines.append("     already applied by an earlier run")
                continue
            if operation.committed:
                which = (
                    "statement 1"
                    if operation.committed == 1
                    else f"statements 1 to {operation.committed}"
                )
                lines.append(f"     {which} committed by an earlier run: not run again")
            if not operation.statements:
                lines.append("     no SQL (changes Django's state only)")
            for statement in operation.statements:
                lines.extend(_statement_lines(statement, verbosity))
    lines.append("")
    lines.extend(summary(plan))
    return "\n".join(lines) + "\n"


def _statement_lines(statement: PlannedStatement, verbosity: int) -> list[str]:
    sql = " ".join(statement.sql.split())
    if verbosity < 2 and len(sql) > SQL_CHARS:
        sql = sql[: SQL_CHARS - 3] + "..."
    deferred = "(deferred) " if statement.deferred else ""
    lines = [f"     {deferred}{printable(sql)}"]
    effect = statement.effect
    if effect is None:
        lines.append("       Python code: locks unknown (whatever its queries take)")
    elif not effect.known:
        why = effect.notes[0] if effect.notes else f"cannot classify {effect.kind}"
        lines.append(f"       locks unknown: {printable(why)}")
        if verbosity >= 2:
            lines.extend(f"       note: {printable(note)}" for note in effect.notes[1:])
    else:
        # An index's lock, rewrite or scan goes with its table's: shown with -v 2.
        shown = set(tables(effect, effect.rewrites + effect.scans)) | {
            lock.relation for lock in effect.locks if lock.kind not in INDEX_KINDS
        }
        if verbosity >= 2:
            shown |= {lock.relation for lock in effect.locks}
            shown |= {*effect.rewrites, *effect.scans}
        for lock in effect.locks:
            if lock.relation in shown:
                lines.append(
                    f"       {lock.mode.label} on {printable(lock.relation)}"
                    f"{_size(statement.sizes.get(lock.relation))}"
                )
        # Relation names come from the migrations and the catalog: any character.
        lines.extend(f"       creates {printable(name)}" for name in effect.creates)
        lines.extend(
            f"       rewrites {printable(name)}" for name in effect.rewrites if name in shown
        )
        lines.extend(
            f"       reads {printable(name)} in full" for name in effect.scans if name in shown
        )
        if effect.waits_for_snapshots:
            lines.append("       waits until every transaction older than it ends")
        if verbosity >= 2:
            lines.extend(f"       note: {printable(note)}" for note in effect.notes)
    if statement.estimate is not None and effect is not None and effect.known:
        lines.append(f"       {printable(statement.estimate.describe())}")
    for holder in statement.holders:
        lines.append(f"       in the way now: {printable(holder.describe())}")
    for verdict in statement.verdicts:
        lines.extend(_verdict_lines(verdict))
    return lines


def _verdict_lines(verdict: rules.Verdict) -> list[str]:
    level = "allowed" if verdict.allowed else verdict.level
    lines = [f"       {verdict.rule} ({level}): {printable(verdict.message)}"]
    if verdict.safer:
        lines.append(f"         safer: {verdict.safer}")
    return lines


def _size(size: RelationSize | None) -> str:
    if size is None:
        return ""
    if size.new:
        return " (created earlier in the plan: empty)"
    rows = "rows never counted" if size.rows is None else f"~{size.rows:,} rows"
    exact = "" if size.exact else ", from relpages"
    return f" ({rows}, {describe_bytes(size.total_bytes)}{exact})"


def summary(plan: LockPlan) -> list[str]:
    """One line per rule broken (``ID level app.migration #n: message``), then a total."""
    broken = plan.broken
    lines = [
        f"{verdict.rule} {'allowed' if verdict.allowed else verdict.level}: "
        f"{migration.label} operation {operation.number}: {printable(verdict.message)}"
        for migration, operation, verdict in broken
    ]
    errors = sum(verdict.fails for _, _, verdict in broken)
    lines.append(
        f"{_count(len(broken), 'rule')} broken, {_count(errors, 'error')}."
        if broken
        else "No rule broken."
    )
    return lines


def failures(plan: LockPlan) -> list[str]:
    """The one-line reasons ``--ci`` fails with: each error-level rule broken."""
    return [
        f"{verdict.rule}: {migration.label} operation {operation.number}: "
        f"{printable(verdict.message)}"
        for migration, operation, verdict in plan.broken
        if verdict.fails
    ]


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def document(plan: LockPlan) -> dict[str, Any]:
    """The plan as a JSON document (see the reference, "JSON output of --lock-plan")."""
    return {
        "version": SCHEMA_VERSION,
        "database": plan.database,
        "server_version": plan.server_version,
        "rules": {
            rule_id: {"level": setting.level, "threshold": setting.threshold}
            for rule_id, setting in plan.settings.items()
        },
        "migrations": [
            {
                "app_label": migration.app_label,
                "name": migration.name,
                "atomic": migration.atomic,
                "progress": migration.progress,
                "operations": [
                    {
                        "number": operation.number,
                        "description": operation.description,
                        "kind": operation.kind,
                        "transaction": operation.transaction,
                        "applied": operation.applied,
                        "committed": operation.committed,
                        "code": operation.code,
                        "statements": [_statement(s) for s in operation.statements],
                    }
                    for operation in migration.operations
                ],
            }
            for migration in plan.migrations
        ],
        "broken": [
            {
                "rule": verdict.rule,
                "level": verdict.level,
                "allowed": verdict.allowed,
                "migration": migration.label,
                "operation": operation.number,
                "message": verdict.message,
            }
            for migration, operation, verdict in plan.broken
        ],
        "failed": plan.failed,
    }


def _statement(statement: PlannedStatement) -> dict[str, Any]:
    effect = statement.effect
    estimate = statement.estimate
    return {
        "sql": statement.sql,
        "deferred": statement.deferred,
        "python": effect is None,
        "kind": effect.kind if effect is not None else "python",
        "known": effect is not None and effect.known,
        "locks": [
            {"relation": lock.relation, "mode": lock.mode.label, "kind": lock.kind.name.lower()}
            for lock in (effect.locks if effect is not None else ())
        ],
        "creates": list(effect.creates) if effect is not None else [],
        "rewrites": list(effect.rewrites) if effect is not None else [],
        "scans": list(effect.scans) if effect is not None else [],
        "waits_for_snapshots": effect is not None and effect.waits_for_snapshots,
        "transactional": effect is None or effect.transactional,
        "notes": list(effect.notes) if effect is not None else [],
        "sizes": {
            name: {
                "rows": size.rows,
                "table_bytes": size.table_bytes,
                "total_bytes": size.total_bytes,
                "new": size.new,
                "exact": size.exact,
            }
            for name, size in statement.sizes.items()
        },
        "estimate": None
        if estimate is None
        else {
            "holds_back": estimate.holds_back,
            "seconds": estimate.seconds,
            "waits_for_snapshots": estimate.snapshots,
            "basis": estimate.basis,
            "after_seconds": estimate.after,
        },
        "holders": [
            {
                "relation": holder.relation,
                "pid": holder.pid,
                "gid": holder.gid,
                "mode": holder.mode.label,
                "granted": holder.granted,
                "application_name": holder.application_name,
                "usename": holder.usename,
                "state": holder.state,
                "transaction_age": holder.transaction_age.total_seconds()
                if holder.transaction_age is not None
                else None,
                "would": holder.would,
                "then": holder.then,
                "reason": holder.reason,
            }
            for holder in statement.holders
        ],
        "verdicts": [
            {
                "rule": verdict.rule,
                "level": verdict.level,
                "allowed": verdict.allowed,
                "message": verdict.message,
                "safer": verdict.safer,
            }
            for verdict in statement.verdicts
        ],
    }


def as_json(plan: LockPlan) -> str:
    """``document(plan)`` as indented JSON."""
    return json.dumps(document(plan), indent=2, sort_keys=False)
