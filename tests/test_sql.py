"""What pgmigrate reads from SQL (``pgmigrate.sql.parse``) and how it runs each operation
(``pgmigrate.steps.mode``, ``is_exempt``). No database needed."""

import pytest
from django.contrib.postgres.operations import (
    AddIndexConcurrently,
    RemoveIndexConcurrently,
    ValidateConstraint,
)
from django.db import migrations, models

from pgmigrate.sql import Kind, Statement, digest, parse
from pgmigrate.steps import Mode, is_exempt, leaves, mode

# parse ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "CREATE INDEX CONCURRENTLY alpha_name_idx ON tests_alpha (name)",
            Statement(Kind.CREATE_INDEX_CONCURRENTLY, index="alpha_name_idx", table="tests_alpha"),
        ),
        (
            "create unique index concurrently if not exists ix on app.tbl using btree (a, b)",
            Statement(Kind.CREATE_INDEX_CONCURRENTLY, index="ix", schema="app", table="tbl"),
        ),
        (
            'CREATE INDEX CONCURRENTLY "Odd ""Name""" ON "My Table" (lower(name))',
            Statement(Kind.CREATE_INDEX_CONCURRENTLY, index='Odd "Name"', table="My Table"),
        ),
        (
            "CREATE INDEX CONCURRENTLY ON tests_alpha (name)",  # no name: the server picks it
            Statement(Kind.CREATE_INDEX_CONCURRENTLY, table="tests_alpha"),
        ),
        (
            "DROP INDEX CONCURRENTLY IF EXISTS beta_slow_idx",
            Statement(Kind.DROP_INDEX_CONCURRENTLY, index="beta_slow_idx"),
        ),
        (
            'DROP INDEX CONCURRENTLY "app"."Some Index" CASCADE',
            Statement(Kind.DROP_INDEX_CONCURRENTLY, index="Some Index", schema="app"),
        ),
        (
            "REINDEX INDEX CONCURRENTLY app.alpha_name_idx",
            Statement(Kind.REINDEX_CONCURRENTLY, index="alpha_name_idx", schema="app"),
        ),
        (
            "REINDEX TABLE CONCURRENTLY tests_alpha",
            Statement(Kind.REINDEX_CONCURRENTLY, table="tests_alpha"),
        ),
        (
            "REINDEX (VERBOSE, CONCURRENTLY) TABLE app.tests_alpha",
            Statement(Kind.REINDEX_CONCURRENTLY, schema="app", table="tests_alpha"),
        ),
    ],
)
def test_concurrent_index_statements_name_their_index(text, expected):
    assert parse(text) == [expected]
    assert expected.concurrent_index
    assert expected.transactional is False


@pytest.mark.parametrize(
    "text",
    [
        "CREATE INDEX alpha_name_idx ON tests_alpha (name)",
        "CREATE UNIQUE INDEX alpha_name_idx ON tests_alpha (name)",
        "DROP INDEX alpha_name_idx",
        "DROP TABLE tests_alpha",
        "REINDEX INDEX alpha_name_idx",
        "REINDEX TABLE tests_alpha",
        "ALTER TABLE tests_alpha ADD COLUMN flag boolean",
        "UPDATE tests_alpha SET name = 'concurrently'",
        "SELECT 'CREATE INDEX CONCURRENTLY x ON y (z)'",  # only a string
        "DO $$ BEGIN EXECUTE 'VACUUM tests_alpha'; END $$",  # the server decides, at run time
        "LOCK TABLE tests_alpha IN SHARE MODE",
        "ALTER TABLE parent DETACH PARTITION child",
        "ALTER TABLE parent DETACH PARTITION child FINALIZE",
        "DISCARD PLANS",
        "CLUSTER tests_alpha USING tests_alpha_pkey",
        "ALTER DATABASE other WITH CONNECTION LIMIT 5",
    ],
)
def test_statements_that_can_run_in_a_transaction(text):
    (statement,) = parse(text)
    assert statement.kind is Kind.OTHER and statement.index is None
    assert statement.transactional is True
    assert not statement.concurrent_index


