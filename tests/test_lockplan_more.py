"""``--lock-plan`` beyond ``tests/test_lockplan.py``: targets ``migrate`` refuses, operations
without SQL, transactions that span operations, who is in the way (serializable readers,
sessions waiting in the queue, prepared transactions, autovacuum, roles the planning role
cannot see) and the rules' advice for rewrites and scans."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management.base import CommandError, SystemCheckError
from django.db import OperationalError, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.test import override_settings

from pgmigrate import config, protection
from pgmigrate.db import atomic
from pgmigrate.errors import sqlstate
from pgmigrate.lockplan import holders, rules, sizes
from pgmigrate.lockplan.catalog import Catalog
from pgmigrate.lockplan.locks import classify
from pgmigrate.lockplan.model import LockMode
from pgmigrate.lockplan.plan import PlannedStatement, Planner, held_until_commit, pending
from pgmigrate.progress import Progress, ProgressRecorder
from tests import roles
from tests.helpers import (
    Session,
    is_waiting_on_lock,
    manage,
    migrate,
    query,
    slow_autovacuum_on_beta,
    wait_until,
)
from tests.scenarios import LOCK_PLAN_DO
from tests.test_lockplan import (
    ALPHA,
    BETA,
    L001,
    L002,
    L003,
    L004,
    L005,
    SMALL,
    lock_plan,
    locks,
    operations,
    plan_json,
    rows,
    rule_ids,
    statements,
    token_statement,
)

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "other", "migrator"]),
    pytest.mark.scenario("lock_plan"),
]

#: The ``lock_plan`` scenario's table alpha, unqualified.
ALPHA_TABLE = "tests_alpha"
#: A table no migration creates: the plan knows nothing of its size.
LATER = "public.tests_later"


@pytest.fixture
def planned(scenario: str) -> str:
    """The ``lock_plan`` scenario with 0001 applied and rows in alpha and beta."""
    rows()
    return scenario


def _holders(document: dict[str, Any]) -> list[dict[str, Any]]:
    return token_statement(document)["holders"]


# Targets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pgmigrate",), "App 'pgmigrate' does not have migrations."),
        (("tests", "000"), "More than one migration matches '000' in app 'tests'"),
        (("tests", "0099"), "Cannot find a migration matching '0099' from app 'tests'."),
        (("tests", "zero"), "this target unapplies tests.0001_initial."),
    ],
    ids=["no-migrations", "ambiguous", "unknown", "zero"],
)
def test_targets_migrate_refuses(scenario: str, args: tuple[str, ...], message: str) -> None:
    migrate("tests", "0001", verbosity=0)
    with pytest.raises(CommandError) as raised:
        lock_plan(*args)
    assert message in str(raised.value)


@pytest.mark.scenario("lock_plan_conflict")
def test_conflicting_leaves_are_refused_as_migrate_does(scenario: str) -> None:
    with pytest.raises(CommandError) as raised:
        lock_plan()
    message = str(raised.value)
    assert message.startswith("Conflicting migrations detected; multiple leaf nodes"), message
    assert "0002_left" in message and "0002_right" in message and " in tests)" in message
    assert "makemigrations --merge" in str(raised.value)


@pytest.mark.scenario("squash_before")
def test_squashed_migration_partly_applied_plans_what_is_left(scenario: str) -> None:
    """0002 applied without the squash; then the squash of 0002 and 0003 comes: as target
    it stands for the last migration it replaces (Django's ``migrate``)."""
    migrate("tests", "0002", verbosity=0)
    with override_settings(MIGRATION_MODULES={"tests": "tests.scenarios.squash_after"}):
        document = plan_json("tests", "0002_squashed")
    assert [m["name"] for m in document["migrations"]] == ["0003_note"]


# What an earlier run left -----------------------------------------------------------------


@pytest.mark.parametrize("done", [2, 99], ids=["edited", "too-many"])
def test_progress_of_other_operations_is_not_trusted(planned: str, done: int) -> None:
    """A progress row whose fingerprint is not the migration's first operations (edited
    since) or that counts more operations than it has: migrate refuses to resume it, and
    the plan shows every operation to run."""
    connection = connections["default"]
    migration = MigrationLoader(connection).get_migration("tests", "0002_plan")
    recorder = ProgressRecorder(connection)
    recorder.load()
    recorder.save(migration, Progress(done=done, total=7, fingerprint="edited"))
    (found,) = [m for m in plan_json()["migrations"] if m["name"] == "0002_plan"]
    assert found["progress"] is None
    assert not any(operation["applied"] for operation in found["operations"])
    assert statements(found["operations"][0])


@pytest.mark.parametrize(
    ("setting", "value", "check_id", "message"),
    [
        (
            "PGMIGRATE_LOCK_PLAN_RULES",
            [L001],
            "pgmigrate.E017",
            "must be a dict of rule IDs to a level or a dict, not",
        ),
        (
            "PGMIGRATE_LOCK_PLAN_RULES",
            {L001: ["off"]},
            "pgmigrate.E017",
            f"[{L001!r}] must be a level (off, warning, error) or a dict",
        ),
        (
            "PGMIGRATE_LOCK_PLAN_RULES",
            {L001: {"level": "off", "bytes": 5}},
            "pgmigrate.E017",
            f'[{L001!r}] must be a level (off, warning, error) or a dict with "level"',
        ),
        (
            "PGMIGRATE_LOCK_PLAN_ALLOW",
            ["tests.0002_plan"],
            "pgmigrate.E018",
            'must be a dict of "app_label.migration_name" to lists of rule IDs, not',
        ),
    ],
    ids=["rules-list", "rule-list", "rule-key", "allow-list"],
)
def test_settings_of_the_wrong_shape(
    planned: str, setting: str, value: Any, check_id: str, message: str
) -> None:
    """One system check error, or one CommandError line when the checks are skipped."""
    with override_settings(**{setting: value}):
        with pytest.raises(SystemCheckError, match=check_id):
            lock_plan(skip_checks=False)
        with pytest.raises(CommandError) as raised:
            lock_plan()
    assert str(raised.value).startswith(f"pgmigrate: {setting}")
    assert message in str(raised.value)


# Operations and transactions ----------------------------------------------------------


@pytest.mark.scenario("lock_plan_more")
def test_operations_without_sql_and_unknown_tables(scenario: str) -> None:
    migrate("tests", "0001", verbosity=0)
    document = plan_json("tests", "0002")
    create, update, remove, later, options, _ = operations(document, "0002_statements")
    # The foreign key is made with the new model: the SQL after it runs outside a
    # transaction, so nothing waits for it (pgmigrate.run).
    first, *deferred = statements(create)
    assert first["deferred"] is False and first["sql"].startswith('CREATE TABLE "tests_epsilon"')
    assert deferred and all(statement["deferred"] for statement in deferred)
    assert update["transaction"] == "no transaction: statement by statement"
    # The removed field's transaction lasts up to the SQL that runs outside one.
    assert remove["transaction"] == "its own transaction"
    (statement,) = statements(later)
    assert statement["sizes"] == {}
    assert statement["estimate"]["seconds"] is None
    assert statement["estimate"]["basis"] == f"rewrites {LATER}, size unknown"
    assert (options["kind"], statements(options)) == ("none", [])
    text = lock_plan("tests", "0002")
    assert f"       ACCESS EXCLUSIVE on {LATER}\n" in text
    assert "holds back reads and writes for an unknown time (rewrites " in text
    assert "  5. Change Meta options on Gamma  [its own transaction]\n" in text
    assert "     no SQL (changes Django's state only)\n" in text


@pytest.mark.scenario("lock_plan_more")
def test_operation_that_cannot_be_written_as_sql(scenario: str) -> None:
    """A custom operation with ``reduces_to_sql = False`` does something to the database
    that SQL cannot show (``sqlmigrate`` prints "MIGRATION NOW PERFORMS OPERATION THAT
    CANNOT BE WRITTEN AS SQL"), as RunPython does: its locks are unknown, not none."""
    migrate("tests", "0001", verbosity=0)
    state = operations(plan_json("tests", "0002"), "0002_statements")[5]
    assert state["description"] == "Remember something"
    (statement,) = statements(state)
    assert statement["known"] is False
    assert {verdict["rule"] for verdict in statement["verdicts"]} & {L004, L005}


@pytest.mark.scenario("lock_plan_more")
@pytest.mark.parametrize("atomic", [False, True], ids=["per-operation", "PGMIGRATE_ATOMIC"])
def test_deferred_sql_under_an_operation_without_sql(scenario: str, atomic: bool) -> None:
    """The deferred SQL of a new model (its foreign key, its partial unique constraint,
    named in the model) and SQL deferred as a plain string run after the last operation
    that changes the model, in its transaction (pgmigrate.run): under an operation with no
    SQL of its own, named as written."""
    query(f"CREATE TABLE {LATER} ()")  # for 0002's SQL (dropped with the tests' tables)
    migrate("tests", "0002", verbosity=0)
    with override_settings(PGMIGRATE_ATOMIC=atomic):
        create, raw, options = operations(plan_json(), "0003_atomic")
    words = (
        "the migration's transaction (PGMIGRATE_ATOMIC)"
        if atomic
        else "one transaction with operations 1 to 3: locks held until it commits"
    )
    assert create["transaction"] == raw["transaction"] == options["transaction"] == words
    assert [s["deferred"] for s in statements(create)] == [False]
    assert (raw["kind"], statements(raw)) == ("sql", [])  # its SQL is deferred
    assert options["kind"] == "sql"
    deferred = statements(options)
    assert all(statement["deferred"] for statement in deferred)
    sql = [statement["sql"] for statement in deferred]
    assert any("FOREIGN KEY" in text for text in sql), sql
    assert any('UNIQUE INDEX "zeta_alpha_uniq"' in text for text in sql), sql
    assert 'CREATE INDEX "zeta_raw" ON "tests_zeta" ("alpha_id")' in sql


def test_classifier_that_fails_makes_the_statement_unknown(scenario: str) -> None:
    """A statement the classifier trips on is planned as unknown, with the error; the
    rest of the plan goes on."""
    migrate("tests", "0001", verbosity=0)

    def fails_on_updates(sql: str, catalog: Catalog) -> list[Any]:
        if sql.startswith("UPDATE"):
            raise RecursionError("too deep")
        return classify(sql, catalog)

    connection = connections["default"]
    executor = MigrationExecutor(connection)
    planner = Planner(
        "default",
        fails_on_updates,
        policy=holders.Policy(None, {}, step_aside=True),
        settings=rules.resolve({}, config.DEFAULT_LOCK_PLAN_THRESHOLD),
        allowed={},
    )
    plan = planner.plan(executor, pending(executor, "tests", "0002"))
    by_kind = {
        statement.effect.kind: statement
        for _, _, statement in plan.statements()
        if statement.effect
    }
    failed = by_kind["unclassified"]
    assert failed.sql.startswith("UPDATE tests_gamma SET name = name")
    assert failed.effect is not None and failed.effect.notes == (
        "the classifier failed: RecursionError: too deep",
    )
    assert [verdict.rule for verdict in failed.verdicts] == [rules.L004.id]
    assert "CREATE TABLE" in by_kind


# Who is in the way ------------------------------------------------------------------------


def test_serializable_reader_counts_once(planned: str, sessions: list[Session]) -> None:
    """A serializable transaction that read alpha holds its ACCESS SHARE lock and a
    predicate lock (``SIReadLock``, not a table-level lock mode) on it: one holder."""
    reader = Session(application_name="serializable-reader")
    sessions.append(reader)
    reader.connection.set_autocommit(False)
    reader.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    reader.execute(f"SELECT count(*) FROM {ALPHA_TABLE}")
    oid = query("SELECT %s::regclass::oid::int8", [ALPHA_TABLE])[0][0]
    modes = {
        row["lock_mode"] for row in holders.read("default", [oid]) if row["pid"] == reader.pid
    }
    assert modes == {"AccessShareLock", "SIReadLock"}
    with pytest.raises(ValueError, match="not a table-level lock mode: 'SIReadLock'"):
        LockMode.from_pg_locks("SIReadLock")
    (holder,) = _holders(plan_json())
    assert (holder["pid"], holder["mode"]) == (reader.pid, "ACCESS SHARE")
    reader.release()


@override_settings(PGMIGRATE_BLOCKING_ACTION="pgmigrate.Cancel")
def test_cancel_ends_only_the_session_running_a_query(
    planned: str, sessions: list[Session]
) -> None:
    """Under Cancel, the session idle in its transaction holding ACCESS EXCLUSIVE is left
    (cancelling frees no lock); the one waiting in the queue behind it, running its LOCK
    TABLE, would be cancelled."""
    holder = Session(application_name="idle-holder").hold(ALPHA_TABLE, "ACCESS EXCLUSIVE")
    waiter = Session(application_name="queued-reader")
    sessions += [holder, waiter]
    waiter.connection.set_autocommit(False)
    thread, outcome = roles.run_in_thread(
        lambda: waiter.execute(f"LOCK TABLE {ALPHA_TABLE} IN ACCESS SHARE MODE")
    )
    try:
        wait_until(lambda: is_waiting_on_lock(waiter.pid), what="the reader waits in the queue")
        document = plan_json()
        text = lock_plan()
    finally:
        holder.release()
        thread.join(10)
    assert not thread.is_alive() and "error" not in outcome, outcome
    waiter.release()
    found = {h["pid"]: h for h in _holders(document)}
    assert set(found) == {holder.pid, waiter.pid}
    idle, queued = found[holder.pid], found[waiter.pid]
    assert (idle["granted"], idle["would"], idle["then"]) == (True, "leave", "step aside")
    assert idle["reason"] == "Cancel: it runs no query, cancelling frees no lock"
    assert (queued["granted"], queued["would"], queued["then"]) == (False, "cancel", None)
    assert queued["state"] == "active"
    assert (
        f"in the way now: pid {waiter.pid} (application 'queued-reader', user "
        f"{queued['usename']!r}, active) awaits ACCESS SHARE: cancel (Cancel)" in text
    )


@override_settings(PGMIGRATE_BLOCKING_ACTION="tests.actions.Paging")
def test_custom_action_decides(planned: str, sessions: list[Session]) -> None:
    reader = Session(application_name="app-reader").hold(ALPHA_TABLE)
    sessions.append(reader)
    (holder,) = _holders(plan_json())
    reader.release()
    assert (holder["pid"], holder["would"], holder["then"]) == (reader.pid, "custom", None)
    assert holder["reason"] == "Paging decides"


@pytest.fixture
def prepared_reader(planned: str) -> Iterator[str]:
    """A prepared transaction that read alpha; rolled back afterwards."""
    if not roles.prepared_transactions_allowed():
        pytest.skip("the server allows no prepared transaction")
    gid = f"{roles.GID_PREFIX}-lock-plan-more"
    roles.prepare(gid, user=connections["default"].settings_dict["USER"], table=ALPHA_TABLE)
    yield gid
    roles.rollback_prepared()


def test_prepared_transaction_in_the_text(prepared_reader: str) -> None:
    text = lock_plan()
    assert (
        f"in the way now: prepared transaction {prepared_reader!r} holds ACCESS SHARE: leave, "
        "then step aside (a prepared transaction: only COMMIT PREPARED or ROLLBACK PREPARED "
        "ends it)" in text
    )


def test_prepared_transaction_gone_between_reads(prepared_reader: str) -> None:
    """The locks of a prepared transaction committed after ``pg_locks`` was read and before
    ``pg_prepared_xacts`` was: no pid, no gid. Nobody is in the way any more."""
    oid = query("SELECT %s::regclass::oid::int8", [ALPHA_TABLE])[0][0]
    policy = holders.Policy(None, {}, step_aside=True)
    read = holders.read("default", [oid])
    (row,) = [row for row in read if row["gid"] == prepared_reader]
    assert row["pid"] is None
    found = holders.conflicting([row], oid, ALPHA, LockMode.ACCESS_EXCLUSIVE, policy)
    assert [holder.gid for holder in found] == [prepared_reader]
    gone = {**row, "gid": None, "prepared_owner": None, "prepared_age": None}
    assert holders.conflicting([gone], oid, ALPHA, LockMode.ACCESS_EXCLUSIVE, policy) == []


def test_autovacuum_in_the_way_is_waited_for(planned: str) -> None:
    """PostgreSQL cancels an autovacuum worker a lock request waits behind: the migration
    keeps its place in the queue (no stepping aside) for it."""
    with slow_autovacuum_on_beta() as worker:
        document = plan_json()
    (build,) = statements(operations(document, "0002_plan")[2])
    (holder,) = [h for h in build["holders"] if h["pid"] == worker]
    assert (holder["mode"], holder["would"], holder["then"]) == (
        "SHARE UPDATE EXCLUSIVE",
        "protected",
        "wait",
    )
    assert holder["reason"].endswith("; PostgreSQL cancels it after deadlock_timeout")
    assert holder["reason"].startswith("always protected: ")


@pytest.fixture
def least_privilege(scenario: str) -> Iterator[None]:
    with roles.created():
        roles.apply_0001("migrator")
        yield


@override_settings(PGMIGRATE_PROTECTED={"query": ["*pg_dump*"]})
def test_hidden_session_is_undecidable(least_privilege: None, sessions: list[Session]) -> None:
    """Planned as a role without ``pg_read_all_stats``: the query of another role's session
    is hidden, so whether ``PGMIGRATE_PROTECTED`` protects it cannot be told."""
    reader = Session(user=roles.APP, application_name="app-reader").hold(ALPHA_TABLE)
    sessions.append(reader)
    (holder,) = _holders(plan_json(database="migrator"))
    text = lock_plan(database="migrator")
    reader.release()
    assert (holder["pid"], holder["state"], holder["would"]) == (
        reader.pid,
        None,
        "undecidable",
    )
    assert holder["reason"] == "protection undecidable: PostgreSQL hides query"
    hidden = "(application 'app-reader', user 'pgm_app', state hidden) holds ACCESS SHARE"
    assert hidden in text, text


# Sizes ----------------------------------------------------------------------------------


def test_sizes_give_up_only_on_a_lock_timeout(planned: str, sessions: list[Session]) -> None:
    """A statement timeout shorter than the sizes' lock timeout ends the size read with
    another error: it is not taken for a locked table (no relpages), it is raised; the
    command says so in one line (it raised the database error: a traceback)."""
    holder = Session(application_name="alterer").hold(ALPHA_TABLE, "ACCESS EXCLUSIVE")
    sessions.append(holder)
    oid = query("SELECT %s::regclass::oid::int8", [ALPHA_TABLE])[0][0]
    query("SET statement_timeout = '20ms'")
    try:
        with pytest.raises(OperationalError) as raised:
            sizes.read("default", [oid])
        assert sqlstate(raised.value) == "57014"  # query_canceled
        with pytest.raises(CommandError) as stopped:
            lock_plan()
    finally:
        query("RESET statement_timeout")
        holder.release()
    assert str(stopped.value) == (
        "pgmigrate: --lock-plan stopped on database 'default': "
        "canceling statement due to statement timeout. Nothing was planned."
    )
    assert sizes.read("default", [oid])[oid].exact is True


# Rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "rule", "advice"),
    [
        (
            "ALTER TABLE tests_beta ALTER COLUMN note SET NOT NULL",
            L002,
            "add CHECK (column IS NOT NULL) NOT VALID",
        ),
        (
            "ALTER TABLE tests_alpha ALTER COLUMN name TYPE varchar(50)",
            L001,
            "add a new column of the new type",
        ),
        ("ALTER TABLE tests_alpha SET LOGGED", L001, "in a separate migration, at a quiet time"),
    ],
    ids=["set-not-null", "type", "rewrite"],
)
def test_advice_for_scans_and_rewrites(planned: str, sql: str, rule: str, advice: str) -> None:
    query("ALTER TABLE tests_beta ADD COLUMN note text")
    (effect,) = classify(sql, Catalog("default"))
    oids = {name: query("SELECT %s::regclass::oid::int8", [name])[0][0] for name in (ALPHA, BETA)}
    measured = sizes.read("default", oids.values())
    by_name = {name: measured[oid] for name, oid in oids.items()}
    (verdict,) = rules.judge(effect, by_name, rules.resolve({}, 0))  # none for a sequence
    assert verdict.rule == rule
    assert advice in (verdict.safer or ""), verdict.safer
    # Over no threshold under the default (10 MiB): the small tables break no rule.
    default = rules.resolve({}, config.DEFAULT_LOCK_PLAN_THRESHOLD)
    assert rules.judge(effect, by_name, default) == []


