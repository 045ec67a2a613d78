"""Review of issue 13 (the lock plan, live progress): defects found by trying them as users
and attackers would, each a test on the real server."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DataError, connections
from django.test import override_settings

from pgmigrate.liveline import ERASE
from pgmigrate.lockplan import command as lockplan_command
from pgmigrate.lockplan import rules
from pgmigrate.lockplan.catalog import Catalog
from pgmigrate.lockplan.locks import classify
from pgmigrate.lockplan.model import LockMode
from tests import test_live_progress
from tests.helpers import Session, migrate, query
from tests.lockplan_observe import disagreements, observe
from tests.test_live_progress import Child, children, screen  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


def plan_document(**options: Any) -> dict[str, Any]:
    out = io.StringIO()
    call_command("pgmigrate", "--lock-plan", "--json", stdout=out, stderr=io.StringIO(), **options)
    return json.loads(out.getvalue())


def plan_text(verbosity: int) -> str:
    out = io.StringIO()
    call_command("pgmigrate", "--lock-plan", stdout=out, stderr=io.StringIO(), verbosity=verbosity)
    return out.getvalue()


def planned_operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    (migration,) = document["migrations"]
    return migration["operations"]


def locks(statement: dict[str, Any]) -> dict[str, str]:
    return {lock["relation"]: lock["mode"] for lock in statement["locks"]}


def held_modes(sql: str, table: str) -> set[str]:
    """The modes a session holds on ``table`` after running ``sql`` in a transaction
    (rolled back), as ``LockMode`` labels."""
    session = Session(application_name="review13-probe")
    try:
        session.connection.set_autocommit(False)
        session.execute(sql)
        rows = session.execute(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND relation = %s::regclass",
            [table],
        )
        session.release()
    finally:
        session.close()
    return {LockMode.from_pg_locks(mode).label for (mode,) in rows}


# Names from the migrations ----------------------------------------------------------------


@pytest.mark.scenario("review13")
def test_text_output_escapes_relation_names(scenario: str) -> None:
    """A ``db_table`` holding a terminal escape: the SQL and the notes were escaped, the
    relation names in the lock, creates and estimate lines were not."""
    migrate("tests", "0001", verbosity=0)
    for verbosity in (1, 2):
        text = plan_text(verbosity)
        assert "\x1b" not in text and "\x07" not in text, text
        assert "creates public.tests_esc\\x1b[2J\\x07\n" in text, text
        assert "ACCESS EXCLUSIVE on public.tests_esc\\x1b[2J\\x07 (created earlier" in text, text


@pytest.mark.scenario("review13")
def test_lock_table_is_classified(scenario: str) -> None:
    migrate("tests", "0001", verbosity=0)
    sql = "LOCK TABLE tests_gamma IN SHARE MODE"
    assert held_modes(sql, "tests_gamma") == {"SHARE"}  # what PostgreSQL takes
    (statement,) = planned_operations(plan_document())[2]["statements"]
    assert statement["known"] is True
    assert locks(statement) == {"public.tests_gamma": "SHARE"}


@pytest.mark.scenario("review13")
def test_data_modifying_with_query(scenario: str) -> None:
    """The plan said ``ACCESS SHARE on public.x`` (a table that does not exist) and missed
    the ``ROW EXCLUSIVE`` lock the UPDATE takes on tests_gamma: unknown would do, a wrong
    answer does not."""
    migrate("tests", "0001", verbosity=0)
    effect, observed = observe(
        "WITH x AS (UPDATE tests_gamma SET name = 'a' RETURNING id) SELECT count(*) FROM x"
    )
    assert not effect.known or disagreements(effect, observed) == []


@pytest.mark.scenario("review13")
def test_set_unlogged_changes_the_owned_sequence(scenario: str) -> None:
    """PostgreSQL 15+ makes the identity sequence of the table unlogged with it (ACCESS
    EXCLUSIVE, a new relfilenode); on 14 and before, nothing to see."""
    migrate("tests", "0001", verbosity=0)
    effect, observed = observe("ALTER TABLE tests_alpha SET UNLOGGED")
    assert not effect.known or disagreements(effect, observed) == []


@pytest.mark.scenario("review13")
def test_alter_table_if_exists_of_a_missing_table(scenario: str) -> None:
    migrate("tests", "0001", verbosity=0)
    effect, observed = observe("ALTER TABLE IF EXISTS tests_nope ADD COLUMN a int")
    assert not effect.known or disagreements(effect, observed) == []


@pytest.fixture
def outside_schema() -> Iterator[None]:
    """The schema of the ``review13_names`` scenario's table."""
    query("CREATE SCHEMA review13")
    yield
    query("DROP SCHEMA review13 CASCADE")


@pytest.mark.scenario("review13_names")
def test_search_path_set_by_run_sql(scenario: str, outside_schema: None) -> None:
    """``SET search_path = review13, public; CREATE INDEX ON "Outside Mixed"``: the index
    is built on review13's table, not on a ``public`` one that does not exist."""
    migrate("tests", "0001", verbosity=0)
    _, build = planned_operations(plan_document())[0]["statements"]
    assert locks(build) == {"review13.Outside Mixed": "SHARE"}
    assert build["sizes"]["review13.Outside Mixed"]["new"] is False