@pytest.mark.parametrize(
    "text",
    [
        "VACUUM tests_alpha",
        "VACUUM (ANALYZE, VERBOSE) tests_alpha",
        "VACUUM FULL",
        "ALTER TABLE parent DETACH PARTITION child CONCURRENTLY",
        "ALTER TABLE app.parent DETACH PARTITION app.child CONCURRENTLY",
        "CREATE DATABASE other",
        "DROP DATABASE IF EXISTS other",
        "CREATE TABLESPACE space LOCATION '/srv/space'",
        "DROP TABLESPACE space",
        "ALTER SYSTEM SET work_mem = '64MB'",
        "CREATE SUBSCRIPTION sub CONNECTION 'dbname=x' PUBLICATION pub",
        "DROP SUBSCRIPTION sub",
        "DISCARD ALL",
        "CLUSTER",  # every table clustered before
        "ALTER DATABASE other SET TABLESPACE space",
    ],
)
def test_statements_that_cannot_run_in_a_transaction(text):
    (statement,) = parse(text)
    assert statement.kind is Kind.NO_TRANSACTION
    assert statement.transactional is False
    assert not statement.concurrent_index
    assert statement.index is None and statement.table is None


@pytest.mark.parametrize(
    ("text", "keeps"),
    [
        ("PREPARE lookup (int) AS SELECT name FROM tests_alpha WHERE id = $1", True),
        ("LISTEN migrations", True),
        ("DECLARE rows CURSOR WITH HOLD FOR SELECT 1", True),
        ("LOAD 'auto_explain'", True),
        ("SET search_path = app, public", True),
        ("SET LOCAL search_path = app, public", False),
        ("SELECT 1", False),
    ],
)
def test_statements_whose_effect_outlasts_the_transaction(text, keeps):
    """A resume in a new session would lose what they set up (``pgmigrate.steps.mode``)."""
    (statement,) = parse(text)
    assert statement.keeps_session_state is keeps


@pytest.mark.parametrize("text", ["ANALYZE tests_alpha", "ANALYZE"])
def test_analyze_can_run_in_a_transaction(text):
    """``ANALYZE`` (without ``VACUUM``) may run inside a transaction block (PostgreSQL docs,
    ``ANALYZE``); pglast gives it the node of ``VACUUM`` (``VacuumStmt``)."""
    (statement,) = parse(text)
    assert statement.transactional is True


@pytest.mark.parametrize(
    "text",
    [
        "BEGIN",
        "begin isolation level serializable",
        "START TRANSACTION",
        "COMMIT",
        "END",
        "ROLLBACK",
        "SAVEPOINT before_update",
        "RELEASE SAVEPOINT before_update",
        "ROLLBACK TO SAVEPOINT before_update",
        "PREPARE TRANSACTION 'x'",
    ],
)
def test_transaction_control(text):
    (statement,) = parse(text)
    assert statement.kind is Kind.TRANSACTION_CONTROL
    assert statement.transactional is False


@pytest.mark.parametrize(
    "text",
    [
        "CREAT INDEX CONCURRENTLY x ON y (z)",
        "SELECT 1 FROM",
        "UPDATE tests_alpha SET name = %s",  # Python placeholders are not PostgreSQL's
        "CREATE INDEX CONCURRENTLY x ON y (",
    ],
)
def test_what_the_parser_rejects_is_unknown(text):
    assert parse(text) == [Statement(Kind.UNKNOWN)]
    assert parse(text)[0].transactional is None
    assert not parse(text)[0].concurrent_index


def test_several_statements_in_one_string():
    statements = parse(
        "BEGIN;"
        " UPDATE tests_alpha SET name = name || '+';"
        " CREATE INDEX CONCURRENTLY alpha_name_idx ON tests_alpha (name);"
        " VACUUM tests_alpha;"
        " DROP INDEX CONCURRENTLY other_idx;"
        " COMMIT;"
    )
    assert [statement.kind for statement in statements] == [
        Kind.TRANSACTION_CONTROL,
        Kind.OTHER,
        Kind.CREATE_INDEX_CONCURRENTLY,
        Kind.NO_TRANSACTION,
        Kind.DROP_INDEX_CONCURRENTLY,
        Kind.TRANSACTION_CONTROL,
    ]
    assert statements[2].index == "alpha_name_idx" and statements[2].table == "tests_alpha"
    assert statements[4].index == "other_idx"