def test_sequence_rewrite_is_no_table_rewrite(planned: str) -> None:
    """``ALTER SEQUENCE`` writes the sequence anew under SHARE ROW EXCLUSIVE: inserts
    (``nextval``) wait for an instant only (a sequence is one page), and no rule is broken
    however small the threshold."""
    (effect,) = classify("ALTER SEQUENCE tests_alpha_id_seq INCREMENT BY 2", Catalog("default"))
    assert effect.rewrites == ("public.tests_alpha_id_seq",)
    assert effect.strongest is LockMode.SHARE_ROW_EXCLUSIVE
    assert rules.judge(effect, {}, rules.resolve({}, 0)) == []
    estimate = sizes.estimate(effect, {})
    assert (estimate.holds_back, estimate.seconds) == ("writes", 0.0)


@pytest.mark.parametrize(
    ("total_bytes", "duration"),
    [
        (100 * 1024**2, "for ~2 s"),  # rewritten at REWRITE_BYTES_PER_SECOND (50 MiB/s)
        (20 * 1024**2, "for ~0.40 s"),
        (30 * 1024**3, "for ~10 min"),
        (500 * 1024**3, "for ~2.8 h"),
        (100 * 1024, "for under 0.01 s"),
    ],
)
def test_estimate_of_a_rewrite_grows_with_the_table(
    planned: str, total_bytes: int, duration: str
) -> None:
    """The time a type change holds the table is its size (with its indexes) over the
    rewrite speed: from a fraction of a second to hours, in words for people."""
    (effect,) = classify(
        "ALTER TABLE tests_alpha ALTER COLUMN name TYPE varchar(50)", Catalog("default")
    )
    size = sizes.RelationSize(
        ALPHA, rows=None, table_bytes=total_bytes // 2, total_bytes=total_bytes
    )
    estimate = sizes.estimate(effect, {ALPHA: size})
    assert estimate.describe() == (
        f"holds back reads and writes {duration} "
        f"(rewrites {ALPHA}, {sizes.describe_bytes(total_bytes)})"
    )


