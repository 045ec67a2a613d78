"""Behaviours added after an adversarial review: irreversible operations, --fake-initial,
what the fingerprint covers, statement lists, operations mixing RunSQL with others, data-
deleting operations, deferred constraints, errors that pass as they are, and migrate called
inside the caller's transaction."""

import functools
import sys
from collections.abc import Iterator

import pytest
from django.core.management.base import CommandError
from django.db import DataError, connection, migrations, models, transaction
from django.db.migrations.exceptions import IrreversibleError
from django.test import override_settings

from pgmigrate import progress
from tests.crashes import index_state, progress_rows
from tests.helpers import MigrateThread, Session, applied, columns, migrate, query, watcher_threads
from tests.scenarios import (
    EDIT_LATER,
    HALF_INITIAL,
    IRREVERSIBLE,
    RAISED,
    STATEMENT_LIST,
    SYSTEM_EXIT,
)
from tests.test_cli import manage

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


def _edit(module: str, values: dict, **changes: object) -> None:
    """Change a scenario's migration as an edit of its file would: the values it reads at
    import, and Django imports it again."""
    values.update(changes)
    sys.modules.pop(module, None)


def _data_type(table: str, column: str) -> str | None:
    rows = query(
        "SELECT data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s AND column_name = %s",
        [table, column],
    )
    return rows[0][0] if rows else None


# Irreversible operations ------------------------------------------------------------------


@pytest.fixture
def irreversible() -> Iterator[dict]:
    yield IRREVERSIBLE
    IRREVERSIBLE["fail"] = False


@pytest.mark.scenario("irreversible")
def test_unapplying_an_irreversible_migration_changes_nothing(scenario, irreversible):
    migrate("tests")
    query("UPDATE tests_alpha SET flag = true")
    with pytest.raises(IrreversibleError) as raised:
        migrate("tests", "0001")
    assert isinstance(raised.value, CommandError)
    assert "is not reversible" in str(raised.value)
    # Refused before anything was unapplied: still recorded, the column and its data stay.
    assert applied() == ["0001_initial", "0002_irreversible"]
    assert query("SELECT name, flag FROM tests_alpha") == [("irreversible", True)]
    assert progress_rows() == []


@pytest.mark.scenario("irreversible")
def test_a_half_applied_irreversible_migration_is_not_rolled_back(scenario, irreversible):
    """Operation 1 (a RunPython without reverse) applied, operation 2 failed: migrating to
    0001 would have to roll operation 1 back, which it cannot."""
    migrate("tests", "0001")
    irreversible["fail"] = True
    with pytest.raises(CommandError):
        migrate("tests")
    assert progress_rows() == [("tests", "0002_irreversible", 1, 3, "forwards", 0, None)]

    with pytest.raises(IrreversibleError) as raised:
        migrate("tests", "0001")
    assert isinstance(raised.value, CommandError)
    message = str(raised.value)
    assert "tests.0002_irreversible is half applied (an earlier run applied operation 1" in (
        message
    )
    assert "Migrate forwards to finish it instead" in message
    # Nothing changed.
    assert progress_rows() == [("tests", "0002_irreversible", 1, 3, "forwards", 0, None)]
    assert query("SELECT name FROM tests_alpha") == [("irreversible",)]
    assert applied() == ["0001_initial"]

    # Forwards, as the message says: it resumes at operation 2.
    irreversible["fail"] = False
    out = migrate("tests")
    assert "resuming tests.0002_irreversible at operation 2 of 3" in out
    assert query("SELECT name FROM tests_alpha") == [("irreversible",)]
    assert applied() == ["0001_initial", "0002_irreversible"]


# --fake-initial ---------------------------------------------------------------------------


@pytest.mark.scenario("half_initial")
def test_fake_initial_resumes_a_half_applied_initial_migration(scenario):
    """Django would see tests_delta and fake 0001; its RunPython and AddIndex never ran."""
    HALF_INITIAL["fail"] = True
    try:
        with pytest.raises(CommandError):
            migrate("tests")
    finally:
        HALF_INITIAL["fail"] = False
    assert progress_rows() == [("tests", "0001_initial", 1, 3, "forwards", 0, None)]
    assert query("SELECT count(*) FROM tests_delta") == [(0,)]

    out = migrate("tests", fake_initial=True)
    assert "resuming tests.0001_initial at operation 2 of 3" in out
    assert "FAKED" not in out
    assert query("SELECT name FROM tests_delta") == [("from RunPython",)]
    assert index_state("delta_name_idx") is not None
    assert applied() == ["0001_initial"]
    assert progress_rows() == []