def test_nothing_to_run_is_no_statement():
    assert parse("") == []
    assert parse("  ;\n-- only a comment\n") == []


def test_digest_tells_statements_apart():
    one = "CREATE INDEX CONCURRENTLY a ON t (x)"
    assert digest(one) == digest(one)
    assert digest(one) != digest(one.replace(" a ", " b "))
    assert len(digest(one)) == 32  # fits pgmigrate_progress.inflight


# mode -----------------------------------------------------------------------------------


def migration(*operations, atomic=True):
    result = migrations.Migration("0002_x", "tests")
    result.atomic = atomic
    result.operations = list(operations)
    return result


CIC = "CREATE INDEX CONCURRENTLY alpha_name_idx ON tests_alpha (name)"
DIC = "DROP INDEX CONCURRENTLY IF EXISTS alpha_name_idx"
ADD_FIELD = migrations.AddField("Alpha", "flag", models.BooleanField(null=True))
ADD_INDEX_CONCURRENTLY = AddIndexConcurrently(
    "Alpha", models.Index(fields=["name"], name="alpha_name_idx")
)
REMOVE_INDEX_CONCURRENTLY = RemoveIndexConcurrently("Alpha", "alpha_name_idx")


def noop(apps, schema_editor):
    pass


def wrapped(*database_operations, depth=1):
    """``database_operations`` wrapped in ``depth`` levels of SeparateDatabaseAndState."""
    operations = list(database_operations)
    for _ in range(depth):
        operations = [migrations.SeparateDatabaseAndState(database_operations=operations)]
    return operations[0]


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        (ADD_FIELD, Mode.TRANSACTION),
        (migrations.RunSQL("UPDATE tests_alpha SET name = ''"), Mode.STATEMENTS),
        (migrations.RunSQL([CIC, "ANALYZE tests_alpha"]), Mode.STATEMENTS),
        (ADD_INDEX_CONCURRENTLY, Mode.STATEMENTS),
        (REMOVE_INDEX_CONCURRENTLY, Mode.STATEMENTS),
        (migrations.RunPython(noop), Mode.AUTOCOMMIT),
        (migrations.RunPython(noop, atomic=False), Mode.AUTOCOMMIT),
        (migrations.RunPython(noop, atomic=True), Mode.TRANSACTION),
        (
            migrations.RunSQL(["BEGIN", "UPDATE tests_alpha SET name = ''", "COMMIT"]),
            Mode.AUTOCOMMIT,
        ),
        (migrations.RunSQL("BEGIN; UPDATE tests_alpha SET name = ''; COMMIT;"), Mode.AUTOCOMMIT),
        (wrapped(migrations.RunSQL(CIC, DIC)), Mode.STATEMENTS),
        (wrapped(migrations.RunSQL(CIC, DIC), depth=3), Mode.STATEMENTS),
        (wrapped(ADD_INDEX_CONCURRENTLY, depth=2), Mode.STATEMENTS),
        (wrapped(ADD_FIELD), Mode.TRANSACTION),
        (wrapped(ADD_FIELD, migrations.RunPython(noop), depth=2), Mode.AUTOCOMMIT),
        (wrapped(migrations.RunSQL(CIC), migrations.RunPython(noop)), Mode.AUTOCOMMIT),
        (migrations.SeparateDatabaseAndState(state_operations=[ADD_FIELD]), Mode.TRANSACTION),
    ],
)
def test_mode_in_a_migration_that_is_not_atomic(operation, expected):
    assert mode(migration(operation, atomic=False), operation, forwards=True) is expected


@pytest.mark.parametrize(
    "operation",
    [
        ADD_FIELD,
        migrations.RunSQL(["UPDATE tests_alpha SET name = ''", "SELECT 1"]),
        migrations.RunPython(noop),
        migrations.RunPython(noop, atomic=False),
        wrapped(migrations.RunSQL(CIC), depth=2),
        wrapped(migrations.RunPython(noop)),
    ],
)
@pytest.mark.parametrize("forwards", [True, False], ids=["forwards", "backwards"])
def test_every_operation_of_an_atomic_migration_has_a_transaction(operation, forwards):
    assert mode(migration(operation), operation, forwards=forwards) is Mode.TRANSACTION


