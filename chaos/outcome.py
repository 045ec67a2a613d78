"""What a ``migrate`` run left in a database, and how two such outcomes differ.

An outcome is the schema (``pg_dump --schema-only``, without ``pgmigrate_progress``), the
rows of ``django_migrations`` (app and name, duplicates kept), the rows of
``pgmigrate_progress`` (none when a run finished), invalid indexes (an interrupted
``CREATE INDEX CONCURRENTLY`` leaves one), and a digest of every row of every table of the
chaos apps. Sequence positions are not compared: a rolled-back insert moves them too.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from chaos.server import Server

#: The chaos project's apps; their tables' names start with "<label>_".
APPS = ("shop", "crm", "audit")
PROGRESS_TABLE = "pgmigrate_progress"

#: pg_dump lines that differ between two dumps of the same schema: the random key of
#: ``\restrict``/``\unrestrict`` (pg_dump 18+).
_VARYING = ("\\restrict ", "\\unrestrict ")


@dataclass
class Outcome:
    schema: list[str]
    migrations: list[str]
    progress: list[str]
    invalid_indexes: list[str]
    #: table -> "<rows> rows, md5 <digest>"
    data: dict[str, str]


@dataclass
class Difference:
    """One way an outcome differs from the reference: a one-line summary, and details."""

    what: str
    summary: str
    detail: str


def chaos_tables(conn: psycopg.Connection) -> list[str]:
    """The tables of the chaos apps in the database of ``conn``, by name."""
    return [
        name
        for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND split_part(tablename, '_', 1) = ANY(%s) ORDER BY 1",
            [list(APPS)],
        )
    ]


def capture(server: Server, database: str) -> Outcome:
    dump = server.dump_schema(database, exclude=PROGRESS_TABLE)
    schema = [line for line in dump.splitlines() if not line.startswith(_VARYING)]
    with server.connect(database) as conn:
        migrations = [
            f"{app}.{name}"
            for app, name in conn.execute(
                "SELECT app, name FROM django_migrations ORDER BY app, name"
            )
        ]
        progress: list[str] = []
        if conn.execute("SELECT to_regclass(%s)", [PROGRESS_TABLE]).fetchone() != (None,):
            progress = [
                " ".join(map(str, row))
                for row in conn.execute(
                    sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(
                        sql.Identifier(PROGRESS_TABLE)
                    )
                )
            ]
        invalid = [
            name
            for (name,) in conn.execute(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid ORDER BY 1"
            )
        ]
        data = {}
        for table in chaos_tables(conn):
            rows, digest = conn.execute(
                sql.SQL(
                    "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {} t"
                ).format(sql.Identifier(table))
            ).fetchone() or (0, None)
            data[table] = f"{rows} rows, md5 {digest}"
    return Outcome(schema, migrations, progress, invalid, data)


def _objects(schema: list[str]) -> dict[str, str]:
    """The dump's objects by their header (``-- Name: x; Type: TABLE; ...``): "TABLE x"."""
    objects: dict[str, str] = {}
    key = "(preamble)"
    for line in schema:
        if line.startswith("-- Name: "):
            name, kind = (part.split(": ", 1)[1] for part in line[3:].split("; ")[:2])
            key = f"{kind} {name}"
        elif line.startswith("-- PostgreSQL database dump complete"):
            key = "(end)"
        if line.strip() not in ("", "--"):  # separators: which object they follow varies
            objects[key] = objects.get(key, "") + line + "\n"
    return objects


def _listed(label: str, names: list[str], limit: int = 3) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return f"{label} {', '.join(names[:limit])}{more}" if names else ""


def _schema_summary(reference: list[str], actual: list[str]) -> str:
    """E.g. "schema differs: missing INDEX x; changed TABLE y"."""
    wanted, got = _objects(reference), _objects(actual)

    def tables_first(keys: Iterable[str]) -> list[str]:
        return sorted(keys, key=lambda key: (not key.startswith("TABLE "), key))

    parts = [
        _listed("missing", tables_first(wanted.keys() - got.keys())),
        _listed("extra", tables_first(got.keys() - wanted.keys())),
        _listed(
            "changed", tables_first(k for k in wanted.keys() & got.keys() if wanted[k] != got[k])
        ),
    ]
    return f"schema differs: {'; '.join(filter(None, parts)) or 'object order'}"


def differences(reference: Outcome, actual: Outcome) -> list[Difference]:
    """How ``actual`` differs from ``reference`` (empty when they match)."""
    found = []
    if actual.schema != reference.schema:
        diff = difflib.unified_diff(
            reference.schema, actual.schema, "reference", "trial", n=2, lineterm=""
        )
        found.append(
            Difference("schema", _schema_summary(reference.schema, actual.schema), "\n".join(diff))
        )
    if actual.migrations != reference.migrations:
        wanted, got = Counter(reference.migrations), Counter(actual.migrations)
        missing, extra = sorted((wanted - got).elements()), sorted((got - wanted).elements())
        parts = [_listed("missing", missing), _listed("extra", extra)]
        detail = f"missing: {', '.join(missing) or '-'}\nextra: {', '.join(extra) or '-'}"
        found.append(
            Difference(
                "django_migrations", f"django_migrations: {'; '.join(filter(None, parts))}", detail
            )
        )
    if actual.progress:
        text = "; ".join(actual.progress)
        found.append(
            Difference("pgmigrate_progress", f"pgmigrate_progress not empty: {text}", text)
        )
    if actual.invalid_indexes != reference.invalid_indexes:
        text = ", ".join(actual.invalid_indexes) or "none"
        found.append(Difference("invalid indexes", f"invalid indexes: {text}", text))
    if actual.data != reference.data:
        lines = [
            f"{table}: reference {reference.data.get(table, 'absent')}, "
            f"trial {actual.data.get(table, 'absent')}"
            for table in sorted(reference.data.keys() | actual.data.keys())
            if reference.data.get(table) != actual.data.get(table)
        ]
        tables = [line.split(":")[0] for line in lines]
        found.append(Difference("data", _listed("data differs:", tables, 4), "\n".join(lines)))
    return found