# The fingerprint covers the applied operations --------------------------------------------

EDIT_LATER_MODULE = "tests.scenarios.edit_later.0002_steps"


@pytest.fixture
def edit_later() -> Iterator[dict]:
    original = dict(EDIT_LATER)
    yield EDIT_LATER
    _edit(EDIT_LATER_MODULE, EDIT_LATER, **original)


@pytest.mark.scenario("edit_later")
@pytest.mark.parametrize("edit", ["hints", "sql"])
def test_an_operation_that_is_not_applied_may_be_edited(scenario, edit_later, edit):
    migrate("tests", "0001")
    query("INSERT INTO tests_beta (id, name) VALUES (1, 'in the way')")
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    assert "FAILED      2. Raw SQL operation (rolled back)" in str(raised.value)
    assert progress_rows() == [("tests", "0002_steps", 1, 2, "forwards", 0, None)]

    if edit == "hints":  # the fix is in the data; the operation changes anyway
        query("DELETE FROM tests_beta")
        _edit(EDIT_LATER_MODULE, edit_later, hints={"edited": True})
        expected = [(1, "operation 2")]
    else:  # the fix is in the operation's SQL
        sql = "INSERT INTO tests_beta (id, name) VALUES (2, 'edited operation 2')"
        _edit(EDIT_LATER_MODULE, edit_later, sql=sql)
        expected = [(1, "in the way"), (2, "edited operation 2")]
    out = migrate("tests")
    assert "resuming tests.0002_steps at operation 2 of 2" in out
    assert query("SELECT id, name FROM tests_beta ORDER BY id") == expected
    assert applied() == ["0001_initial", "0002_steps"]
    assert progress_rows() == []


class CallableObject:
    def __init__(self, value):
        self.value = value

    def __call__(self, apps, schema_editor):
        pass


def _fingerprints_of(make_operations, done=None):
    """The fingerprint of a migration of ``make_operations()``, computed twice, each time on
    new objects (as after a new import of the migration file)."""
    prints = []
    for _ in range(2):
        migration = migrations.Migration("0002_x", "tests")
        migration.operations = make_operations()
        prints.append(progress.fingerprint(migration, done))
    return prints


def _partial_of_a_local_function(*args, **kwargs):
    """A partial of a function Django cannot serialize (a new function object each call)."""

    def local_function(apps, schema_editor, extra=None):
        pass

    return functools.partial(local_function, *args, **kwargs)


def _lambda():
    return lambda apps, schema_editor: None


@pytest.mark.parametrize(
    "make_code",
    [
        lambda: CallableObject(5),
        lambda: _partial_of_a_local_function(1),
        lambda: _partial_of_a_local_function(extra=CallableObject(5)),
        _lambda,
    ],
    ids=["callable-object", "partial", "partial-keywords", "lambda"],
)
def test_fingerprint_is_the_same_in_two_computations(make_code):
    first, second = _fingerprints_of(lambda: [migrations.RunPython(make_code(), make_code())])
    assert first == second


def test_fingerprint_differs_when_an_applied_operations_arguments_differ():
    def fingerprint(make_code, make_reverse=lambda: None):
        (value,) = set(
            _fingerprints_of(lambda: [migrations.RunPython(make_code(), make_reverse())])
        )
        return value

    partial_1 = fingerprint(lambda: _partial_of_a_local_function(1))
    assert partial_1 != fingerprint(lambda: _partial_of_a_local_function(2))
    assert fingerprint(lambda: _partial_of_a_local_function(extra=1)) != fingerprint(
        lambda: _partial_of_a_local_function(extra=2)
    )
    assert partial_1 != fingerprint(
        lambda: _partial_of_a_local_function(1), lambda: migrations.RunPython.noop
    )
    assert fingerprint(_lambda) != fingerprint(lambda: CallableObject(5))


def test_fingerprint_covers_only_the_applied_operations():
    def steps(max_length, sql):
        return lambda: [
            migrations.AddField("Alpha", "flag", models.CharField(max_length=max_length)),
            migrations.RunSQL(sql),
        ]

    (one,) = set(_fingerprints_of(steps(10, "SELECT 1"), done=1))
    # Operation 2 is not covered by the fingerprint of operation 1 ...
    assert set(_fingerprints_of(steps(10, "SELECT 2"), done=1)) == {one}
    # ... operation 1 is.
    assert set(_fingerprints_of(steps(20, "SELECT 1"), done=1)) != {one}
    # And all of them by default.
    assert set(_fingerprints_of(steps(10, "SELECT 1"))) != set(
        _fingerprints_of(steps(10, "SELECT 2"))
    )


