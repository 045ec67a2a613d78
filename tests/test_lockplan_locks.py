"""The lock classifier, verified: every kind of statement Django's PostgreSQL schema editor
emits runs on the real server in a transaction, and the locks its backend took
(``pg_locks``), the relations it wrote anew (``relfilenode``) and the tables it read in full
(``seq_scan``) must be what ``classify`` said just before it ran."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import django
import pglast
import pytest
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import IntegerRangeField, RangeOperators
from django.contrib.postgres.indexes import BrinIndex, GinIndex, GistIndex, HashIndex
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import connection, migrations, models
from django.db.migrations.state import ModelState, ProjectState
from django.db.models.functions import Lower

from pgmigrate.lockplan import rules
from pgmigrate.lockplan.catalog import Catalog
from pgmigrate.lockplan.locks import _classify, classify
from pgmigrate.lockplan.model import Change, LockMode, StatementEffect
from tests.helpers import Session, wait_until
from tests.lockplan_observe import (
    disagreements,
    locks_of,
    observe,
    observe_all,
    relations,
    rows,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:'index_together' is deprecated"),
]

APP = "lockplan"
AUTHOR, BOOK = f"public.{APP}_author", f"public.{APP}_book"
DJANGO = django.VERSION[:2]
#: Rows in each table, so that scans and rewrites have something to read and write.
ROWS = 30
#: Statements checked and statements agreeing, per test run (printed at the end with -s).
TALLY = {"checked": 0, "agreeing": 0, "unknown": 0}


def _check(condition: models.Q, name: str) -> models.CheckConstraint:
    """A CheckConstraint (``condition=`` since Django 5.1, ``check=`` before)."""
    keyword = "condition" if DJANGO >= (5, 1) else "check"
    return models.CheckConstraint(**{keyword: condition, "name": name})


def base_state() -> ProjectState:
    """Authors and their books: an ``AutoField`` (identity) key, a foreign key with its
    index, text columns of a few kinds."""
    state = ProjectState()
    state.add_model(
        ModelState(
            APP,
            "Author",
            [
                ("id", models.AutoField(primary_key=True)),
                ("name", models.CharField(max_length=20)),
                ("age", models.IntegerField(null=True)),
                ("bio", models.TextField(default="")),
            ],
        )
    )
    state.add_model(
        ModelState(
            APP,
            "Book",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("title", models.CharField(max_length=50)),
                ("pages", models.IntegerField(default=0)),
                ("code", models.CharField(max_length=10, null=True)),
                ("meta", models.JSONField(null=True)),
                ("author", models.ForeignKey(f"{APP}.Author", models.CASCADE, null=True)),
            ],
        )
    )
    return state


def apply(operations: list[Any], state: ProjectState, *, collect: bool) -> tuple:
    """Run ``operations`` forwards from ``state`` with Django's schema editor: for real, or
    only collecting their SQL (deferred SQL included, as ``sqlmigrate`` shows it)."""
    collected: list[str] = []
    for operation in operations:
        new_state = state.clone()
        operation.state_forwards(APP, new_state)
        with connection.schema_editor(collect_sql=collect, atomic=not collect) as editor:
            operation.database_forwards(APP, editor, state, new_state)
        if collect:
            collected.extend(editor.collected_sql)
        state = new_state
    return state, collected


def statements(sql: list[str]) -> list[str]:
    """Each statement of the collected SQL on its own (some entries hold two)."""
    return [text for entry in sql for text in pglast.split(entry)]


@dataclass
class Case:
    """Operations whose statements are checked, after ``before`` ran for real."""

    operations: list[Any]
    before: list[Any] = field(default_factory=list)
    #: Oldest Django version that has them.
    since: tuple[int, int] = (4, 2)
    #: Django versions that no longer have them.
    until: tuple[int, int] = (99, 0)
    #: Oldest server version (``server_version_num``) that has them.
    server: int = 0
    #: Statements (a part of their text) the classifier must call unknown, saying why.
    unknown: tuple[str, ...] = ()


def _field(name: str, model_field: models.Field, model: str = "book") -> Any:
    return migrations.AddField(model, name, model_field)


def _alter(name: str, model_field: models.Field, model: str = "book") -> Any:
    return migrations.AlterField(model, name, model_field)


def _index(index: models.Index) -> Any:
    return migrations.AddIndex("book", index)


def _constraint(constraint: Any) -> Any:
    return migrations.AddConstraint("book", constraint)


def _index_case(key: Any, *, kind: type[models.Index] = models.Index, **options: Any) -> Case:
    """AddIndex of an index on the field ``key`` (a name) or expression ``key``."""
    name = f"book_idx_{len(_NAMES)}"
    _NAMES.append(name)
    if isinstance(key, str):
        return Case([_index(kind(fields=[key], name=name, **options))])
    return Case([_index(kind(key, name=name, **options))])


def _unique_case(key: Any, *, server: int = 0, **options: Any) -> Case:
    """AddConstraint of a UniqueConstraint on the field ``key`` or expression ``key``."""
    name = f"book_uniq_{len(_NAMES)}"
    _NAMES.append(name)
    if isinstance(key, str):
        constraint = models.UniqueConstraint(fields=[key], name=name, **options)
    else:
        constraint = models.UniqueConstraint(key, name=name, **options)
    return Case([_constraint(constraint)], server=server)


_NAMES: list[str] = []


def _cases() -> dict[str, Case]:
    title_index = models.Index(fields=["title"], name="book_title_idx")
    unique_title = models.UniqueConstraint(fields=["title"], name="book_title_uniq")
    pages_check = _check(models.Q(pages__gte=0), "book_pages_gte_0")
    publisher = migrations.CreateModel(
        "Publisher",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=30, unique=True)),
            ("owner", models.ForeignKey(f"{APP}.Author", models.PROTECT)),
        ],
    )
    cases = {
        "create_model": Case([publisher]),
        "delete_model": Case([migrations.DeleteModel("Book")]),
        "delete_model_with_fk": Case([migrations.DeleteModel("Publisher")], [publisher]),
        "delete_referenced_model": Case([migrations.DeleteModel("Author")]),
        "rename_model": Case([migrations.RenameModel("Book", "Volume")]),
        "rename_referenced_model": Case([migrations.RenameModel("Author", "Writer")]),
        "alter_model_table": Case([migrations.AlterModelTable("book", f"{APP}_books")]),
        "add_field_null": Case([_field("subtitle", models.CharField(max_length=10, null=True))]),
        "add_field_default": Case([_field("rating", models.IntegerField(default=3))]),
        "add_field_text_default": Case([_field("lang", models.TextField(default="en"))]),
        "add_field_unique": Case(
            [_field("isbn", models.CharField(max_length=13, null=True, unique=True))]
        ),
        "add_field_indexed": Case([_field("year", models.IntegerField(null=True, db_index=True))]),
        "add_field_fk": Case(
            [_field("editor", models.ForeignKey(f"{APP}.Author", models.SET_NULL, null=True))]
        ),
        "add_field_o2o": Case(
            [_field("cover", models.OneToOneField(f"{APP}.Author", models.SET_NULL, null=True))]
        ),
        "add_field_m2m": Case([_field("readers", models.ManyToManyField(f"{APP}.Author"))]),
        "remove_field_m2m": Case(
            [migrations.RemoveField("book", "readers")],
            [_field("readers", models.ManyToManyField(f"{APP}.Author"))],
        ),
        "remove_field": Case([migrations.RemoveField("book", "code")]),
        "remove_field_fk": Case([migrations.RemoveField("book", "author")]),
        "remove_field_indexed": Case(
            [migrations.RemoveField("book", "year")],
            [_field("year", models.IntegerField(null=True, db_index=True))],
        ),
        "rename_field": Case([migrations.RenameField("book", "title", "name")]),
        "rename_field_fk": Case([migrations.RenameField("book", "author", "writer")]),
        "alter_field_int_to_bigint": Case([_alter("pages", models.BigIntegerField(default=0))]),
        "alter_field_varchar_longer": Case([_alter("title", models.CharField(max_length=100))]),
        "alter_field_varchar_shorter": Case([_alter("title", models.CharField(max_length=40))]),
        "alter_field_varchar_to_text": Case([_alter("title", models.TextField())]),
        "alter_field_text_to_varchar": Case(
            [migrations.AlterField("author", "bio", models.CharField(max_length=200, default=""))]
        ),
        "alter_field_null_to_not_null": Case(
            [_alter("code", models.CharField(max_length=10, default="x"))]
        ),
        "alter_field_not_null_to_null": Case(
            [_alter("title", models.CharField(max_length=50, null=True))]
        ),
        "alter_field_unique_on": Case(
            [_alter("title", models.CharField(max_length=50, unique=True))]
        ),
        "alter_field_unique_off": Case(
            [_alter("code", models.CharField(max_length=10, null=True))],
            [_alter("code", models.CharField(max_length=10, null=True, unique=True))],
        ),
        "alter_field_db_index_on": Case(
            [_alter("pages", models.IntegerField(default=0, db_index=True))]
        ),
        "alter_field_db_index_off": Case(
            [
                _alter(
                    "author",
                    models.ForeignKey(f"{APP}.Author", models.CASCADE, null=True, db_index=False),
                )
            ]
        ),
        "alter_field_fk_no_constraint": Case(
            [
                _alter(
                    "author",
                    models.ForeignKey(
                        f"{APP}.Author", models.CASCADE, null=True, db_constraint=False
                    ),
                )
            ]
        ),
        "alter_field_autofield_to_bigautofield": Case(
            [migrations.AlterField("author", "id", models.BigAutoField(primary_key=True))]
        ),
        "alter_field_collation": Case(
            [_alter("title", models.CharField(max_length=50, db_collation="C"))]
        ),
        "alter_unique_together": Case(
            [migrations.AlterUniqueTogether("book", {("title", "author")})]
        ),
        "add_index": Case([_index(title_index)]),
        "add_index_partial": _index_case("pages", condition=models.Q(pages__gt=0)),
        "add_index_expression": _index_case(Lower("title")),
        "add_index_opclass": _index_case("title", opclasses=["varchar_pattern_ops"]),
        "add_index_include": _index_case("title", include=["pages"]),
        "add_index_gin": _index_case("meta", kind=GinIndex),
        "add_index_brin": _index_case("pages", kind=BrinIndex),
        "add_index_hash": _index_case("title", kind=HashIndex),
        "remove_index": Case(
            [migrations.RemoveIndex("book", "book_title_idx")], [_index(title_index)]
        ),
        "rename_index": Case(
            [migrations.RenameIndex("book", new_name="book_title_new", old_name="book_title_idx")],
            [_index(title_index)],
        ),
        "add_check_constraint": Case([_constraint(pages_check)]),
        "remove_check_constraint": Case(
            [migrations.RemoveConstraint("book", "book_pages_gte_0")], [_constraint(pages_check)]
        ),
        "add_unique_constraint": Case([_constraint(unique_title)]),
        "remove_unique_constraint": Case(
            [migrations.RemoveConstraint("book", "book_title_uniq")], [_constraint(unique_title)]
        ),
        "add_unique_conditional": _unique_case("code", condition=models.Q(pages__gt=0)),
        "add_unique_deferrable": _unique_case("title", deferrable=models.Deferrable.DEFERRED),
        "add_unique_expression": _unique_case(Lower("title")),
        "add_unique_include": _unique_case("title", include=["pages"]),
        "alter_model_table_comment": Case(
            [migrations.AlterModelTableComment("book", "The books")]
        ),
        "add_field_comment": Case(
            [_field("note", models.TextField(null=True, db_comment="A note"))]
        ),
        "alter_field_comment": Case(
            [_alter("title", models.CharField(max_length=50, db_comment="The title"))]
        ),
    }
    cases |= {
        f"sql_{name}": Case([migrations.RunSQL(sql) for sql in statements])
        for name, statements in _SQL.items()
    }
    integer_key = migrations.CreateModel(
        "Edition",
        [("id", models.IntegerField(primary_key=True)), ("year", models.IntegerField())],
    )
    cases["alter_field_integer_to_autofield"] = Case(
        [migrations.AlterField("edition", "id", models.AutoField(primary_key=True))],
        [integer_key, migrations.RunSQL(f"INSERT INTO {APP}_edition VALUES (1, 2000), (2, 2001)")],
    )
    cases["sql_types"] = Case(
        [
            migrations.RunSQL(f"CREATE DOMAIN {APP}_positive AS integer CHECK (VALUE > 0)"),
            migrations.RunSQL(f"CREATE TYPE {APP}_mood AS ENUM ('ok', 'sad')"),
            migrations.RunSQL(f"ALTER TABLE {B} ADD COLUMN mood {APP}_mood DEFAULT 'ok'"),
            migrations.RunSQL(f"ALTER TABLE {B} ADD COLUMN stock {APP}_positive DEFAULT 1"),
        ],
        unknown=(f"{APP}_positive DEFAULT 1",),
    )
    # Django leaves the foreign keys to it in place and PostgreSQL drops and adds them
    # again, with or without a check of the rows: not modelled.
    cases["alter_field_autofield_to_integer"] = Case(
        [migrations.AlterField("author", "id", models.IntegerField(primary_key=True))],
        unknown=('ALTER COLUMN "id" TYPE integer',),
    )
    cases["sql_add_virtual_generated_column"] = Case(
        [
            migrations.RunSQL(
                f"ALTER TABLE {B} ADD COLUMN twice integer GENERATED ALWAYS AS (pages * 2) VIRTUAL"
            )
        ],
        server=180000,
    )
    span = _field("span", IntegerRangeField(null=True))
    cases["add_index_gist"] = Case(
        [_index(GistIndex(fields=["span"], name="book_span_gist"))], [span]
    )
    cases["add_exclusion_constraint"] = Case(
        [
            _constraint(
                ExclusionConstraint(
                    name="book_span_excl", expressions=[("span", RangeOperators.OVERLAPS)]
                )
            )
        ],
        [span],
    )
    cases["alter_field_fk_constraint_on"] = Case(
        [_alter("author", models.ForeignKey(f"{APP}.Author", models.CASCADE, null=True))],
        [
            _alter(
                "author",
                models.ForeignKey(f"{APP}.Author", models.CASCADE, null=True, db_constraint=False),
            )
        ],
    )
    if hasattr(migrations, "AlterIndexTogether"):
        cases["alter_index_together"] = Case(
            [migrations.AlterIndexTogether("book", {("title", "pages")})], until=(5, 1)
        )
    if DJANGO >= (5, 0):
        cases |= _django_5_cases()
    return cases


A, B = f"{APP}_author", f"{APP}_book"
#: Statements Django's schema editor does not write itself but migrations run (RunSQL), and
#: the steps of the usual zero-downtime recipes.
_SQL: dict[str, list[str]] = {
    "fk_not_valid_then_validate": [
        f"ALTER TABLE {B} ADD CONSTRAINT b_author FOREIGN KEY (author_id)"
        f" REFERENCES {A} (id) NOT VALID",
        f"ALTER TABLE {B} VALIDATE CONSTRAINT b_author",
    ],
    "check_not_valid_then_validate": [
        f"ALTER TABLE {B} ADD CONSTRAINT b_pages CHECK (pages >= 0) NOT VALID",
        f"ALTER TABLE {B} VALIDATE CONSTRAINT b_pages",
    ],
    "set_not_null_proven_by_check": [
        f"ALTER TABLE {A} ADD CONSTRAINT a_age_nn CHECK (age IS NOT NULL) NOT VALID",
        f"ALTER TABLE {A} VALIDATE CONSTRAINT a_age_nn",
        f"ALTER TABLE {A} ALTER COLUMN age SET NOT NULL",
    ],
    "set_not_null_scans": [f"ALTER TABLE {A} ALTER COLUMN age SET NOT NULL"],
    "unique_using_index": [
        f"CREATE UNIQUE INDEX a_name_u ON {A} (name)",
        f"ALTER TABLE {A} ADD CONSTRAINT a_name_u UNIQUE USING INDEX a_name_u",
    ],
    "primary_key_and_drop": [
        f"ALTER TABLE {A} DROP CONSTRAINT {A}_pkey CASCADE",
    ],
    "add_column_identity": [
        f"ALTER TABLE {B} ADD COLUMN number bigint GENERATED BY DEFAULT AS IDENTITY"
    ],
    "add_column_serial": [f"ALTER TABLE {B} ADD COLUMN number serial"],
    "add_column_check": [f"ALTER TABLE {B} ADD COLUMN stock integer DEFAULT 1 CHECK (stock > 0)"],
    "alter_type_using_expression": [
        f"ALTER TABLE {B} ALTER COLUMN pages TYPE bigint USING pages + 1"
    ],
    "numeric_precision": [
        f"ALTER TABLE {B} ADD COLUMN price numeric(6, 2)",
        f"ALTER TABLE {B} ALTER COLUMN price TYPE numeric(8, 2)",
        f"ALTER TABLE {B} ALTER COLUMN price TYPE numeric(8, 3)",
        f"ALTER TABLE {B} ALTER COLUMN price TYPE numeric",
    ],
    "char_and_timestamp_modifiers": [
        f"ALTER TABLE {B} ADD COLUMN flag char(2), ADD COLUMN seen timestamp(3)",
        f"ALTER TABLE {B} ALTER COLUMN flag TYPE char(4)",
        f"ALTER TABLE {B} ALTER COLUMN seen TYPE timestamp(6)",
        f"ALTER TABLE {B} ALTER COLUMN seen TYPE timestamp(2)",
        f"ALTER TABLE {B} ALTER COLUMN seen TYPE timestamp",
    ],
    "truncate": [f"TRUNCATE {B}"],
    "reindex_index": [f"REINDEX INDEX {B}_pkey"],
    "reindex_table": [f"REINDEX TABLE {B}"],
    "analyze": [f"ANALYZE {B}"],
    "sequences": [
        f"CREATE SEQUENCE {APP}_counter",
        f"ALTER SEQUENCE {APP}_counter INCREMENT BY 5",
        f"ALTER SEQUENCE {APP}_counter RENAME TO {APP}_tally",
        f"COMMENT ON SEQUENCE {APP}_tally IS 'A tally'",
        f"DROP SEQUENCE {APP}_tally",
    ],
    "materialized_view": [
        f"CREATE MATERIALIZED VIEW {APP}_stats AS SELECT author_id, pages FROM {B}",
        f"CREATE INDEX {APP}_stats_pages ON {APP}_stats (pages)",
        # A materialized view is read as a table is: its own rows, no query run.
        f"SELECT pages FROM {APP}_stats WHERE pages > 3",
        f"REFRESH MATERIALIZED VIEW {APP}_stats",
        f"DROP MATERIALIZED VIEW {APP}_stats",
    ],
    "create_table_as": [f"CREATE TABLE {APP}_copy AS SELECT id, title FROM {B}"],
    "create_view": [
        f"CREATE VIEW {APP}_titles AS SELECT id, title FROM {B}",
        f"CREATE OR REPLACE VIEW {APP}_titles AS SELECT id, title, pages FROM {B}",
        f"ALTER VIEW {APP}_titles RENAME TO {APP}_headings",
        f"COMMENT ON VIEW {APP}_headings IS 'Titles'",
        f"DROP VIEW {APP}_headings",
    ],
    "comments": [
        f"COMMENT ON COLUMN {B}.title IS 'The title'",
        f"COMMENT ON INDEX {B}_pkey IS 'The key'",
    ],
    "alter_sequence": [
        f"ALTER SEQUENCE {A}_id_seq INCREMENT BY 2",
        f"ALTER SEQUENCE {A}_id_seq RESTART WITH 1000",
    ],
    "data": [
        f"INSERT INTO {A} (name, age, bio) VALUES ('new', 1, '')",
        f"UPDATE {B} SET pages = 0 WHERE code IS NULL",
        f"DELETE FROM {B} WHERE pages > 10",
        f"SELECT id, title FROM {B} WHERE pages > 3",
    ],
    "drop_index": [f"CREATE INDEX b_pages ON {B} (pages)", "DROP INDEX b_pages"],
    "column_options": [
        f"ALTER TABLE {B} ALTER COLUMN pages SET STATISTICS 200",
        f"ALTER TABLE {B} ALTER COLUMN title SET STORAGE EXTERNAL",
    ],
    "several_subcommands": [
        f"ALTER TABLE {B} ALTER COLUMN pages SET STATISTICS 100, ADD COLUMN extra integer",
        f"ALTER TABLE {B} ALTER COLUMN extra SET STATISTICS 10,"
        " ALTER COLUMN pages SET STATISTICS 10",
    ],
    "table_options": [
        f"ALTER TABLE {B} ALTER COLUMN title SET COMPRESSION pglz",
        f"ALTER TABLE {B} ALTER COLUMN pages SET (n_distinct = 10)",
        f"ALTER TABLE {B} ALTER COLUMN pages RESET (n_distinct)",
        f"ALTER TABLE {B} CLUSTER ON {B}_pkey",
        f"ALTER TABLE {B} SET WITHOUT CLUSTER",
        f"ALTER TABLE {B} REPLICA IDENTITY FULL",
        f"ALTER TABLE {B} RENAME CONSTRAINT {B}_pkey TO {B}_key",
        f"ALTER TABLE {B} OWNER TO CURRENT_USER",
        f"ALTER TABLE {B} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {B} FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {B} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {B} DISABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {B} DISABLE TRIGGER ALL",
        f"ALTER TABLE {B} ENABLE TRIGGER ALL",
        f"ALTER TABLE {B} DISABLE TRIGGER USER",
        f"ALTER TABLE {B} ENABLE TRIGGER USER",
        f"ALTER TABLE {B} ADD COLUMN twice integer GENERATED ALWAYS AS (pages * 2) STORED",
        f"ALTER TABLE {B} ALTER COLUMN twice DROP EXPRESSION",
        f"ALTER TABLE {B} ALTER COLUMN code SET DEFAULT 'c', ALTER COLUMN code DROP NOT NULL",
    ],
    "set_unlogged": [
        f"CREATE TABLE {APP}_scratch (id integer)",
        f"INSERT INTO {APP}_scratch (id) VALUES (1), (2), (3)",
        f"ALTER TABLE {APP}_scratch SET UNLOGGED",
        f"ALTER TABLE {APP}_scratch SET LOGGED",
    ],
    "trigger": [
        f"CREATE FUNCTION {APP}_touch() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RETURN NEW; END $$",
        f"CREATE TRIGGER touch BEFORE UPDATE ON {B} FOR EACH ROW EXECUTE FUNCTION {APP}_touch()",
        f"ALTER TABLE {B} DISABLE TRIGGER touch",
    ],
    "identity_options": [
        f"ALTER TABLE {A} ALTER COLUMN id SET GENERATED ALWAYS",
        f"ALTER TABLE {A} ALTER COLUMN id DROP IDENTITY",
    ],
    # PostgreSQL 15+ makes the identity sequence unlogged (and logged) with its table.
    "set_unlogged_identity": [
        f"CREATE TABLE {APP}_counted (id integer GENERATED ALWAYS AS IDENTITY, n serial)",
        f"ALTER TABLE {APP}_counted SET UNLOGGED",
        f"ALTER TABLE {APP}_counted SET LOGGED",
        f"INSERT INTO {APP}_counted (n) OVERRIDING SYSTEM VALUE VALUES (5)",
        f"INSERT INTO {APP}_counted (id, n) OVERRIDING SYSTEM VALUE VALUES (1, 5)",
    ],
    "lock_table": [
        f"LOCK TABLE {B} IN SHARE MODE",
        f"LOCK TABLE ONLY {A}, {B} IN ROW EXCLUSIVE MODE NOWAIT",
        f"LOCK {B}",
    ],
    "if_exists": [
        f"ALTER TABLE IF EXISTS {APP}_nope ADD COLUMN a integer",
        f"ALTER TABLE {B} DROP COLUMN IF EXISTS nope",
        f"ALTER TABLE {B} DROP CONSTRAINT IF EXISTS nope",
        f"DROP TABLE IF EXISTS {APP}_nope",
    ],
    "on_conflict": [
        f"CREATE UNIQUE INDEX a_name_u ON {A} (name)",
        f"CREATE INDEX a_age ON {A} (age)",
        f"INSERT INTO {A} (name, age, bio) VALUES ('author 1', 1, '') ON CONFLICT (name)"
        " DO UPDATE SET age = 2",
        f"INSERT INTO {A} (name, age, bio) VALUES ('x', 1, '') ON CONFLICT DO NOTHING",
        f"ALTER TABLE {A} ADD CONSTRAINT a_name_key UNIQUE USING INDEX a_name_u",
        f"INSERT INTO {A} (name, age, bio) VALUES ('y', 1, '')"
        " ON CONFLICT ON CONSTRAINT a_name_key DO NOTHING",
    ],
    "with_queries": [
        f"WITH changed AS (UPDATE {B} SET pages = 1 RETURNING id) SELECT count(*) FROM changed",
        f"WITH gone AS (DELETE FROM {B} WHERE pages > 20 RETURNING id),"
        f" kept AS (SELECT id FROM {B}) SELECT id FROM gone UNION SELECT id FROM kept",
        f"WITH RECURSIVE {B} AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM {B} WHERE n < 3)"
        f" SELECT n FROM {B}",
    ],
    "create_table_constraints": [
        f"CREATE TEMP TABLE {APP}_temporary (id integer)",
        f"CREATE TABLE {APP}_node (id integer PRIMARY KEY, parent integer REFERENCES {APP}_node,"
        f" author integer, CONSTRAINT node_author FOREIGN KEY (author) REFERENCES {A} (id),"
        " CONSTRAINT node_parent_u UNIQUE (parent))",
        f"DROP TABLE {APP}_node",
        f"CREATE TABLE {APP}_empty AS SELECT id, title FROM {B} WITH NO DATA",
        f"CREATE SEQUENCE {APP}_counter INCREMENT 2 START 10",
    ],
    "columns": [
        f"ALTER TABLE {B} ADD COLUMN u1 uuid DEFAULT gen_random_uuid(),"
        " ADD COLUMN u2 uuid DEFAULT gen_random_uuid()",
        f"ALTER TABLE {B} ADD COLUMN tags text[] DEFAULT ARRAY['a', 'b']",
        f"ALTER TABLE {B} ALTER COLUMN title SET NOT NULL",
        f"ALTER TABLE {B} ADD COLUMN note varchar",
        f"ALTER TABLE {B} ALTER COLUMN note TYPE varchar(60)",
        f"CREATE INDEX b_title ON {B} (title)",
        f'ALTER TABLE {B} ALTER COLUMN title TYPE varchar(50) COLLATE "C"',
        f"ALTER TABLE {B} ADD CONSTRAINT b_title_len CHECK (length(title) > 0)",
        f"ALTER TABLE {B} ALTER COLUMN title TYPE varchar(60)",
        f"ALTER TABLE {B} RENAME CONSTRAINT b_title_len TO b_title_length",
        f"TRUNCATE {B} RESTART IDENTITY",
    ],
    "not_null_proofs": [
        f"ALTER TABLE {A} ADD CONSTRAINT a_age_pos CHECK (age > 0)",
        f"ALTER TABLE {A} ADD CONSTRAINT a_age_nn CHECK (age > 0 AND age IS NOT NULL)",
        f"ALTER TABLE {A} ALTER COLUMN age SET NOT NULL",
    ],
}


def _django_5_cases() -> dict[str, Case]:
    from django.contrib.postgres.functions import RandomUUID
    from django.db.models.functions import Now

    return {
        "add_field_db_default": Case([_field("copies", models.IntegerField(db_default=7))]),
        "add_field_db_default_stable": Case(
            [_field("added", models.DateTimeField(db_default=Now()))]
        ),
        "add_field_db_default_volatile": Case(
            [_field("uid", models.UUIDField(db_default=RandomUUID()))]
        ),
        "alter_field_db_default": Case(
            [_alter("pages", models.IntegerField(default=0, db_default=1))]
        ),
        "add_field_generated": Case(
            [
                _field(
                    "double",
                    models.GeneratedField(
                        expression=models.F("pages") * 2,
                        output_field=models.IntegerField(),
                        db_persist=True,
                    ),
                )
            ]
        ),
        # PostgreSQL 15+ (Django writes nothing for it before).
        "add_unique_nulls_distinct": _unique_case("title", nulls_distinct=False, server=150000),
    }


CASES = _cases()


@pytest.fixture
def schema() -> Iterator[ProjectState]:
    """The authors and books, with rows, for real; dropped afterwards."""
    state = base_state()
    with connection.schema_editor() as editor:
        for model in state.apps.get_models():
            editor.create_model(model)
    rows(
        f"INSERT INTO {APP}_author (name, age, bio) SELECT 'author ' || g, g, ''"
        f" FROM generate_series(1, {ROWS}) g"
    )
    rows(
        f"INSERT INTO {APP}_book (title, pages, author_id) SELECT 'book ' || g, g,"
        f" (SELECT min(id) FROM {APP}_author) FROM generate_series(1, {ROWS}) g"
    )
    try:
        yield state
    finally:
        _drop_app_tables()


def _drop_app_tables() -> None:
    """Drop what the cases made: tables (with their views and sequences), leftover
    sequences, types and functions."""
    pattern = [f"{APP}\\_%"]
    # Tables first: dropping them drops their views and owned sequences with them.
    for query in (_TABLES, _OTHERS):
        for kind, name in rows(query, pattern * query.count("%s")):
            rows(f'DROP {kind} IF EXISTS "{name}" CASCADE')


_TABLES = (
    "SELECT 'TABLE', relname FROM pg_class WHERE relkind IN ('r', 'p')"
    " AND relnamespace = current_schema()::regnamespace AND relname LIKE %s"
)
_OTHERS = (
    "SELECT CASE relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'"
    " ELSE 'MATERIALIZED VIEW' END, relname FROM pg_class"
    " WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('v', 'm', 'S')"
    " AND relname LIKE %s"
    " UNION ALL SELECT CASE typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, typname"
    " FROM pg_type WHERE typnamespace = current_schema()::regnamespace"
    " AND typtype IN ('d', 'e') AND typname LIKE %s"
    " UNION ALL SELECT 'FUNCTION', proname FROM pg_proc"
    " WHERE pronamespace = current_schema()::regnamespace AND proname LIKE %s"
)


@pytest.fixture(scope="module", autouse=True)
def _tally() -> Iterator[None]:
    yield
    print(
        f"\nlock plan agreement: {TALLY['agreeing']}/{TALLY['checked']} statements"
        f" ({TALLY['unknown']} more classified unknown, as expected)"
    )


def check_statements(sql: list[str], unknown: tuple[str, ...] = ()) -> list[str]:
    """Observe each statement (then run it for real, so the next one finds its schema);
    the disagreements, each under its statement. Statements matching ``unknown`` must be
    classified unknown, with a reason."""
    report = []
    for statement in statements(sql):
        effect, observed = observe(statement)
        if any(part in statement for part in unknown):
            TALLY["unknown"] += 1
            if effect.known or not effect.notes:
                report.append(f"{statement}\n    should be unknown, is {effect}")
            rows(statement)
            continue
        problems = disagreements(effect, observed)
        TALLY["checked"] += 1
        TALLY["agreeing"] += not problems
        if problems:
            report.append(f"{statement}\n    " + "\n    ".join(problems))
        if effect.kind != "LOCK TABLE":  # only a lock, and only in a transaction block
            rows(statement)
    return report


@pytest.mark.parametrize("name", sorted(CASES))
def test_schema_editor_statements_agree_with_pg_locks(name: str, schema: ProjectState) -> None:
    case = CASES[name]
    if not case.since <= DJANGO < case.until:
        pytest.skip(f"not in Django {django.get_version()}")
    if connection.pg_version < case.server:
        pytest.skip(f"not in PostgreSQL {connection.pg_version}")
    state, _ = apply(case.before, schema, collect=False)
    _, sql = apply(case.operations, state, collect=True)
    assert sql, "the operations emit no SQL"
    report = check_statements(sql, case.unknown)
    assert not report, "plan and server disagree:\n" + "\n".join(report)


def locks_while_it_waits(statement: str, blocker: Session, sessions: list) -> dict:
    """The locks ``statement`` holds while ``blocker`` (a session in a transaction) keeps
    it waiting (on a lock or a buffer pin), read from this session; then ``blocker`` ends
    its transaction and the statement finishes."""
    runner = Session(application_name="lockplan-runner")
    sessions.append(runner)
    before = relations()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            runner.execute(statement)
        except BaseException as error:  # shown by the test
            failures.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until(
            lambda: rows(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s"
                " AND wait_event_type IN ('Lock', 'BufferPin')",
                [runner.pid],
            ),
            what=f"{statement} waits",
        )
        held = locks_of(runner.pid, before, using="default")
    finally:
        blocker.release()
        thread.join()
    assert not failures
    return held


def _agrees(effect: StatementEffect, held: dict) -> None:
    planned = {lock.relation: (lock.mode, lock.kind) for lock in effect.locks}
    TALLY["checked"] += 1
    assert planned == held, f"plan {planned} != pg_locks {held}"
    TALLY["agreeing"] += 1


def test_create_index_concurrently_agrees_with_pg_locks(
    schema: ProjectState, sessions: list
) -> None:
    """CREATE INDEX CONCURRENTLY cannot run in a transaction: its locks are read from
    another session while it waits for a transaction that writes to the table."""
    index = models.Index(fields=["pages"], name="book_pages_cic")
    _, sql = apply([AddIndexConcurrently("book", index)], schema, collect=True)
    (statement,) = statements(sql)
    (effect,) = classify(statement, Catalog())
    assert not effect.transactional
    assert effect.waits_for_snapshots
    assert effect.creates == ("public.book_pages_cic",)
    writer = Session(application_name="lockplan-writer").hold(B, "ROW EXCLUSIVE")
    sessions.append(writer)
    _agrees(effect, locks_while_it_waits(statement, writer, sessions))


def test_drop_index_concurrently_while_it_waits(schema: ProjectState, sessions: list) -> None:
    """DROP INDEX CONCURRENTLY, read while it waits for a transaction on the table: it holds
    the plan's SHARE UPDATE EXCLUSIVE on the table, and on the index a mode no stronger than
    the plan's ACCESS EXCLUSIVE, which it takes once nobody uses the index (index.c,
    ``index_drop``): that last step cannot be made to wait, so it is not seen here."""
    index = models.Index(fields=["pages"], name="book_pages_dic")
    state, _ = apply([migrations.AddIndex("book", index)], schema, collect=False)
    _, sql = apply([RemoveIndexConcurrently("book", "book_pages_dic")], state, collect=True)
    (statement,) = statements(sql)
    (effect,) = classify(statement, Catalog())
    assert not effect.transactional
    assert effect.waits_for_snapshots
    planned = {lock.relation: lock.mode for lock in effect.locks}
    assert planned == {
        BOOK: LockMode.SHARE_UPDATE_EXCLUSIVE,
        "public.book_pages_dic": LockMode.ACCESS_EXCLUSIVE,
    }
    writer = Session(application_name="lockplan-writer").hold(B, "ROW EXCLUSIVE")
    sessions.append(writer)
    held = locks_while_it_waits(statement, writer, sessions)
    assert held[BOOK][0] is planned[BOOK]
    assert held["public.book_pages_dic"][0] <= planned["public.book_pages_dic"]


def test_vacuum_agrees_with_pg_locks(schema: ProjectState, sessions: list) -> None:
    """VACUUM cannot run in a transaction: its locks are read while it waits for the
    cleanup lock of a page another session's cursor keeps pinned."""
    statement = f"VACUUM (FREEZE) {B}"
    (effect,) = classify(statement, Catalog())
    assert not effect.transactional
    assert effect.scans == (BOOK,)
    reader = Session(application_name="lockplan-reader")
    sessions.append(reader)
    reader.connection.set_autocommit(False)
    reader.execute(f"DECLARE pinning CURSOR FOR SELECT * FROM {B}")
    reader.execute("FETCH 1 FROM pinning")
    _agrees(effect, locks_while_it_waits(statement, reader, sessions))