def test_sql_that_ends_transactions_runs_without_one_in_an_atomic_migration():
    """Its COMMIT would end the transaction it runs in, and what shares it: as Django
    without a transaction (``Mode.AUTOCOMMIT``), in the direction whose SQL has it."""
    operation = migrations.RunSQL(["BEGIN", "UPDATE tests_alpha SET name = ''", "COMMIT"])
    assert mode(migration(operation), operation, forwards=True) is Mode.AUTOCOMMIT
    assert mode(migration(operation), operation, forwards=False) is Mode.TRANSACTION


def test_mode_reads_the_sql_of_the_direction():
    """A RunSQL managing transactions itself only in one direction runs as Django runs it in
    that direction, statement by statement in the other."""
    operation = migrations.RunSQL(
        "UPDATE tests_alpha SET name = upper(name)",
        ["BEGIN", "UPDATE tests_alpha SET name = lower(name)", "COMMIT"],
    )
    in_migration = migration(operation, atomic=False)
    assert mode(in_migration, operation, forwards=True) is Mode.STATEMENTS
    assert mode(in_migration, operation, forwards=False) is Mode.AUTOCOMMIT
    nested = wrapped(operation, depth=2)
    assert mode(migration(nested, atomic=False), nested, forwards=False) is Mode.AUTOCOMMIT


ALTER_FIELD = migrations.AlterField("Alpha", "name", models.IntegerField())


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        # Mixed with operations whose statements depend on the database: as Django runs it.
        (wrapped(migrations.RunSQL("SELECT 1", "SELECT 2"), ALTER_FIELD), Mode.AUTOCOMMIT),
        (wrapped(ALTER_FIELD, migrations.RunSQL(CIC, DIC), depth=2), Mode.AUTOCOMMIT),
        (wrapped(ADD_INDEX_CONCURRENTLY, ADD_FIELD), Mode.AUTOCOMMIT),
        # Not mixed: statement by statement, or a transaction.
        (wrapped(migrations.RunSQL(CIC, DIC), ADD_INDEX_CONCURRENTLY), Mode.STATEMENTS),
        (wrapped(ALTER_FIELD, ADD_FIELD), Mode.TRANSACTION),
        # State operations do not count.
        (
            migrations.SeparateDatabaseAndState(
                state_operations=[ALTER_FIELD],
                database_operations=[migrations.RunSQL("SELECT 1", "SELECT 2")],
            ),
            Mode.STATEMENTS,
        ),
    ],
)
@pytest.mark.parametrize("forwards", [True, False], ids=["forwards", "backwards"])
def test_mode_of_separate_database_and_state_mixing_kinds(operation, expected, forwards):
    assert mode(migration(operation, atomic=False), operation, forwards=forwards) is expected


def test_leaves_of_nested_separate_database_and_state():
    inner = migrations.RunSQL(CIC)
    operation = migrations.SeparateDatabaseAndState(
        state_operations=[ADD_FIELD],
        database_operations=[ADD_INDEX_CONCURRENTLY, wrapped(inner, depth=2)],
    )
    assert list(leaves(operation)) == [ADD_INDEX_CONCURRENTLY, inner]
    assert list(leaves(ADD_FIELD)) == [ADD_FIELD]


# is_exempt --------------------------------------------------------------------------------

DEFAULT_EXEMPT = (
    migrations.RunPython,
    AddIndexConcurrently,
    RemoveIndexConcurrently,
    ValidateConstraint,
)