# Statement lists resumed statement by statement -------------------------------------------

STATEMENT_LIST_MODULE = "tests.scenarios.statement_list.0002_statements"
STATEMENT_3 = "INSERT INTO tests_beta (name) VALUES ('statement 3')"


@pytest.fixture
def statement_list() -> Iterator[dict]:
    original = list(STATEMENT_LIST["sql"])
    yield STATEMENT_LIST
    _edit(STATEMENT_LIST_MODULE, STATEMENT_LIST, sql=original)


def _statements_1_and_2_committed():
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (name) VALUES ('a')")
    with pytest.raises(DataError) as raised:
        migrate("tests")
    assert "statements 1 to 2 of it committed and are recorded" in str(raised.value)
    assert progress_rows() == [("tests", "0002_statements", 0, 1, "forwards", 2, None)]
    assert query("SELECT name FROM tests_alpha") == [("a+",)]


@pytest.mark.scenario("statement_list")
def test_the_failed_statement_may_be_edited(scenario, statement_list):
    _statements_1_and_2_committed()
    sql = [*statement_list["sql"][:2], STATEMENT_3]
    _edit(STATEMENT_LIST_MODULE, statement_list, sql=sql)
    out = migrate("tests")
    assert "resuming tests.0002_statements at statement 3 of operation 1 of 1" in out
    # Statements 1 and 2 ran once; statement 3 is the new one.
    assert query("SELECT name FROM tests_alpha") == [("a+",)]
    assert query("SELECT name FROM tests_gamma") == [("statement 2",)]
    assert query("SELECT name FROM tests_beta") == [("statement 3",)]
    assert applied() == ["0001_initial", "0002_statements"]
    assert progress_rows() == []


@pytest.mark.scenario("statement_list")
def test_a_committed_statement_may_not_be_edited(scenario, statement_list):
    _statements_1_and_2_committed()
    original = list(statement_list["sql"])
    edited = ["UPDATE tests_alpha SET name = name || '!'", original[1], STATEMENT_3]
    _edit(STATEMENT_LIST_MODULE, statement_list, sql=edited)
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    assert (
        "the first 2 statements of operation 1 of tests.0002_statements are not those an "
        "earlier run committed" in str(raised.value)
    )
    # Nothing ran.
    assert query("SELECT name FROM tests_alpha") == [("a+",)]
    assert query("SELECT count(*) FROM tests_beta") == [(0,)]
    assert progress_rows() == [("tests", "0002_statements", 0, 1, "forwards", 2, None)]
    assert applied() == ["0001_initial"]

    _edit(STATEMENT_LIST_MODULE, statement_list, sql=[*original[:2], STATEMENT_3])
    out = migrate("tests")
    assert "resuming tests.0002_statements at statement 3 of operation 1 of 1" in out
    assert query("SELECT name FROM tests_alpha") == [("a+",)]
    assert applied() == ["0001_initial", "0002_statements"]


@pytest.mark.scenario("statement_list")
def test_an_operation_edited_to_fewer_statements_than_committed_is_not_skipped(
    scenario, statement_list
):
    """The failed operation rewritten as one statement (of the two committed and the one
    that failed): nothing of it is skipped as committed, nor the migration recorded."""
    _statements_1_and_2_committed()
    _edit(STATEMENT_LIST_MODULE, statement_list, sql=[STATEMENT_3])
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    assert (
        "the first 2 statements of operation 1 of tests.0002_statements are not those an "
        "earlier run committed" in str(raised.value)
    )
    assert query("SELECT count(*) FROM tests_beta") == [(0,)]
    assert progress_rows() == [("tests", "0002_statements", 0, 1, "forwards", 2, None)]
    assert applied() == ["0001_initial"]


# Operations mixing RunSQL with others; statement lists keeping session state --------------


@pytest.mark.scenario("mixed_alter")
def test_an_operation_mixing_runsql_and_alterfield_runs_again_from_its_start(scenario):
    migrate("tests", "0002")
    query("INSERT INTO tests_code (code) VALUES ('x3')")
    with pytest.raises(DataError) as raised:
        migrate("tests")
    report = str(raised.value)
    # It ran outside a transaction, as Django runs it; the next run runs it from its start.
    assert "FAILED      1. Custom state/database change combination (it runs outside" in report
    assert "the next migrate runs it again from its start" in report
    assert _data_type("tests_code", "code") == "character varying"

    query("UPDATE tests_code SET code = '3'")
    out = migrate("tests")
    assert "at statement" not in out
    assert _data_type("tests_code", "code") == "integer"
    assert query("SELECT code FROM tests_code") == [(3,)]
    assert applied() == ["0001_initial", "0002_code", "0003_integer"]
    assert progress_rows() == []