def _one(sql: str) -> StatementEffect:
    (effect,) = classify(sql, Catalog())
    return effect


def test_volatile_default_rewrites_a_non_volatile_one_does_not(schema: ProjectState) -> None:
    volatile = _one(f"ALTER TABLE {B} ADD COLUMN uid uuid DEFAULT gen_random_uuid()")
    assert BOOK in volatile.rewrites
    assert any("gen_random_uuid" in note and "volatile" in note for note in volatile.notes)
    stable = _one(f"ALTER TABLE {B} ADD COLUMN added timestamptz DEFAULT now()")
    constant = _one(f"ALTER TABLE {B} ADD COLUMN lang text DEFAULT 'en'::text")
    for effect in (stable, constant):
        assert effect.known
        assert effect.rewrites == ()
        assert effect.strongest is LockMode.ACCESS_EXCLUSIVE


def test_varchar_widening_keeps_the_rows_narrowing_rewrites(schema: ProjectState) -> None:
    def rewrites(new_type: str) -> bool:
        effect = _one(f"ALTER TABLE {B} ALTER COLUMN title TYPE {new_type}")
        assert effect.known, effect.notes
        return BOOK in effect.rewrites

    assert not rewrites("varchar(80)")
    assert not rewrites("varchar(50)")
    assert not rewrites("varchar")
    assert not rewrites("text")
    assert rewrites("varchar(40)")
    assert rewrites("char(50)")
    assert rewrites("integer USING length(title)")