# Operations pgmigrate runs in one transaction -----------------------------------------------


def _transactions_run() -> list[list[str]]:
    """Run ``migrate``; the schema statements of each transaction that records progress
    (pgmigrate commits an operation's statements with its record in pgmigrate_progress or,
    for the last one, django_migrations)."""
    connection = connections["default"]
    units: list[list[str]] = [[]]

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if connection.in_atomic_block:
            if "pgmigrate_progress" in sql or "django_migrations" in sql:
                if units[-1]:
                    units.append([])
            elif not sql.lstrip().upper().startswith("SELECT"):  # Django's introspection
                units[-1].append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        migrate("tests", verbosity=0)
    return [unit for unit in units if unit]


@pytest.mark.scenario("review13_units")
def test_plan_shows_the_statements_and_transactions_migrate_runs(scenario: str) -> None:
    """``RenameModel`` renames what the deferred SQL of the ``CreateModel`` before it refers
    to (the many-to-many table): pgmigrate runs both in one transaction, the deferred SQL
    last, named after the rename; and a removed field keeps its transaction open over the
    next operation. The plan showed the deferred SQL with the old names (SQL that never
    runs) and said each operation had a transaction of its own."""
    migrate("tests", "0001", verbosity=0)
    operations = planned_operations(plan_document())
    planned: dict[str, list[str]] = {}
    for operation in operations:
        statements = planned.setdefault(operation["transaction"], [])
        statements.extend(statement["sql"] for statement in operation["statements"])
    # The same statements as sqlmigrate's (one a line there, its deferred SQL at the end).
    out = io.StringIO()
    call_command("sqlmigrate", "tests", "0002", stdout=out)
    written = [
        line.removesuffix(";")
        for line in out.getvalue().splitlines()
        if line and not line.startswith("--") and line not in ("BEGIN;", "COMMIT;")
    ]
    assert sorted(sql for unit in planned.values() for sql in unit) == sorted(written)
    assert list(planned.values()) == _transactions_run()
    assert [operation["transaction"].split(":")[0] for operation in operations] == [
        "one transaction with operations 1 to 2",
        "one transaction with operations 1 to 2",
        "one transaction with operations 3 to 4",
        "one transaction with operations 3 to 4",
    ]


@pytest.mark.scenario("review13_units")
def test_renamed_new_table_counts_as_new(scenario: str) -> None:
    """The many-to-many table the plan creates, renamed by ``RenameModel``, is still empty:
    no rule (and no CI failure) for its keys and indexes, whatever the threshold."""
    migrate("tests", "0001", verbosity=0)
    with override_settings(PGMIGRATE_LOCK_PLAN_THRESHOLD=0):
        document = plan_document()
    renamed = "public.tests_labelled_alphas"
    on_it = [
        statement
        for operation in planned_operations(document)
        for statement in operation["statements"]
        if renamed in locks(statement)
    ]
    assert len(on_it) == 6, on_it  # RENAME COLUMN, 3 constraints, 2 indexes
    assert all(statement["sizes"][renamed]["new"] for statement in on_it), on_it
    assert document["broken"] == []


@pytest.mark.scenario("review13_renamed")
def test_table_renamed_earlier_in_the_plan_is_measured(scenario: str, sessions: list) -> None:
    """``RenameModel`` then ``AddIndex`` under the new name: the index build's table was of
    unknown size (so over every threshold: pgmigrate.L003 failed CI for a table of a few
    kB) and nobody was in its way, though the table, under its old name, has a writer."""
    migrate("tests", "0001", verbosity=0)
    query("INSERT INTO tests_alpha (name) SELECT 'row ' || g FROM generate_series(1, 1000) g")
    writer = Session(application_name="review13-writer").hold("tests_alpha", "ROW EXCLUSIVE")
    sessions.append(writer)
    document = plan_document()
    writer.release()
    (build,) = planned_operations(document)[1]["statements"]
    renamed = "public.tests_omega"
    assert locks(build) == {renamed: "SHARE"}
    assert build["sizes"][renamed]["table_bytes"] > 0
    assert build["estimate"]["seconds"] is not None
    assert [holder["pid"] for holder in build["holders"]] == [writer.pid]
    assert document["broken"] == []