@pytest.mark.scenario("session_state")
def test_a_statement_list_keeping_session_state_is_one_transaction(scenario):
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (name) VALUES ('a'), ('bad')")
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    assert "FAILED      1. Raw SQL operation (rolled back)" in str(raised.value)
    assert query("SELECT name FROM tests_alpha ORDER BY id") == [("a",), ("bad",)]
    assert progress_rows() == []

    query("UPDATE tests_alpha SET name = 'fixed' WHERE name = 'bad'")
    out = migrate("tests")
    assert "resuming" not in out
    assert query("SELECT name FROM tests_alpha ORDER BY id") == [("a+",), ("fixed+",)]
    assert applied() == ["0001_initial", "0002_temp"]


# Deferred constraints, and operations that delete data ------------------------------------


@pytest.mark.scenario("deferred_commit")
def test_a_deferred_constraint_failing_at_a_commit_is_checked_at_the_end(scenario):
    out = migrate("tests")
    assert (
        "pgmigrate: operation 3 of tests.0002_family: a deferred constraint failed at the "
        "commit; running operations 3 to 4 in one transaction" in out
    )
    assert query("SELECT parent_id FROM tests_child") == [(7,)]
    assert query("SELECT id FROM tests_parent") == [(7,)]
    assert applied() == ["0001_initial", "0002_family"]
    assert progress_rows() == []


@pytest.mark.scenario("destroys")
def test_an_operation_deleting_data_shares_its_transaction(scenario):
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (name) VALUES ('a'), ('b')")
    with pytest.raises(DataError) as raised:
        migrate("tests")
    report = str(raised.value)
    # Operation 2 failed, and operation 1 was rolled back with it.
    assert "not applied 1. Remove field name from Alpha" in report
    assert "FAILED      2. Raw SQL operation (rolled back)" in report
    assert "Nothing of it was applied" in report
    assert query("SELECT name FROM tests_alpha ORDER BY name") == [("a",), ("b",)]
    assert applied() == ["0001_initial"]
    assert progress_rows() == []

    query("INSERT INTO tests_gamma (name) VALUES ('ready')")
    migrate("tests")
    assert "name" not in columns("tests_alpha")
    assert query("SELECT count(*) FROM tests_alpha") == [(2,)]
    assert applied() == ["0001_initial", "0002_remove"]


@pytest.mark.scenario("lossy_alter")
def test_an_operation_altering_a_column_lossily_shares_its_transaction(scenario):
    """A column's type change loses what the cast drops (1.25 as an integer is 1): undone
    after a later failure, it would not give 1.25 back. It shares its transaction with the
    rest of the migration, as in Django, so the failure rolls it back."""
    migrate("tests", "0002")
    query("INSERT INTO tests_alpha (name, price) VALUES ('a', 1.25)")
    with pytest.raises(DataError) as raised:
        migrate("tests")
    assert "Nothing of it was applied" in str(raised.value)
    assert query("SELECT price FROM tests_alpha") == [(1.25,)]
    assert applied() == ["0001_initial", "0002_price"]
    migrate("tests", "0001", verbosity=0)  # undoing the deploy loses nothing
    query("INSERT INTO tests_gamma (name) VALUES ('ready')")
    migrate("tests")
    assert query("SELECT price FROM tests_alpha") == [(None,)]  # 0002 was undone


@pytest.mark.scenario("destroys")
@override_settings(
    PGMIGRATE_BLOCKING_ACTION=None,
    PGMIGRATE_STEP_ASIDE=False,
    PGMIGRATE_LOCK_TIMEOUT=0.1,
    PGMIGRATE_LOCK_RETRIES=1,
    PGMIGRATE_LOCK_RETRY_DELAY=0.01,
)
def test_a_lock_timeout_retry_names_the_operation_that_waited(scenario, sessions):
    """Operations 1 and 2 share a transaction (1 deletes data); operation 2 waits."""
    migrate("tests", "0001")
    query("INSERT INTO tests_gamma (name) VALUES ('ready')")
    sessions.append(Session().hold("tests_gamma", "ACCESS EXCLUSIVE"))
    run = MigrateThread("tests")
    with pytest.raises(CommandError) as raised:
        run.finish()
    out = run.output.getvalue()
    assert "operation 2 of tests.0002_remove hit the lock timeout (attempt 1 of 2)" in out
    assert "operation 2 of tests.0002_remove hit the lock timeout 2 times; giving up" in out
    assert "operation 1 of tests.0002_remove" not in out
    assert "FAILED      2. Raw SQL operation (rolled back)" in str(raised.value)
    assert "name" in columns("tests_alpha")


