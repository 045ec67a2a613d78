"""Prepared statements of the watcher's own session, planned once.

The watcher's queries on ``pg_locks`` and ``pg_stat_activity`` take a millisecond or so to
plan, each time, while the app waits behind the migration. Prepared in the watcher's
session with ``plan_cache_mode = force_generic_plan`` (PostgreSQL docs, ``PREPARE``), they
are planned once, when the watcher connects, and only executed afterwards. ``EXECUTE``
takes its parameters as SQL values, which works the same with psycopg 2 and 3 (client-side
parameters).

The session also runs without JIT compilation (``jit = off``; PostgreSQL docs, "JIT
Accessibility"): the planner's estimates for ``pg_locks`` and ``pg_stat_get_activity`` (1000
and 100 rows, whatever the server holds) put these generic plans above ``jit_above_cost``, and
on a server built with LLVM (Debian's and most distributions' packages) each execution then
compiled its plan, a second or more while the app waits. Nothing the watcher reads is big
enough to gain from JIT.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import DatabaseError

from pgmigrate.errors import sqlstate

#: SQLSTATE of ``invalid_sql_statement_name``: no such prepared statement in the session.
NOT_PREPARED = "26000"

#: Set on the watcher's session: prepared statements keep one plan, made when prepared, and
#: nothing is JIT-compiled.
SESSION_SETTINGS = "SET plan_cache_mode = force_generic_plan; SET jit = off"


class Prepared:
    """One statement, ``pgmigrate_<name>``: ``sql`` with ``%s`` parameters of PostgreSQL
    ``types``."""

    def __init__(self, name: str, sql: str, types: tuple[str, ...]) -> None:
        self.sql = sql
        self.types = types
        self.name = f"pgmigrate_{name}"

    def prepare_sql(self, percent: str = "%") -> str:
        """Its ``PREPARE`` statement, with a literal ``%`` written ``percent`` (``%%`` in a
        query that parameters are merged into)."""
        numbered = iter(range(1, len(self.types) + 1))
        parts = self.sql.replace("%%", "\0").split("%s")
        body = parts[0] + "".join(f"${next(numbered)}" + part for part in parts[1:])
        return f"PREPARE {self.name}({', '.join(self.types)}) AS {body.replace(chr(0), percent)}"

    def prepare(self, cursor: Any) -> None:
        """``PREPARE`` it in the session of ``cursor`` (once per session)."""
        cursor.execute(self.prepare_sql())

    def call(self) -> str:
        """Its ``EXECUTE``, with ``%s`` for each parameter."""
        placeholders = ", ".join(f"%s::{kind}" for kind in self.types)
        return f"EXECUTE {self.name}({placeholders})"

    def execute(self, cursor: Any, params: list[Any]) -> None:
        """Run it with ``params``; prepared first if the session lacks it (a new session:
        the watcher prepares its statements when it connects). ``cursor`` is in autocommit,
        where a failed ``EXECUTE`` leaves nothing to roll back."""
        self._run(cursor, self.call(), params)

    def bind(self, cursor: Any, params: list[Any]) -> str:
        """Its ``EXECUTE`` with ``params`` merged in by the driver (``mogrify`` of psycopg 3's
        client-side cursor and of psycopg 2's), for ``execute_bound``: the same parameters
        at every run need not be merged again (a fifth of a millisecond of Python for a
        text array)."""
        text = cursor.mogrify(self.call(), params)
        return text.decode() if isinstance(text, bytes) else text

    def execute_bound(self, cursor: Any, bound: str) -> None:
        """Run ``bound`` (``bind``'s statement), as ``execute`` does."""
        self._run(cursor, bound, None)

    def _run(self, cursor: Any, statement: str, params: list[Any] | None) -> None:
        try:
            cursor.execute(statement, params)
        except DatabaseError as exc:
            if sqlstate(exc) != NOT_PREPARED:
                raise
            self.prepare(cursor)
            cursor.execute(statement, params)


def prepare_all(
    cursor: Any, statements: Iterable[Prepared], runs: Iterable[tuple[Prepared, list[Any]]]
) -> None:
    """Set ``SESSION_SETTINGS``, ``PREPARE`` each of ``statements`` and execute each of ``runs``
    (a statement and its parameters), in one round trip: several statements in one query
    string, with the parameters merged in on the client (Django's cursors for psycopg 3 and
    psycopg 2 both do). Their results are not read."""
    runs = list(runs)
    sql = ";\n".join(
        [
            SESSION_SETTINGS,
            *(statement.prepare_sql(percent="%%") for statement in statements),
            *(statement.call() for statement, _ in runs),
        ]
    )
    cursor.execute(sql, [param for _, params in runs for param in params])