@pytest.mark.parametrize(
    ("operation", "exempt"),
    [
        (migrations.RunPython(noop), True),
        (migrations.RunPython(noop, atomic=True), True),
        (ADD_INDEX_CONCURRENTLY, True),
        (REMOVE_INDEX_CONCURRENTLY, True),
        (ValidateConstraint("Alpha", "not_bad"), True),
        (wrapped(ADD_INDEX_CONCURRENTLY, depth=2), True),
        (wrapped(migrations.RunPython(noop)), True),
        (ADD_FIELD, False),
        (wrapped(ADD_FIELD), False),
        (migrations.RunSQL("SELECT pg_sleep(1)"), False),
        (migrations.RunSQL(CIC), True),
        (migrations.RunSQL(["SELECT 1", (DIC, None)]), True),
        (migrations.RunSQL(["SELECT 1", ("SELECT %s", [1])]), False),
        (migrations.RunSQL("REINDEX TABLE CONCURRENTLY tests_alpha"), True),
        (migrations.RunSQL("CREATE INDEX alpha_name_idx ON tests_alpha (name)"), False),
        (migrations.RunSQL("VACUUM tests_alpha"), False),
        (wrapped(migrations.RunSQL(CIC), depth=3), True),
    ],
)
def test_exempt_operations_forwards(operation, exempt):
    assert is_exempt(operation, DEFAULT_EXEMPT, forwards=True) is exempt


def test_concurrent_index_sql_is_exempt_whatever_the_setting():
    for operation in (migrations.RunSQL(CIC), wrapped(migrations.RunSQL([DIC]), depth=2)):
        assert is_exempt(operation, (), forwards=True)
    for operation in (ADD_INDEX_CONCURRENTLY, migrations.RunPython(noop)):
        assert not is_exempt(operation, (), forwards=True)
        assert not is_exempt(wrapped(operation), (), forwards=False)


def test_exemption_reads_the_sql_of_the_direction():
    build_back = migrations.RunSQL("DROP INDEX alpha_name_idx", CIC)
    assert not is_exempt(build_back, (), forwards=True)
    assert is_exempt(build_back, (), forwards=False)
    assert is_exempt(wrapped(build_back, depth=2), (), forwards=False)
    no_reverse = migrations.RunSQL(CIC, migrations.RunSQL.noop)
    assert is_exempt(no_reverse, (), forwards=True)
    assert not is_exempt(no_reverse, (), forwards=False)
    # A class in the setting is exempt in both directions.
    assert is_exempt(wrapped(REMOVE_INDEX_CONCURRENTLY), DEFAULT_EXEMPT, forwards=False)


@pytest.mark.parametrize(
    ("text", "kind", "traps_cancel"),
    [
        ("CALL tests_batch()", Kind.TRANSACTION_CONTROL, False),
        ("DO $$ BEGIN UPDATE t SET v = 1; COMMIT; END $$", Kind.TRANSACTION_CONTROL, False),
        ("DO $$ BEGIN UPDATE t SET v = 1; ROLLBACK; END $$", Kind.TRANSACTION_CONTROL, False),
        ("DO $$ BEGIN CALL p(); END $$", Kind.TRANSACTION_CONTROL, False),
        ("DO $$ BEGIN DO $b$ BEGIN COMMIT; END $b$; END $$", Kind.TRANSACTION_CONTROL, False),
        ("DO LANGUAGE plpython3u $$ plpy.commit() $$", Kind.TRANSACTION_CONTROL, False),
        ("DO $$ BEGIN IF THEN END $$", Kind.TRANSACTION_CONTROL, False),  # unreadable
        ("DO $$ BEGIN UPDATE t SET v = 1; END $$", Kind.OTHER, False),
        (
            "DO $$ BEGIN ALTER TABLE t ADD c int; EXCEPTION WHEN query_canceled THEN NULL; END $$",
            Kind.OTHER,
            True,
        ),
        (
            "DO $$ BEGIN BEGIN PERFORM 1; EXCEPTION WHEN SQLSTATE '57014' THEN NULL; END; END $$",
            Kind.OTHER,
            True,
        ),
        # OTHERS catches every error but a cancel (and assertions).
        ("DO $$ BEGIN PERFORM 1; EXCEPTION WHEN OTHERS THEN NULL; END $$", Kind.OTHER, False),
    ],
)
def test_do_blocks_and_calls(text, kind, traps_cancel):
    """What a ``DO`` block does with transactions and cancels, read with PL/pgSQL's parser:
    one that commits, rolls back or calls (a procedure may commit) manages transactions;
    one with a handler for ``query_canceled`` traps a cancel."""
    (statement,) = parse(text)
    assert statement.kind is kind
    assert statement.traps_cancel is traps_cancel
