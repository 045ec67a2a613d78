"""What a database holds after a step, and how two of those differ.

A snapshot is the schema (``pg_dump --schema-only``, normalised into statements), the rows of
``django_migrations`` (app, name), a digest of each table's rows, and what pgmigrate's own
apps left (their tables and ``django_migrations`` rows: reported, never compared).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field

from psycopg import sql

from realmig.apps import PGMIGRATE_APPS, PGMIGRATE_TABLE_PREFIXES
from realmig.server import Server

#: pg_dump lines that say nothing about the schema: comments, session settings, and the
#: random key of ``\restrict``/``\unrestrict`` (pg_dump 18).
_NOISE = ("--", "SET ", "SELECT pg_catalog.set_config(", "\\restrict ", "\\unrestrict ")
_DOLLAR_QUOTE = re.compile(r"\$[A-Za-z_0-9]*\$")
#: Column types left out of the data comparison: what a migration stores there depends on
#: when it ran (``timezone.now()``) or is random (``uuid.uuid4()``, e.g. wagtail's
#: ``translation_key``).
_VARYING_TYPES = (
    "timestamp with time zone",
    "timestamp without time zone",
    "date",
    "time without time zone",
    "uuid",
)
#: Rows of pgmigrate's apps' models that post_migrate adds in the pgmigrate modes only.
_OWN_ROWS = {
    "django_content_type": sql.SQL("app_label <> ALL(%(apps)s)"),
    "auth_permission": sql.SQL(
        "content_type_id NOT IN (SELECT id FROM django_content_type"
        " WHERE app_label = ANY(%(apps)s))"
    ),
}


#: Tables whose ids depend on how many rows were ever added to them: in the pgmigrate modes,
#: post_migrate adds rows for the models of pgmigrate's apps, so later rows get other ids.
#: Their ids, and columns that refer to them, are compared as natural keys instead.
_NATURAL_KEYS = {
    "django_content_type": sql.SQL(
        "(SELECT app_label || '.' || model FROM django_content_type WHERE id = {})"
    ),
    "auth_permission": sql.SQL(
        "(SELECT c.app_label || '.' || p.codename FROM auth_permission p"
        " JOIN django_content_type c ON c.id = p.content_type_id WHERE p.id = {})"
    ),
}
#: Columns of a table that are foreign keys to one of the tables of ``_NATURAL_KEYS``.
_REFERENCES = (
    "SELECT a.attname, c.confrelid::regclass::text FROM pg_constraint c"
    " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
    " WHERE c.contype = 'f' AND cardinality(c.conkey) = 1"
    " AND c.conrelid = (SELECT oid FROM pg_class WHERE relname = %s"
    " AND relnamespace = 'public'::regnamespace) AND c.confrelid::regclass::text = ANY(%s)"
)


@dataclass
class Snapshot:
    #: Normalised schema statements, in pg_dump's order.
    statements: list[str]
    #: "app.name" of django_migrations, sorted (duplicates kept), without pgmigrate's apps.
    migrations: list[str]
    #: table -> its rows as text, sorted (columns of ``_VARYING_TYPES`` left out).
    data: dict[str, list[str]]
    #: pgmigrate's own tables and django_migrations rows (not compared).
    own: list[str] = field(default_factory=list)


@dataclass
class Difference:
    kind: str  # "schema", "schema order", "django_migrations", "data"
    summary: str
    diff: str


def statements(dump: str) -> list[str]:
    """The statements of a ``pg_dump`` script, one string each, without noise lines."""
    found: list[str] = []
    current: list[str] = []
    quoted = False
    for line in dump.splitlines():
        if not current and (not line.strip() or line.startswith(_NOISE)):
            continue
        current.append(line)
        if len(_DOLLAR_QUOTE.findall(line)) % 2:
            quoted = not quoted  # a function body opens or closes on this line
        if not quoted and line.rstrip().endswith(";"):
            found.append("\n".join(current))
            current = []
    if current:
        found.append("\n".join(current))
    return found


def capture(server: Server, database: str) -> Snapshot:
    like = [prefix.replace("_", "\\_") + "%" for prefix in PGMIGRATE_TABLE_PREFIXES]
    dump = server.dump_schema(database, [f"{prefix}*" for prefix in PGMIGRATE_TABLE_PREFIXES])
    with server.connect(database) as conn:
        own = [
            f"table {name}"
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename LIKE ANY(%s) ORDER BY 1",
                [like],
            )
        ]
        if "table pgmigrate_progress" in own:  # rows left: a migration is half applied
            own += [
                f"pgmigrate_progress row {app}.{name}: {done} of {total} operations applied, "
                f"{direction}"
                for app, name, done, total, direction in conn.execute(
                    "SELECT app, name, done, total, direction FROM pgmigrate_progress"
                    " ORDER BY app, name"
                )
            ]
        rows = conn.execute("SELECT app, name FROM django_migrations").fetchall()
        migrations = sorted(f"{app}.{name}" for app, name in rows if app not in PGMIGRATE_APPS)
        own += sorted(f"migration {app}.{name}" for app, name in rows if app in PGMIGRATE_APPS)
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'django_migrations' AND NOT tablename LIKE ANY(%s)"
                " ORDER BY 1",
                [like],
            )
        ]
        data = {}
        for table in tables:
            columns = [
                name
                for (name,) in conn.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = 'public' AND table_name = %s"
                    " AND data_type <> ALL(%s) ORDER BY ordinal_position",
                    [table, list(_VARYING_TYPES)],
                )
            ]
            refers = dict(conn.execute(_REFERENCES, [table, list(_NATURAL_KEYS)]).fetchall())
            if table in _NATURAL_KEYS:
                refers["id"] = table
            values = [
                _NATURAL_KEYS[refers[column]].format(
                    sql.SQL("t.{}").format(sql.Identifier(column))
                )
                if column in refers
                else sql.SQL("t.{}").format(sql.Identifier(column))
                for column in columns
            ]
            row = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(values))
            where = _OWN_ROWS.get(table, sql.SQL("true"))
            query = sql.SQL("SELECT {} AS r FROM {} t WHERE {} ORDER BY 1").format(
                row, sql.Identifier(table), where
            )
            data[table] = [r for (r,) in conn.execute(query, {"apps": PGMIGRATE_APPS})]
    return Snapshot(statements(dump), migrations, data, own)


def _diff(reference: list[str], actual: list[str], label: str) -> str:
    lines = difflib.unified_diff(reference, actual, "plain Django", label, n=3, lineterm="")
    return "\n".join(lines)


def _lines(statements: list[str]) -> list[str]:
    return [line for statement in statements for line in statement.splitlines()]


def _rows(data: dict[str, list[str]], tables: list[str]) -> list[str]:
    return [f"{table}: {row}" for table in tables for row in data.get(table, ["(no table)"])]


def _common_order(statements: list[str], common: Counter[str]) -> list[str]:
    """``statements`` that are in ``common`` (as many times as there), in their order."""
    left = Counter(common)
    kept = []
    for statement in statements:
        if left[statement] > 0:
            left[statement] -= 1
            kept.append(statement)
    return kept


def compare(reference: Snapshot, actual: Snapshot, label: str) -> list[Difference]:
    """How ``actual`` (of mode ``label``) differs from ``reference`` (plain Django)."""
    found = []
    wanted, got = Counter(reference.statements), Counter(actual.statements)
    if wanted != got:
        missing, extra = wanted - got, got - wanted
        found.append(
            Difference(
                "schema",
                f"schema: {sum(missing.values())} statement(s) only in plain Django, "
                f"{sum(extra.values())} only in {label}",
                _diff(
                    _lines(sorted(reference.statements)), _lines(sorted(actual.statements)), label
                ),
            )
        )
    # Order apart from the statements that differ: pg_dump sorts by kind and name, then by
    # dependencies and OIDs, so a different order means objects made in another order.
    common = wanted & got
    in_order = (
        _common_order(reference.statements, common),
        _common_order(actual.statements, common),
    )
    if in_order[0] != in_order[1]:
        found.append(
            Difference(
                "schema order",
                "schema: statements present in both dumps come in another order",
                _diff(_lines(in_order[0]), _lines(in_order[1]), label),
            )
        )
    if reference.migrations != actual.migrations:
        rows, other = Counter(reference.migrations), Counter(actual.migrations)
        found.append(
            Difference(
                "django_migrations",
                f"django_migrations: {sum((rows - other).values())} row(s) only in plain "
                f"Django, {sum((other - rows).values())} only in {label}",
                _diff(reference.migrations, actual.migrations, label),
            )
        )
    if reference.data != actual.data:
        keys = sorted(reference.data.keys() | actual.data.keys())
        changed = [key for key in keys if reference.data.get(key) != actual.data.get(key)]
        found.append(
            Difference(
                "data",
                f"data: rows differ in {len(changed)} table(s): {', '.join(changed[:5])}"
                + (" ..." if len(changed) > 5 else ""),
                _diff(_rows(reference.data, changed), _rows(actual.data, changed), label),
            )
        )
    return found