def test_locks_are_held_until_the_shared_transaction_commits() -> None:
    """Operations that share a transaction hold their locks until it commits: a statement's
    estimate counts the later statements' work too (unknown once one of them is)."""

    def planned(seconds: float | None, holds_back: str = "reads and writes") -> PlannedStatement:
        estimate = sizes.Estimate(holds_back, seconds, basis="rewrites t")
        return PlannedStatement("SQL", None, estimate=estimate)

    rewrite, build, key = planned(3.0), planned(2.0, "writes"), planned(0.0, "writes")
    held_until_commit([rewrite, build, key])
    assert [s.estimate.after for s in (rewrite, build, key) if s.estimate] == [2.0, 0.0, 0.0]
    assert rewrite.estimate is not None and rewrite.estimate.describe() == (
        "holds back reads and writes for ~5 s: ~3 s for its own work (rewrites t), then ~2 s "
        "more until its transaction commits"
    )
    assert build.estimate is not None
    assert build.estimate.describe() == "holds back writes for ~2 s (rewrites t)"

    before, code = planned(1.0), planned(None, "unknown")
    held_until_commit([before, code])
    assert before.estimate is not None and before.estimate.after is None
    assert before.estimate.describe().startswith("holds back reads and writes for an unknown time")


@pytest.mark.scenario("lock_plan_more")
@pytest.mark.parametrize("atomic", [False, True], ids=["per-operation", "PGMIGRATE_ATOMIC"])
def test_shared_transaction_estimates_reach_its_commit(scenario: str, atomic: bool) -> None:
    """In the plan, each statement of a shared transaction (operations sharing one, or the
    whole migration with ``PGMIGRATE_ATOMIC``) says how long the transaction goes on after
    it (JSON ``after_seconds``): the last one's is 0, an earlier one's at least that."""
    query(f"CREATE TABLE {LATER} ()")  # for 0002's SQL (dropped with the tests' tables)
    migrate("tests", "0002", verbosity=0)
    with override_settings(PGMIGRATE_ATOMIC=atomic):
        shared = [
            statement["estimate"]
            for operation in operations(plan_json(), "0003_atomic")
            for statement in statements(operation)
        ]
    assert len(shared) > 1 and all(shared)
    assert shared[-1]["after_seconds"] == 0
    assert all(e["after_seconds"] is None or e["after_seconds"] >= 0 for e in shared)