def test_set_not_null_skips_its_scan_when_a_valid_check_proves_it(schema: ProjectState) -> None:
    set_not_null = f"ALTER TABLE {A} ALTER COLUMN age SET NOT NULL"
    assert _one(set_not_null).scans == (AUTHOR,)
    rows(f"ALTER TABLE {A} ADD CONSTRAINT age_nn CHECK (age IS NOT NULL) NOT VALID")
    assert _one(set_not_null).scans == (AUTHOR,), "a NOT VALID check proves nothing"
    rows(f"ALTER TABLE {A} VALIDATE CONSTRAINT age_nn")
    proven = _one(set_not_null)
    assert proven.scans == ()
    assert any("proves" in note for note in proven.notes)


def test_catalog_lookups_take_no_lock_on_the_apps_relations(schema: ProjectState) -> None:
    pid = rows("SELECT pg_backend_pid()")[0][0]
    known = relations()
    rows("BEGIN")
    try:
        catalog = Catalog()
        book = catalog.relation(f"{APP}_book")
        assert book is not None
        assert book.qualified == BOOK
        assert catalog.indexes(book)
        assert catalog.column(book, "title") is not None
        assert catalog.foreign_keys(book)
        assert catalog.column_sequence(book, "id") is not None
        assert catalog.not_null_proven(book, "title") is False
        assert catalog.relation(f"{APP}_book_pkey", "public") is not None
        assert locks_of(pid, known, using="default") == {}
        # Nor does to_regclass (a cast to regclass neither): names resolve without a lock.
        rows("SELECT to_regclass(%s), %s::regclass", [B, B])
        assert locks_of(pid, known, using="default") == {}
    finally:
        rows("ROLLBACK")


