"""Names of deferred SQL run before the end of its migration.

Django runs a migration's deferred SQL (foreign keys, indexes) when its schema editor exits,
after every operation; later ``RenameField``, ``AlterField``, ``RenameModel`` and
``AlterModelTable`` update the tables and columns it refers to, and the constraint and index
names derived from them (``django/db/backends/ddl_references.py``, ``Statement.
rename_table_references`` / ``rename_column_references``). pgmigrate runs deferred SQL with
the operation's transaction; when a later renaming operation cannot share that transaction,
the statement keeps today's tables and columns but takes the name it would have at the end.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from django.db.backends.ddl_references import Reference, Statement


def name_as_renamed(statement: Any, renames: Sequence[tuple[str, ...]]) -> None:
    """Give ``statement`` (a deferred ``Statement``) the constraint or index name it would
    have after ``renames`` (``("table", old, new)`` or ``("column", table, old, new)``)."""
    if not isinstance(statement, Statement):
        return
    name = statement.parts.get("name")
    if not isinstance(name, Reference):
        return  # a name given by the user does not change
    future = _copy(name)
    for kind, *args in renames:
        if kind == "table":
            future.rename_table_references(*args)
        else:
            future.rename_column_references(*args)
    if str(future) != str(name):
        statement.parts["name"] = str(future)


def _copy(reference: Reference) -> Any:
    """A copy of ``reference`` whose renames leave the original as it is (Django renames
    column lists in place; the name-making functions are shared, not copied)."""
    clone = copy.copy(reference)
    for key, value in vars(reference).items():
        if isinstance(value, list):
            setattr(clone, key, list(value))
        elif isinstance(value, Reference):
            setattr(clone, key, _copy(value))
    return clone