# search_path across operations --------------------------------------------------------------

#: The schema the ``lock_plan_path`` scenario's ``SET search_path`` puts first.
OTHER = "tests_other"


@pytest.fixture
def shadowed(scenario: str) -> Iterator[None]:
    """0001 applied; schema ``tests_other`` with a table named as alpha, with rows. The
    connection a migration ran on keeps its ``search_path``: closed at the end."""
    migrate("tests", "0001", verbosity=0)
    query(f"CREATE SCHEMA {OTHER}")
    query(f"CREATE TABLE {OTHER}.tests_alpha (id integer, name text)")
    query(f"INSERT INTO {OTHER}.tests_alpha SELECT g, 'shadow' FROM generate_series(1, 50) g")
    try:
        yield
    finally:
        connections["default"].close()
        query(f"DROP SCHEMA {OTHER} CASCADE")


def _planned_locks(document: dict[str, Any], migration: str) -> list[dict[str, str]]:
    return [
        {lock["relation"]: lock["mode"] for lock in statement["locks"]}
        for operation in operations(document, migration)
        for statement in statements(operation)
    ]


@pytest.mark.scenario("lock_plan_path")
@pytest.mark.parametrize("atomic", [False, True], ids=["per-operation", "PGMIGRATE_ATOMIC"])
def test_search_path_set_by_an_operation_holds_for_the_later_ones(
    shadowed: None, sessions: list[Session], atomic: bool
) -> None:
    """0002's ``SET search_path = tests_other, public`` stays in force on the migrating
    connection: the AddField after it alters tests_other's alpha, the index goes on public's
    beta (tests_other has none), and in 0003 too. There a ``SET LOCAL search_path = public``
    lasts until its transaction ends: its operation's own (the comment goes on tests_other's
    alpha), or with ``PGMIGRATE_ATOMIC`` the migration's (on public's). The plan says so
    before the run, and the run does so. Planning sets nothing on its own connection and
    takes no lock but ACCESS SHARE."""
    planning = connections["default"]
    with planning.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), current_setting('search_path')")
        pid, path = cursor.fetchone()
    observer = Session(application_name="lock-plan-observer")
    sessions.append(observer)
    seen: list[str] = []

    def probe(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        found = "SELECT mode FROM pg_locks WHERE pid = %s AND locktype = 'relation'"
        seen.extend(mode for (mode,) in observer.execute(found, [pid]))
        return result

    with override_settings(PGMIGRATE_ATOMIC=atomic):
        with planning.execute_wrapper(probe):
            document = plan_json()
        with planning.cursor() as cursor:
            cursor.execute("SELECT current_setting('search_path')")
            assert cursor.fetchone()[0] == path
        assert set(seen) == {"AccessShareLock"}
        commented = "public.tests_alpha" if atomic else f"{OTHER}.tests_alpha"
        assert _planned_locks(document, "0002_path") == [
            {},
            {f"{OTHER}.tests_alpha": "ACCESS EXCLUSIVE"},
            {"public.tests_beta": "SHARE"},
        ]
        assert _planned_locks(document, "0003_local") == [
            {},
            {commented: "SHARE UPDATE EXCLUSIVE"},
        ]
        migrate("tests", verbosity=0)
    planning.close()  # its search_path is the migration's
    assert "extra" in _columns(f"{OTHER}.tests_alpha")
    assert "extra" not in _columns("public.tests_alpha")
    assert query("SELECT schemaname FROM pg_indexes WHERE indexname = 'tests_beta_name'") == [
        ("public",)
    ]
    described = query(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE obj_description(c.oid, 'pg_class') = 'commented'"
    )
    assert described == [(commented,)]


def _columns(table: str) -> set[str]:
    return {
        name
        for (name,) in query(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
            [table],
        )
    }


#: The ``lock_plan_do`` scenario's migration with the DO block.
DO_MIGRATION = "tests.scenarios.lock_plan_do.0002_do"


@pytest.fixture
def do_block(scenario: str) -> Iterator[dict[str, Any]]:
    """0001 applied, with rows; ``LOCK_PLAN_DO`` to edit, its migration imported again
    (as Django does after an edit of its file) and restored at the end."""
    rows()
    original = dict(LOCK_PLAN_DO)
    sys.modules.pop(DO_MIGRATION, None)
    yield LOCK_PLAN_DO
    LOCK_PLAN_DO.update(original)
    sys.modules.pop(DO_MIGRATION, None)


@pytest.mark.scenario("lock_plan_do")
@pytest.mark.parametrize("sets", [False, True], ids=["conditional-ddl", "set_config"])
def test_rules_still_fire_after_a_do_block_that_leaves_search_path(
    do_block: dict[str, Any], sets: bool
) -> None:
    """Nothing in 0002's DO block sets search_path: the index built after it on tests_beta,
    over the threshold, breaks L003 and ``--ci`` fails (exit status 1). With a call of
    ``set_config`` in the block, the plan cannot tell where tests_beta leads: the index is
    unknown (L004, a warning) and ``--ci`` passes, as for any unqualified name after it."""
    if sets:
        do_block["block"] += " PERFORM set_config('search_path', 'public', false);"
    with override_settings(**SMALL):
        document = plan_json()
    block, index = (statements(operation)[0] for operation in operations(document, "0002_do"))
    assert block["known"] is False and rule_ids(block) == {L004}
    if sets:
        assert block["notes"][1] == "it may change search_path: it calls set_config()"
        assert index["known"] is False and rule_ids(index) == {L004}
        assert index["notes"] == [
            "an earlier statement may have changed search_path:"
            " DO may change it: it calls set_config()"
        ]
        with override_settings(**SMALL):
            assert plan_json("--ci")["failed"] is False
        return
    assert block["notes"][1].startswith("search_path is taken as unchanged")
    assert locks(index)[BETA] == "SHARE"
    assert rule_ids(index) == {L003}
    failed = manage(
        "pgmigrate",
        "--lock-plan",
        "--ci",
        PGMIGRATE_TEST_SCENARIO="lock_plan_do",
        PGMIGRATE_TEST_SETTINGS=json.dumps(SMALL),
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"{L003}: tests.0002_do operation 2: builds an index on {BETA}" in failed.stderr


def test_session_gone_from_the_activity_read_is_left_out(
    planned: str, sessions: list[Session]
) -> None:
    """A session in ``pg_locks`` that ``pg_stat_get_activity`` no longer shows (it ended
    between the two reads of ``HOLDERS``): its row has NULL in every activity column, pid
    included, which ``protection`` would take for an autovacuum worker. It is left out. The
    activity read is made to miss it for sure by reading activity first in a transaction
    (PostgreSQL keeps that snapshot until the transaction ends)."""
    oid = query("SELECT %s::regclass::oid::int8", [ALPHA_TABLE])[0][0]
    policy = holders.Policy(None, {}, step_aside=True)
    with atomic("default"):
        query("SELECT count(*) FROM pg_stat_get_activity(NULL)")  # the snapshot, without it
        reader = Session(application_name="gone-reader").hold(ALPHA_TABLE)
        sessions.append(reader)
        live = holders.read("default", [oid])
    (row,) = [row for row in live if row["application_name"] is None]
    assert row["lock_mode"] == "AccessShareLock"
    assert (row["pid"], row["gid"], row["usesysid"], row["backend_type"]) == (None,) * 4
    assert protection.cancelled_by_postgres(row)  # what judging it would say
    assert holders.conflicting(live, oid, ALPHA, LockMode.ACCESS_EXCLUSIVE, policy) == []
    # Read again, the session is there and judged as it is.
    (holder,) = holders.conflicting(
        holders.read("default", [oid]), oid, ALPHA, LockMode.ACCESS_EXCLUSIVE, policy
    )
    assert (holder.pid, holder.application_name, holder.would) == (
        reader.pid,
        "gone-reader",
        "leave",
    )
    reader.release()