#: Statements it cannot classify, each for its reason (a few would fail if they ran).
_UNKNOWN = [
    "DO $$ BEGIN PERFORM 1; END $$",
    "CREATE EXTENSION IF NOT EXISTS hstore",
    "SELEC 1",
    f"SELECT pg_sleep(0) FROM {B}",
    f"ALTER TABLE {B} ALTER COLUMN pages TYPE timestamp USING now()::timestamp,"
    " ALTER COLUMN title SET (n_distinct = 1), ATTACH PARTITION x FOR VALUES IN (1)",
    f"ALTER TABLE {B} ALTER COLUMN meta TYPE jsonb[] USING ARRAY[meta]",
    f"ALTER TABLE {APP}_log ADD COLUMN note text",
    f"CREATE INDEX log_at ON {APP}_log_2020 (at)",
    f"LOCK TABLE {APP}_titles",
    f"GRANT SELECT ON {B} TO PUBLIC",
    f"CREATE TABLE {APP}_child () INHERITS ({B})",
    f"CREATE TABLE {APP}_like (LIKE {B})",
    f"DROP TYPE {APP}_mood",
    f"DROP TABLE {APP}_nope",
    f"DROP VIEW {APP}_titles",
    f"DROP TABLE {A}",
    f"DROP TABLE {B} CASCADE",
    "ALTER SCHEMA public RENAME TO elsewhere",
    f"ALTER MATERIALIZED VIEW {APP}_stats RENAME TO {APP}_numbers",
    "COMMENT ON SCHEMA public IS 'x'",
    f"TRUNCATE {B} CASCADE",
    f"VACUUM FULL {B}",
    "VACUUM",
    f"REINDEX TABLE CONCURRENTLY {B}",
    f"REINDEX TABLE {APP}_nope",
    f"REINDEX INDEX {B}",
    f"CREATE SEQUENCE {APP}_counter OWNED BY {B}.id",
    f"ALTER SEQUENCE {B}_id_seq OWNED BY NONE",
    f"CREATE VIEW {APP}_ones AS WITH one AS (SELECT 1 AS n) SELECT n FROM one",
    f"CREATE TABLE {APP}_copy AS EXECUTE prepared",
    f"CREATE TABLE {APP}_copy AS WITH one AS (SELECT 1) SELECT * FROM one WITH NO DATA",
    f"REFRESH MATERIALIZED VIEW CONCURRENTLY {APP}_stats",
    f"REFRESH MATERIALIZED VIEW {APP}_nope",
    f"ALTER INDEX {B}_pkey SET (fillfactor = 50)",
    f"ALTER TABLE {B} SET TABLESPACE pg_default",
    f"ALTER TABLE {B} ADD CONSTRAINT x FOREIGN KEY (title) REFERENCES {B} (title)",
    f"ALTER TABLE {B} ADD COLUMN x integer REFERENCES {APP}_plain (id)",
    f"ALTER TABLE {B} ADD COLUMN x {APP}_nope",
    f"ALTER TABLE {B} ADD COLUMN x integer DEFAULT 1 REFERENCES {A} (id)",
    f"ALTER TABLE {B} ADD COLUMN x integer NOT NULL",
    f"ALTER TABLE {B} ADD COLUMN x integer DEFAULT {APP}_nope()",
    f"ALTER TABLE {B} ADD COLUMN x integer DEFAULT 1 + 1",
    f"ALTER TABLE {APP}_new DROP COLUMN x",
    f"ALTER TABLE {B} DROP COLUMN nope",
    f"ALTER TABLE {B} DROP COLUMN author_id",
    f"ALTER TABLE {B} ALTER COLUMN pages TYPE int4range USING int4range(pages, pages)",
    f"ALTER TABLE {B} ALTER COLUMN title TYPE varchar(50) COLLATE {APP}_nope",
    f"ALTER TABLE {B} ALTER COLUMN flags TYPE bit(4)",
    f"ALTER TABLE {B} ALTER COLUMN title TYPE text(5)",
    f"ALTER TABLE {B} ALTER COLUMN seen TYPE timestamptz",
    f"ALTER TABLE {B} ADD CONSTRAINT x UNIQUE USING INDEX {APP}_nope",
    f"ALTER TABLE {B} ADD CONSTRAINT x NOT NULL pages",
    f"ALTER TABLE {A} DROP CONSTRAINT {A}_pkey",
    f"ALTER TABLE {B} DROP CONSTRAINT nope",
    f"ALTER TABLE {B} VALIDATE CONSTRAINT nope",
    f"ALTER TABLE {B} VALIDATE CONSTRAINT {B}_pkey",
    f"ALTER TABLE {APP}_new ALTER COLUMN id DROP IDENTITY",
    f"ALTER TABLE {B} CLUSTER ON {APP}_nope",
    f"INSERT INTO {A} (name) SELECT title FROM {B}",
    f"INSERT INTO {APP}_new (x) VALUES (1)",
    f"UPDATE {APP}_audited SET id = 1",
    f"INSERT INTO {B} (title, pages) VALUES ('t', 1)",
    f"DELETE FROM {A}",
    f"INSERT INTO {APP}_plain VALUES (1)",
    f"INSERT INTO {APP}_plain (id) VALUES (1) ON CONFLICT ON CONSTRAINT nope DO NOTHING",
    f"SELECT id FROM {B} WHERE id IN (SELECT 1)",
    "SELECT n FROM (WITH one AS (SELECT 1 AS n) SELECT n FROM one) AS s",
    "WITH one AS (SELECT 1), one AS (SELECT 2) SELECT 1",
    f"WITH a AS (SELECT * FROM b), b AS (SELECT id FROM {B}) SELECT * FROM a",
    f"WITH m AS (MERGE INTO {B} USING {A} ON false WHEN MATCHED THEN DELETE RETURNING 1) SELECT 1",
    f"SELECT 1 FROM {APP}_nope",
    f"INSERT INTO {APP}_stats (pages) VALUES (1)",
    f"ALTER TABLE {B} ALTER COLUMN title TYPE text",
    f"ALTER TABLE {B} DROP COLUMN pages",
]