@pytest.mark.scenario("lock_plan")
@pytest.mark.parametrize("table", ["django_migrations", "pgmigrate_progress"])
def test_plan_does_not_wait_forever_on_its_own_reads(
    scenario: str, sessions: list, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another session holds ACCESS EXCLUSIVE on a table the plan reads (maintenance, a
    schema change of the table): the plan waited for it without end. It gives up after
    ``LOCK_WAIT`` with one CommandError line, and leaves the session's lock_timeout as it
    was."""
    monkeypatch.setattr(lockplan_command, "LOCK_WAIT", 0.2)
    migrate("tests", "0001", verbosity=0)
    holder = Session(application_name="review13-maintenance").hold(table, "ACCESS EXCLUSIVE")
    sessions.append(holder)
    before = query("SHOW lock_timeout")
    try:
        with pytest.raises(CommandError, match="gave up waiting for a lock on a table it reads"):
            plan_text(1)
    finally:
        holder.release()
    assert query("SHOW lock_timeout") == before
    assert "Lock plan of database 'default'" in plan_text(1)


@pytest.mark.scenario("statement_list")
def test_statements_a_stopped_run_committed_are_not_planned(scenario: str) -> None:
    """A RunSQL list in an ``atomic = False`` migration stopped at its third statement:
    migrate resumes there, never running the first two again; the plan listed and judged
    all three."""
    migrate("tests", "0001", verbosity=0)
    with pytest.raises(DataError):
        migrate("tests")  # SELECT 1 / 0
    (operation,) = planned_operations(plan_document())
    assert operation["committed"] == 2
    assert [statement["sql"] for statement in operation["statements"]] == ["SELECT 1 / 0"]
    assert "statements 1 to 2 committed by an earlier run: not run again" in plan_text(1)


@pytest.mark.scenario("review13")
@pytest.mark.parametrize(
    ("sql", "advice"),
    [
        ("ALTER TABLE tests_alpha ADD CONSTRAINT alpha_name_uniq UNIQUE (name)", "USING INDEX"),
        (
            "ALTER TABLE tests_alpha DROP CONSTRAINT tests_alpha_pkey, ADD PRIMARY KEY (id, name)",
            "USING INDEX",
        ),
        (
            "ALTER TABLE tests_alpha ADD CONSTRAINT alpha_excl EXCLUDE USING btree (name WITH =)",
            None,
        ),
        ("ALTER TABLE tests_alpha ADD CONSTRAINT alpha_check CHECK (id > 0)", "NOT VALID"),
    ],
)
def test_safer_way_of_a_key_is_not_not_valid(scenario: str, sql: str, advice: str | None) -> None:
    """A unique key, a primary key or an exclusion constraint cannot be added NOT VALID
    (only CHECK and FOREIGN KEY can): the advice for the key that replaces a primary key
    said to; a unique key had none, though USING INDEX is the safer way."""
    migrate("tests", "0001", verbosity=0)
    (effect,) = classify(sql, Catalog("default"))
    # No size: the table counts as over the threshold.
    (verdict,) = rules.judge(effect, {}, rules.resolve({}, 0))
    assert verdict.rule == rules.L002.id
    if advice is None:
        assert verdict.safer is None
    else:
        assert advice in (verdict.safer or ""), verdict.safer
    if advice != "NOT VALID":
        assert "NOT VALID" not in (verdict.safer or ""), verdict.safer


# Live progress ----------------------------------------------------------------------------


@pytest.mark.scenario("live")
def test_no_live_line_over_a_wrapped_line(
    scenario: str,
    children: list[Child],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal narrower than Django's ``  Applying tests.0004_sleep...`` (30
    characters) that line has wrapped: a carriage return goes back to its last row only, so
    each redraw wrote the line's start again below its first row (and the progress itself
    was cut away). Nothing is drawn in place then."""
    migrate("tests", "0003", verbosity=0)  # an empty table: quick index builds
    monkeypatch.setattr(test_live_progress, "COLUMNS", 24)
    child = Child("tests", "0004", terminal=True)  # a 0.6 s statement
    children.append(child)
    output = child.finish()
    assert ERASE not in output, output
    assert output.endswith("  Applying tests.0004_sleep... OK\n"), output


#: A project's logging that prints pgmigrate's events on the terminal (as a console handler
#: on the root logger does).
CONSOLE_LOGGING = {
    "LOGGING": {
        "version": 1,
        "handlers": {"console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}},
        "loggers": {"pgmigrate": {"handlers": ["console"], "level": "INFO"}},
    }
}


@pytest.mark.scenario("live")
def test_events_logged_to_the_terminal_leave_no_live_text(
    scenario: str,
    children: list[Child],  # noqa: F811
) -> None:
    """Each plain ``statement_progress`` event is a log record: a console handler wrote it
    right after the live text drawn on the terminal, so that text stayed on the screen for
    good (``Applying ... statement running for 0.2 s ...pgmigrate: statement ...``). The
    live line is taken away before an event is logged."""
    migrate("tests", "0003", verbosity=0)  # an empty table: quick index builds
    settings = json.dumps(CONSOLE_LOGGING)
    child = Child("tests", "0004", terminal=True, PGMIGRATE_TEST_SETTINGS=settings)
    children.append(child)
    output = child.finish()
    assert "pgmigrate: statement running for" in output, output  # events were logged
    assert "... statement running for" in output, output  # and the line drawn
    shown = screen(output)
    assert not any("... statement running for" in line for line in shown), shown
    assert "  Applying tests.0004_sleep... OK" in shown, shown