# Errors raised as they are ----------------------------------------------------------------


@pytest.fixture
def system_exit() -> Iterator[dict]:
    SYSTEM_EXIT["exit"] = True
    yield SYSTEM_EXIT
    SYSTEM_EXIT["exit"] = False


@pytest.mark.scenario("system_exit")
@pytest.mark.parametrize("atomic", [False, True], ids=["per-operation", "atomic"])
def test_system_exit_passes_unchanged(scenario, system_exit, atomic):
    migrate("tests", "0001")
    with override_settings(PGMIGRATE_ATOMIC=atomic), pytest.raises(SystemExit) as raised:
        migrate("tests")
    assert type(raised.value) is SystemExit
    assert raised.value.code == 3
    assert watcher_threads() == []
    # What committed before it stays; the RunPython's transaction was rolled back.
    assert ("flag" in columns("tests_alpha")) is not atomic
    assert applied() == ["0001_initial"]

    system_exit["exit"] = False
    migrate("tests")
    assert applied() == ["0001_initial", "0002_exit"]


@pytest.fixture
def raised_error() -> Iterator[dict]:
    RAISED.clear()
    yield RAISED
    RAISED.clear()


@pytest.mark.scenario("unicode_error")
def test_an_error_that_cannot_be_a_command_error_is_raised_itself(scenario, raised_error):
    with pytest.raises(UnicodeDecodeError) as caught:
        migrate("tests")
    assert caught.value is raised_error["error"]
    assert not isinstance(caught.value, CommandError)
    if sys.version_info >= (3, 11):
        (note,) = caught.value.__notes__
        assert note.startswith("pgmigrate: migration tests.0002_decode failed.\n")
        assert "FAILED      2. Raw Python operation (rolled back)" in note
        assert "Error: UnicodeDecodeError: 'utf-8' codec can't decode byte 0x78" in note


@pytest.mark.scenario("unicode_error")
def test_an_error_that_cannot_be_a_command_error_exits_1_on_the_command_line(scenario):
    result = manage("migrate", "tests", PGMIGRATE_TEST_SCENARIO="unicode_error")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "CommandError: pgmigrate: migration tests.0002_decode failed." in result.stderr
    assert "FAILED      2. Raw Python operation (rolled back)" in result.stderr


# migrate inside the caller's transaction --------------------------------------------------


@pytest.mark.scenario("partial")
def test_migrate_inside_a_transaction_runs_each_migration_in_a_savepoint(scenario):
    with transaction.atomic():
        with pytest.raises(DataError) as raised:
            migrate("tests")
        assert isinstance(raised.value, CommandError)
        assert "division by zero" in str(raised.value)
        # 0002's savepoint was rolled back: none of its operations is there; 0001 is.
        assert connection.in_atomic_block and not connection.needs_rollback
        assert "flag" not in columns("tests_alpha")
        assert "flag" not in columns("tests_beta")
        assert applied() == ["0001_initial"]
    assert applied() == ["0001_initial"]
    assert "flag" not in columns("tests_alpha")
    assert progress_rows() == []


# Backwards from a CONCURRENTLY statement that was in flight --------------------------------


@pytest.mark.scenario("unique_concurrently")
def test_migrating_backwards_drops_the_invalid_index_of_a_failed_build(scenario):
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (name) VALUES ('twice'), ('twice')")
    with pytest.raises(CommandError) as raised:
        migrate("tests")
    assert "an INVALID index alpha_name_uniq was left" in str(raised.value)
    assert index_state("alpha_name_uniq")[1] is False
    (row,) = progress_rows()
    assert row[:6] == ("tests", "0002_unique", 0, 1, "forwards", 0)
    assert row[6] is not None  # the CREATE INDEX CONCURRENTLY was in flight

    result = manage("migrate", "tests", "0001", PGMIGRATE_TEST_SCENARIO="unique_concurrently")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rolling back half-applied tests.0002_unique" in result.stdout
    assert index_state("alpha_name_uniq") is None
    assert progress_rows() == []
    assert applied() == ["0001_initial"]