@pytest.mark.parametrize("sql", _UNKNOWN)
def test_what_it_cannot_classify_is_unknown(sql: str, schema: ProjectState) -> None:
    rows(f"CREATE TABLE {APP}_log (at integer) PARTITION BY RANGE (at)")
    rows(f"CREATE TABLE {APP}_log_2020 PARTITION OF {APP}_log FOR VALUES FROM (0) TO (10)")
    rows(f"CREATE VIEW {APP}_titles AS SELECT id, title FROM {B}")
    rows(f"CREATE VIEW {APP}_short_titles AS SELECT id FROM {APP}_titles")
    rows(f"CREATE MATERIALIZED VIEW {APP}_stats AS SELECT pages FROM {B}")
    rows(f"CREATE TYPE {APP}_mood AS ENUM ('ok')")
    rows(f"ALTER TABLE {B} ADD COLUMN flags bit(3), ADD COLUMN seen timestamp")
    rows(f"CREATE TABLE {APP}_plain (id integer UNIQUE DEFERRABLE)")
    rows(f"CREATE TABLE {APP}_audited (id integer)")
    rows(
        f"CREATE FUNCTION {APP}_touch() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RETURN NEW; END $$"
    )
    rows(
        f"CREATE TRIGGER touch BEFORE UPDATE ON {APP}_audited"
        f" FOR EACH ROW EXECUTE FUNCTION {APP}_touch()"
    )
    (effect, *_) = classify(sql, Catalog())
    assert not effect.known
    assert effect.notes, "an unknown statement says why"
    assert effect.locks == ()


@pytest.fixture
def views(schema: ProjectState) -> None:
    """A view of the books, a view of it, a materialized view of each kind."""
    rows(f"CREATE VIEW {APP}_titles AS SELECT id, title, pages FROM {B}")
    rows(f"CREATE VIEW {APP}_short_titles AS SELECT id FROM {APP}_titles")
    rows(f"CREATE MATERIALIZED VIEW {APP}_stats AS SELECT pages FROM {B}")
    rows(f"CREATE MATERIALIZED VIEW {APP}_via_titles AS SELECT id FROM {APP}_titles")


#: Statements that lock more than the relations they name, each with one PostgreSQL locks
#: beyond them: the tables of the views they read or write (and the sequence of an INSERT's
#: default), the views a dropped column takes with it.
_BEYOND = {
    "select_view_of_view": (f"SELECT id FROM {APP}_short_titles", BOOK),
    "update_view": (f"UPDATE {APP}_titles SET title = 'x' WHERE id < 3", BOOK),
    "insert_view": (f"INSERT INTO {APP}_titles (title, pages) VALUES ('x', 1)", f"{BOOK}_id_seq"),
    "delete_view": (f"DELETE FROM {APP}_titles WHERE id < 3", BOOK),
    "create_table_as_view": (f"CREATE TABLE {APP}_copy AS SELECT id FROM {APP}_titles", BOOK),
    "refresh_of_a_view": (f"REFRESH MATERIALIZED VIEW {APP}_via_titles", BOOK),
    "drop_column_views_use": (f"ALTER TABLE {B} DROP COLUMN pages CASCADE", f"public.{APP}_stats"),
}


@pytest.mark.parametrize("name", sorted(_BEYOND))
def test_what_views_make_it_lock_is_unknown(name: str, views: None) -> None:
    """The plan never lists only the view (or only the table): its locks are unknown."""
    statement, beyond = _BEYOND[name]
    effect, observed = observe(statement)
    assert beyond in observed.locks, observed.locks
    assert not effect.known, effect
    assert effect.locks == () and effect.notes


def test_a_column_no_view_uses_is_dropped_as_before(views: None) -> None:
    effect, observed = observe(f"ALTER TABLE {B} DROP COLUMN code CASCADE")
    assert not disagreements(effect, observed)
    effect, observed = observe(f"ALTER TABLE {B} DROP COLUMN title CASCADE")
    assert f"public.{APP}_short_titles" in observed.gone
    assert not effect.known
    assert effect.notes == (
        f"the column is used by public.{APP}_titles: CASCADE drops it too (ACCESS EXCLUSIVE"
        " on each, and on the views that use it)",
    )


def test_a_parse_tree_of_an_unexpected_shape_is_unknown() -> None:
    """Another pglast version may give nodes of other shapes: unknown, never a traceback."""
    effect = _classify("ALTER TABLE t", {"AlterTableStmt": {}}, Catalog())
    assert not effect.known
    assert effect.notes == ("its parse tree is not as expected (KeyError: 'relation')",)


def _merged(effects: list[StatementEffect]) -> StatementEffect:
    """What statements classified together do, as one effect (the strongest lock each)."""
    locks: dict[str, Any] = {}
    for lock in (lock for effect in effects for lock in effect.locks):
        if lock.relation not in locks or locks[lock.relation].mode < lock.mode:
            locks[lock.relation] = lock
    assert all(effect.known for effect in effects), effects
    return StatementEffect(
        sql="; ".join(effect.sql for effect in effects),
        kind="all",
        known=True,
        locks=tuple(locks.values()),
        rewrites=tuple({name for effect in effects for name in effect.rewrites}),
        scans=tuple({name for effect in effects for name in effect.scans}),
    )


@pytest.fixture
def other_schema(schema: ProjectState) -> Iterator[str]:
    """A schema of its own holding a table named as the app's books, with rows."""
    other = f"{APP}_other"
    rows(f"CREATE SCHEMA {other}")
    rows(f"CREATE TABLE {other}.{B} (id integer, pages integer)")
    rows(f"INSERT INTO {other}.{B} SELECT g, g FROM generate_series(1, {ROWS}) g")
    try:
        yield other
    finally:
        rows(f"DROP SCHEMA {other} CASCADE")


@pytest.mark.parametrize(
    "sql",
    [
        "SET search_path = {other}, public; CREATE INDEX ON {B} (pages)",
        "SET LOCAL search_path TO public; SET LOCAL search_path TO '{other}';"
        " CREATE INDEX ON {B} (pages); SET search_path = public; CREATE INDEX ON {B} (pages)",
        "SET search_path = {other}; RESET search_path; CREATE INDEX ON {B} (pages)",
        "SET search_path = '$user', {other}; SET search_path TO DEFAULT; LOCK {B}",
        "SET search_path = {other}; BEGIN; SAVEPOINT s; LOCK {B}; SET statement_timeout = 0;"
        " SELECT pages FROM {B}",
        "SET search_path = nope, pg_temp, {other}; LOCK {B}",
    ],
)
def test_search_path_set_in_the_sql_is_followed(sql: str, other_schema: str) -> None:
    """Names resolve along the search_path the statements before them set, as the server
    resolves them (the same name in two schemas)."""
    effects, observed = observe_all(sql.format(other=other_schema, B=B))
    assert disagreements(_merged(effects), observed) == []


#: The DO blocks that may change search_path, each for its reason: the statement in the
#: block (variables v, r and c declared), or the whole DO.
_DO_CHANGES = [
    ("PERFORM set_config('search_path', '{other}', false)", "it calls set_config()"),
    ("IF set_config('search_path', '{other}', false) <> '' THEN NULL; END IF", "it calls"),
    ("v := pg_catalog.set_config('search_path', '{other}', true)", "it calls set_config()"),
    ("SELECT set_config('search_path', '{other}', false) INTO v", "it calls set_config()"),
    (
        "WHILE v IS NULL LOOP BEGIN v := 1 / 0; EXCEPTION WHEN others THEN"
        " RAISE NOTICE '%', set_config('search_path', '{other}', false); END; END LOOP",
        "it calls set_config()",
    ),
    (
        "DO $$ DECLARE v text := set_config('search_path', '{other}', false); BEGIN END $$",
        "it calls set_config()",
    ),
    ("UPDATE pg_settings SET setting = '{other}' WHERE name = 'search_path'", "it updates"),
    ("SET search_path = {other}", "it runs SET search_path"),
    ("SET LOCAL search_path = {other}", "it runs SET search_path"),
    ("RESET search_path", "it runs RESET search_path"),
    ("RESET ALL", "it runs RESET ALL"),
    ("DISCARD ALL", "it runs DISCARD ALL"),
    ("SET ROLE postgres", "it runs SET role"),
    ("SET SESSION AUTHORIZATION postgres", "it runs SET session_authorization"),
    ("RESET ROLE", "it runs RESET role"),
    ("EXECUTE 'SET search_path = {other}'", "it runs SET search_path"),
    ("EXECUTE format('SET search_path = %I', '{other}')", "it runs dynamic SQL"),
    ("v := 'SELECT 1'; EXECUTE v", "it runs dynamic SQL"),
    ("FOR r IN EXECUTE 'SELECT ' || 1 LOOP NULL; END LOOP", "it runs dynamic SQL"),
    ("OPEN c FOR EXECUTE format('SELECT 1')", "it runs dynamic SQL"),
    ("CALL nowhere()", "it calls a procedure"),
    ("DO $$ BEGIN DO $i$ BEGIN NULL; END $i$; END $$", "it runs a DO block of its own"),
    ("COMMIT", "it commits or rolls back"),
    ("DO LANGUAGE plpython3u $$ plpy.execute('SET search_path = x') $$", "its language"),
    ("DO $$ BEGIN NOT PL/pgSQL; END $$", "PL/pgSQL's parser rejects its body"),
]


def _do_block(statement: str) -> str:
    if statement.startswith("DO "):
        return statement
    return f"DO $$ DECLARE v text; r record; c refcursor; BEGIN {statement}; END $$"


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SET search_path = {other}; ROLLBACK", "a rollback after search_path was set"),
        ("SET search_path = {other}; ROLLBACK TO SAVEPOINT s", "a rollback after"),
        ("SET ROLE postgres", "SET role may change it"),
        ("RESET SESSION AUTHORIZATION", "RESET session_authorization may change it"),
        ("DISCARD ALL", "DISCARD may change it: it runs DISCARD ALL"),
        ("CALL nowhere()", "CALL may change it: it calls a procedure"),
        ("EXPLAIN ANALYZE EXECUTE prepared", "EXPLAIN may change it: it runs a prepared"),
        (
            "CREATE TABLE copied AS SELECT set_config('search_path', 'x', false)",
            "CREATE TABLE AS may change it: it calls set_config()",
        ),
        ("RESET ALL", "RESET ALL may change it"),
        ("SET search_path FROM CURRENT", "SET search_path is not followed"),
        ("SET search_path = 1", "SET search_path is not followed"),
        (
            f"SELECT set_config('search_path', 'x', false) FROM {B}",
            "SELECT may change it: it calls set_config()",
        ),
        *((_do_block(block), f"DO may change it: {why}") for block, why in _DO_CHANGES),
    ],
)
def test_search_path_changed_unseen_leaves_later_names_unknown(
    sql: str, why: str, other_schema: str
) -> None:
    """Every form that may change search_path (in a DO block, at any depth) leaves later
    unqualified names unknown; the DO block says why."""
    first, *_, index, create, qualified = classify(
        f"{sql.format(other=other_schema)}; CREATE INDEX ON {B} (pages);"
        f" CREATE TABLE {APP}_new (id integer); CREATE INDEX ON public.{B} (pages)",
        Catalog(),
    )
    for effect in (index, create):
        assert not effect.known
        assert effect.notes[0].startswith(
            f"an earlier statement may have changed search_path: {why}"
        )
    assert qualified.known, "a qualified name does not depend on it"
    if first.kind == "DO":
        assert first.notes[0].startswith("it runs code of its own")
        assert first.notes[1].startswith(
            f"it may change search_path: {why.removeprefix('DO may change it: ')}"
        )


#: DO blocks (and a statement) that do not change search_path: conditional DDL, constant
#: dynamic SQL, loops, a cursor, an exception block, other settings, other functions.
_DO_KEEPS = {
    "conditional-ddl": "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_indexes"
    " WHERE indexname = '{APP}_do_title') THEN CREATE INDEX {APP}_do_title ON {B} (id);"
    " END IF; END $$",
    "constant-execute": "DO $$ BEGIN EXECUTE 'CREATE INDEX {APP}_do_title ON {B} (id)'; END $$",
    "loop-setting-function": "DO $$ DECLARE total integer := 0; r record; BEGIN"
    " FOR r IN SELECT pages FROM {B} LOOP total := total + lower(r.pages::text)::integer;"
    " END LOOP; PERFORM pg_sleep(0); SET LOCAL statement_timeout = '1min';"
    " UPDATE {B} SET pages = pages WHERE id = total; END $$",
    "cursor-exception": "DO LANGUAGE plpgsql $$ DECLARE c CURSOR FOR SELECT id FROM {B};"
    " v integer; BEGIN OPEN c; FETCH c INTO v; CLOSE c; BEGIN PERFORM 1 / 0;"
    " EXCEPTION WHEN division_by_zero THEN"
    " RAISE NOTICE '%', current_setting('search_path'); END; END $$",
    "select-volatile": "SELECT pg_sleep(0) FROM {B}",
}


@pytest.mark.parametrize("sql", _DO_KEEPS.values(), ids=_DO_KEEPS.keys())
def test_a_do_block_that_does_not_set_search_path_keeps_it(sql: str, other_schema: str) -> None:
    """Nothing in the block sets search_path: the names after it resolve along the path
    before it (here one a SET made), as on the server, where the block runs in a
    transaction, then the index after it."""
    sql = sql.format(APP=APP, B=B)
    path = f"SET LOCAL search_path = {other_schema}, public"
    index_sql = f"CREATE INDEX {APP}_after_do ON {B} (pages)"
    _, block, index = classify(f"{path}; {sql}; {index_sql}", Catalog())
    assert not block.known
    if block.kind == "DO":
        assert block.notes == (
            "it runs code of its own: its locks cannot be known before it runs",
            "search_path is taken as unchanged: nothing in the block sets it"
            " (the functions it calls are taken not to)",
        )
    assert index.known
    assert [lock.relation for lock in index.locks] == [f"{other_schema}.{B}"]
    rows("BEGIN")
    try:
        rows(path)
        rows(sql)
        assert rows("SELECT current_setting('search_path')") == [(f"{other_schema}, public",)]
        rows(index_sql)
        built = rows("SELECT schemaname FROM pg_indexes WHERE indexname = %s", [f"{APP}_after_do"])
        assert built == [(other_schema,)]
    finally:
        rows("ROLLBACK")


def _where(name: str) -> tuple[str, str]:
    """``search_path`` and the relation the unqualified ``name`` is, on this connection."""
    ((path, relation),) = rows(
        "SELECT current_setting('search_path'), n.nspname || '.' || c.relname"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = %s::regclass",
        [name],
    )
    return path, relation


@pytest.mark.parametrize("sets", [False, True], ids=["keeps", "sets"])
def test_a_do_block_on_the_server(sets: bool, other_schema: str) -> None:
    """On the real connection, a DO block that calls set_config moves where an unqualified
    name resolves, and the plan leaves the name unknown; without it, search_path and the
    name stay as they were, and the plan resolves it as the server does."""
    body = f"IF to_regclass('{B}') IS NOT NULL THEN PERFORM 1; END IF;"
    if sets:
        body += f" PERFORM set_config('search_path', '{other_schema}, public', false);"
    block = f"DO $$ BEGIN {body} END $$"
    _, index = classify(f"{block}; CREATE INDEX ON {B} (pages)", Catalog())
    rows("BEGIN")
    try:
        path, before = _where(B)
        rows(block)
        after = _where(B)
    finally:
        rows("ROLLBACK")  # set_config's SET goes with it
    assert before == BOOK
    if sets:
        assert after == (f"{other_schema}, public", f"{other_schema}.{B}")
        assert not index.known
        assert index.notes == (
            "an earlier statement may have changed search_path:"
            " DO may change it: it calls set_config()",
        )
    else:
        assert after == (path, BOOK)
        assert index.known
        assert [lock.relation for lock in index.locks] == [BOOK]


def test_set_local_ends_with_its_transaction(other_schema: str, sessions: list[Session]) -> None:
    """A ``SET LOCAL`` lasts until its transaction commits; the session's ``SET`` stays: the
    statement after the ``COMMIT`` builds its index on the table the server builds it on (a
    session of its own runs the statements, each committing)."""
    sql = (
        f"SET search_path = {other_schema}, public; BEGIN; SET LOCAL search_path = public;"
        f" LOCK {B}; COMMIT; CREATE INDEX {APP}_after_commit ON {B} (pages)"
    )
    *_, locked, _, build = classify(sql, Catalog())
    assert [lock.relation for lock in locked.locks] == [BOOK]
    assert [lock.relation for lock in build.locks] == [f"{other_schema}.{B}"]
    session = Session()
    sessions.append(session)
    for text in pglast.split(sql):
        session.execute(text)
    built = rows("SELECT schemaname FROM pg_indexes WHERE indexname = %s", [f"{APP}_after_commit"])
    assert built == [(other_schema,)]


def test_no_schema_on_the_search_path_to_create_in(schema: ProjectState) -> None:
    _, create = classify(f"SET search_path = {APP}_nope; CREATE TABLE t (id integer)", Catalog())
    assert not create.known
    assert create.notes == ("no schema of search_path exists: nothing can be created",)


def test_pg_temp_first_on_the_search_path_creates_temporary_relations(
    schema: ProjectState,
) -> None:
    """With ``pg_temp`` first, an unqualified CREATE makes a temporary table, in a schema
    this session has not made yet: its name is unknown, the lookups of existing tables
    are not (``public`` follows)."""
    _, create, index = classify(
        f"SET search_path = {APP}_nope, pg_temp, public; CREATE TABLE t (id integer);"
        f" CREATE INDEX ON {B} (pages)",
        Catalog(),
    )
    assert not create.known
    assert create.notes == (
        "an earlier statement may have changed search_path:"
        " pg_temp comes first: what it creates is temporary",
    )
    assert index.known
    assert [lock.relation for lock in index.locks] == [BOOK]


def test_relations_a_pending_statement_creates(schema: ProjectState) -> None:
    """A table created earlier in the plan is not in the catalog: named in current_schema(),
    what needs its catalog rows is unknown, never a guess."""
    add = _one(f"ALTER TABLE {APP}_new ADD COLUMN x integer DEFAULT 0")
    assert add.known
    assert [(lock.relation, lock.mode) for lock in add.locks] == [
        (f"public.{APP}_new", LockMode.ACCESS_EXCLUSIVE)
    ]
    assert any("not in the catalog" in note for note in add.notes)
    index = _one(f"CREATE INDEX new_x ON {APP}_new (x)")
    assert index.creates == ("public.new_x",)
    assert not _one(f"ALTER TABLE {APP}_new ALTER COLUMN x TYPE bigint").known


def test_one_effect_per_statement(schema: ProjectState) -> None:
    effects = classify(
        f"ALTER TABLE {B} ADD COLUMN x integer NULL CONSTRAINT b_x REFERENCES {A} (id)"
        f" DEFERRABLE INITIALLY DEFERRED; SET CONSTRAINTS b_x IMMEDIATE",
        Catalog(),
    )
    assert [effect.kind for effect in effects] == ["ALTER TABLE ADD COLUMN", "SET CONSTRAINTS"]
    assert effects[0].sql.startswith("ALTER TABLE")
    assert effects[1].sql == "SET CONSTRAINTS b_x IMMEDIATE"


def test_the_same_sql_classified_again_is_classified_the_same(schema: ProjectState) -> None:
    """The parse trees are cached and shared: classifying leaves them as they were (a
    data-modifying WITH query once came out of the tree)."""
    sql = f"WITH gone AS (DELETE FROM {B} WHERE pages > 20 RETURNING id) SELECT 1"
    first = classify(sql, Catalog())
    assert first[0].known and first[0].kind == "WITH DELETE ... SELECT"
    assert classify(sql, Catalog()) == first


#: Every table read or rewritten is over the threshold.
STRICT = rules.resolve({}, 0)


@pytest.mark.parametrize(
    ("setup", "sql", "changes", "rule", "safer"),
    [
        # A one-to-one field: the scan builds the unique index, the new column has no row
        # for its foreign key to check (the advice was NOT VALID's, from "foreign key").
        (
            "",
            "ALTER TABLE {B} ADD COLUMN cover_id integer NULL UNIQUE"
            " CONSTRAINT {B}_cover_fk REFERENCES {A} (id) DEFERRABLE INITIALLY DEFERRED",
            {Change.ADD_UNIQUE, Change.ADD_FOREIGN_KEY},
            "pgmigrate.L002",
            "build its unique index first with CREATE UNIQUE INDEX CONCURRENTLY",
        ),
        # Its CHECK constraint is checked again: NOT VALID does not apply (it was advised).
        (
            "ALTER TABLE {B} ADD CONSTRAINT {B}_title_set CHECK (title <> '')",
            "ALTER TABLE {B} ALTER COLUMN title TYPE varchar(60)",
            {Change.ALTER_COLUMN_TYPE},
            "pgmigrate.L002",
            None,
        ),
        # An index built again: REINDEX CONCURRENTLY (AddIndexConcurrently was advised).
        (
            "",
            "REINDEX TABLE {B}",
            {Change.REINDEX},
            "pgmigrate.L003",
            "rebuild it with REINDEX ... CONCURRENTLY",
        ),
        # A type change of a column whose name says "default" (the volatile default's
        # advice was given).
        (
            "ALTER TABLE {B} ADD COLUMN default_rank integer",
            "ALTER TABLE {B} ALTER COLUMN default_rank TYPE bigint",
            {Change.ALTER_COLUMN_TYPE},
            "pgmigrate.L001",
            "add a new column of the new type",
        ),
        (
            "",
            "ALTER TABLE {B} ADD COLUMN uid uuid DEFAULT gen_random_uuid()",
            {Change.VOLATILE_DEFAULT},
            "pgmigrate.L001",
            "add the column without a default",
        ),
        (
            "",
            "ALTER TABLE {B} ALTER COLUMN code SET NOT NULL",
            {Change.SET_NOT_NULL},
            "pgmigrate.L002",
            "add CHECK (column IS NOT NULL) NOT VALID",
        ),
    ],
    ids=["one-to-one", "type-rechecks", "reindex", "type-named-default", "volatile", "not-null"],
)
def test_safer_way_follows_what_the_statement_changes(
    schema: ProjectState,
    setup: str,
    sql: str,
    changes: set[Change],
    rule: str,
    safer: str | None,
) -> None:
    """The advice follows what the classifier says the statement changes
    (``StatementEffect.changes``), not the words of its kind and notes; the classification
    agrees with what the server does."""
    if setup:
        rows(setup.format(A=A, B=B))
    if "code" in sql:
        rows(f"UPDATE {B} SET code = 'c'")
    effect, observed = observe(sql.format(A=A, B=B))
    assert disagreements(effect, observed) == []
    assert effect.changes == changes
    advice = {verdict.rule: verdict.safer for verdict in rules.judge(effect, {}, STRICT)}
    assert rule in advice, advice
    found = advice[rule]
    assert found == safer if safer is None else found is not None and found.startswith(safer)
