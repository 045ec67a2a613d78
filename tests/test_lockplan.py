"""``pgmigrate --lock-plan``: the pending migrations' statements, their locks on the live
database, who is in their way, the rules they break; ``--ci`` and ``--json``."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django.test import override_settings

from pgmigrate.progress import Progress, ProgressRecorder
from tests.helpers import Session, applied, manage, migrate, query
from tests.scenarios import RUNPYTHON_SEEN

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "other"]),
    pytest.mark.scenario("lock_plan"),
]

L001, L002, L003, L004, L005 = (f"pgmigrate.L00{n}" for n in range(1, 6))
ALPHA, BETA, GAMMA, DELTA = (
    f"public.tests_{name}" for name in ("alpha", "beta", "gamma", "delta")
)
#: Small enough for the test tables to be over it.
SMALL = {"PGMIGRATE_LOCK_PLAN_THRESHOLD": 0}


def rows(using: str = "default") -> None:
    """Apply 0001 and give alpha and beta rows (alpha analyzed, beta never)."""
    migrate("tests", "0001", verbosity=0, database=using)
    for table in ("tests_alpha", "tests_beta"):
        query(
            f"INSERT INTO {table} (name) SELECT 'row ' || g FROM generate_series(1, 2000) g",
            using=using,
        )
    query("ANALYZE tests_alpha", using=using)


@pytest.fixture
def prepared(scenario: str) -> Iterator[str]:
    rows()
    RUNPYTHON_SEEN.pop("lock_plan", None)
    yield scenario


def lock_plan(*args: str, **options: Any) -> str:
    """``call_command("pgmigrate", "--lock-plan", ...)``: what it printed on stdout."""
    out, err = io.StringIO(), io.StringIO()
    call_command("pgmigrate", "--lock-plan", *args, stdout=out, stderr=err, **options)
    return out.getvalue()


def plan_json(*args: str, **options: Any) -> dict[str, Any]:
    return json.loads(lock_plan(*args, "--json", **options))


def operations(document: dict[str, Any], migration: str) -> list[dict[str, Any]]:
    (found,) = [m for m in document["migrations"] if m["name"] == migration]
    return found["operations"]


def statements(operation: dict[str, Any]) -> list[dict[str, Any]]:
    return operation["statements"]


def rule_ids(statement: dict[str, Any]) -> set[str]:
    return {verdict["rule"] for verdict in statement["verdicts"]}


def locks(statement: dict[str, Any]) -> dict[str, str]:
    return {lock["relation"]: lock["mode"] for lock in statement["locks"]}


def token_statement(document: dict[str, Any]) -> dict[str, Any]:
    """0002's ADD COLUMN token (operation 2): its first statement (on Django 5.0+ the new
    model's deferred SQL follows it, as pgmigrate runs both in one transaction)."""
    return statements(operations(document, "0002_plan")[1])[0]


def deferred_of_delta(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The deferred SQL of 0002's new model Delta, under whichever operation runs it."""
    return [
        statement
        for operation in operations(document, "0002_plan")[:2]
        for statement in statements(operation)
        if statement["deferred"]
    ]


# What each operation does ---------------------------------------------------------------


def test_new_model_creates_its_table_and_defers_the_foreign_key(prepared):
    document = plan_json()
    assert document["version"] == 1
    assert document["database"] == "default"
    assert [m["name"] for m in document["migrations"]] == [
        "0002_plan",
        "0003_concurrently",
        "0004_unwritable",
    ]
    create = operations(document, "0002_plan")[0]
    assert create["description"] == "Create model Delta"
    if django.VERSION >= (5, 0):  # AddField on Alpha, which the foreign key refers to
        assert create["transaction"].startswith("one transaction with operations 1 to 2")
    else:  # RunSQL changes no model: the key is made before it
        assert create["transaction"] == "its own transaction"
    first = statements(create)[0]
    assert first["sql"].startswith('CREATE TABLE "tests_delta"')
    assert first["deferred"] is False
    assert DELTA in first["creates"]
    assert first["estimate"]["seconds"] == 0
    deferred = deferred_of_delta(document)
    assert deferred and all(statement["deferred"] for statement in deferred)
    (fk,) = [s for s in deferred if "FOREIGN KEY" in s["sql"]]
    # The FK locks the referenced table (writes wait); the new table counts as empty.
    assert locks(fk)[ALPHA] == "SHARE ROW EXCLUSIVE"
    assert fk["estimate"]["holds_back"] == "writes"
    assert fk["sizes"][ALPHA]["rows"] == 2000
    assert fk["sizes"][ALPHA]["table_bytes"] > 0
    assert fk["sizes"][DELTA]["new"] is True
    # No row to check: however big tests_alpha is, no rule is broken.
    with override_settings(**SMALL):
        document = plan_json()
    (fk,) = [s for s in deferred_of_delta(document) if "FOREIGN" in s["sql"]]
    assert fk["estimate"]["seconds"] == 0
    assert fk["verdicts"] == []


def test_constraint_check_reads_the_table_with_not_valid_advice(prepared):
    with override_settings(**SMALL):
        document = plan_json()
    (check,) = statements(operations(document, "0002_plan")[5])
    assert BETA in check["scans"]
    assert locks(check)[BETA] == "ACCESS EXCLUSIVE"
    (verdict,) = check["verdicts"]
    assert verdict["rule"] == L002
    assert "NOT VALID" in verdict["safer"]
    assert "VALIDATE CONSTRAINT" in verdict["safer"]


def test_volatile_default_rewrites_with_db_default_advice(prepared):
    with override_settings(**SMALL):
        document = plan_json()
    token = token_statement(document)
    assert ALPHA in token["rewrites"]
    assert locks(token)[ALPHA] == "ACCESS EXCLUSIVE"
    assert token["estimate"]["holds_back"] == "reads and writes"
    assert token["estimate"]["seconds"] > 0
    (verdict,) = token["verdicts"]
    assert verdict["rule"] == L001
    assert verdict["level"] == "error"
    assert "db_default" in verdict["safer"]
    # Under the default threshold (10 MiB) the small table breaks no sized rule.
    token = token_statement(plan_json())
    assert token["verdicts"] == []


def test_index_build_over_the_threshold(prepared):
    with override_settings(**SMALL):
        document = plan_json()
    (index,) = statements(operations(document, "0002_plan")[2])
    assert index["sql"].startswith('CREATE INDEX "beta_name_idx"')
    assert locks(index)[BETA] == "SHARE"
    assert index["scans"] == [BETA]
    assert index["estimate"]["holds_back"] == "writes"
    assert index["sizes"][BETA]["rows"] is None  # never analyzed
    (verdict,) = index["verdicts"]
    assert verdict["rule"] == L003
    assert "AddIndexConcurrently" in verdict["safer"]
    assert "atomic = False" in verdict["safer"]


def test_index_built_concurrently_breaks_no_rule(prepared):
    with override_settings(**SMALL):
        document = plan_json()
    (operation,) = operations(document, "0003_concurrently")
    assert operation["transaction"] == "no transaction: statement by statement"
    (index,) = statements(operation)
    assert "CONCURRENTLY" in index["sql"]
    assert index["waits_for_snapshots"] is True
    assert index["transactional"] is False
    assert locks(index)[ALPHA] == "SHARE UPDATE EXCLUSIVE"
    assert index["estimate"]["holds_back"] == "nothing"
    assert index["verdicts"] == []


def test_run_python_is_code_with_unknown_locks(prepared):
    document = plan_json()
    python = operations(document, "0002_plan")[3]
    assert python["kind"] == "python"
    assert python["code"] == "tests.scenarios.lock_plan_python"
    (statement,) = statements(python)
    assert statement["python"] is True
    assert statement["known"] is False
    assert statement["estimate"]["holds_back"] == "unknown"
    assert rule_ids(statement) == {L005}
    assert statement["verdicts"][0]["level"] == "warning"
    assert "lock_plan" not in RUNPYTHON_SEEN  # never run


def test_run_sql_is_classified(prepared):
    (update,) = statements(operations(plan_json(), "0002_plan")[4])
    assert update["sql"].startswith("UPDATE tests_gamma")
    assert locks(update)[GAMMA] == "ROW EXCLUSIVE"
    assert update["estimate"]["holds_back"] == "nothing"


def test_sql_it_cannot_classify_is_unknown(prepared):
    (block,) = statements(operations(plan_json(), "0002_plan")[6])
    assert block["sql"].startswith("DO $$")
    assert block["known"] is False
    assert block["locks"] == []
    assert block["estimate"]["holds_back"] == "unknown"
    assert block["estimate"]["seconds"] is None
    assert block["notes"][1].startswith("search_path is taken as unchanged")
    (verdict,) = block["verdicts"]
    assert (verdict["rule"], verdict["level"]) == (L004, "warning")


def test_sql_django_cannot_write_yet_is_unknown(prepared):
    document = plan_json()
    (operation,) = operations(document, "0004_unwritable")
    (statement,) = statements(operation)
    assert statement["known"] is False
    assert (
        "SQL unknown until the migrations before it run (ValueError: Found wrong"
        in (statement["sql"])
    )
    assert rule_ids(statement) == {L004}
    assert "Alter the foreign key of Delta" in lock_plan()


def test_json_layout(prepared):
    """The documented keys, at every level (docs/reference/command.md, JSON output)."""
    document = plan_json()
    assert set(document) == {
        "version",
        "database",
        "server_version",
        "rules",
        "migrations",
        "broken",
        "failed",
    }
    assert set(document["rules"]) == {L001, L002, L003, L004, L005}
    migration = document["migrations"][0]
    assert set(migration) == {"app_label", "name", "atomic", "progress", "operations"}
    operation = migration["operations"][0]
    assert set(operation) == {
        "number",
        "description",
        "kind",
        "transaction",
        "applied",
        "committed",
        "code",
        "statements",
    }
    assert set(operation["statements"][0]) == {
        "sql",
        "deferred",
        "python",
        "kind",
        "known",
        "locks",
        "creates",
        "rewrites",
        "scans",
        "waits_for_snapshots",
        "transactional",
        "notes",
        "sizes",
        "estimate",
        "holders",
        "verdicts",
    }
    assert set(document["broken"][0]) == {
        "rule",
        "level",
        "allowed",
        "migration",
        "operation",
        "message",
    }


def test_text_output(prepared):
    with override_settings(**SMALL):
        text = lock_plan(verbosity=1)
    assert "Lock plan of database 'default'" in text
    assert "tests.0002_plan" in text
    assert "tests.0003_concurrently (atomic = False)" in text
    assert "(deferred) ALTER TABLE" in text
    assert f"ACCESS EXCLUSIVE on {ALPHA} (~2,000 rows" in text
    assert "Python code: locks unknown" in text
    assert f"{L003} (error)" in text
    assert "safer: build it with django.contrib.postgres.operations.AddIndexConcurrently" in text
    assert "tests_alpha_pkey" not in text  # an index's lock goes with its table's
    assert "SQL unknown until the migrations before it run" in text
    verbose = lock_plan(verbosity=2)
    assert f"ACCESS EXCLUSIVE on {ALPHA}_pkey" in verbose
    assert "note: the default gen_random_uuid() is volatile" in verbose
    assert "locks unknown: it runs code of its own" in verbose  # the DO block
    assert "note: search_path is taken as unchanged: nothing in the block sets it" in verbose
    assert '"alpha_id" integer NOT NULL)' in verbose  # the SQL in full


# Nothing happens ------------------------------------------------------------------------


def test_applies_nothing_and_creates_nothing(prepared):
    query("DROP TABLE pgmigrate_progress")  # made by migrate 0001: the plan makes none
    lock_plan()
    assert applied() == ["0001_initial"]
    assert query("SELECT to_regclass('pgmigrate_progress'), to_regclass('tests_delta')") == [
        (None, None)
    ]
    assert "token" not in {
        c
        for (c,) in query(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'tests_alpha'::regclass"
        )
    }


def test_takes_no_lock_stronger_than_access_share(prepared, sessions):
    """Another session holds EXCLUSIVE (which only ACCESS SHARE does not conflict with) on
    every table the plan reads or measures: the plan still completes; and after each of its
    statements, pg_locks (read from that session) shows the planning backend holding only
    ACCESS SHARE relation locks, and no advisory lock."""
    holder = Session(application_name="exclusive-holder")
    sessions.append(holder)
    holder.connection.set_autocommit(False)
    for table in ("tests_alpha", "tests_beta", "tests_gamma", "django_migrations"):
        holder.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
    planning = connections["default"]
    with planning.cursor() as cursor:
        cursor.execute("SET lock_timeout = '10s'")
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    seen: list[tuple[str, str | None, str]] = []

    pgmigrate_sessions: list[Any] = []

    def probe(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        pgmigrate_sessions.extend(
            holder.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pgmigrate%%'"
            )
        )
        seen.extend(
            holder.execute(
                "SELECT locktype, relation::regclass::text, mode FROM pg_locks WHERE pid = %s",
                [pid],
            )
        )
        return result

    with planning.execute_wrapper(probe):
        document = plan_json()
    relation_modes = {mode for locktype, _, mode in seen if locktype == "relation"}
    assert relation_modes == {"AccessShareLock"}
    assert ("relation", "pg_class", "AccessShareLock") in seen  # the probe sees its locks
    assert not [lock for lock in seen if lock[0] == "advisory"]
    assert pgmigrate_sessions == []  # no watcher
    # The EXCLUSIVE holder is in the way of the statements that lock those tables.
    token = token_statement(document)
    assert [holder["mode"] for holder in token["holders"]] == ["EXCLUSIVE"]
    holder.connection.rollback()


def test_table_held_in_access_exclusive_is_measured_from_relpages(prepared, sessions):
    """pg_relation_size would wait behind the ACCESS EXCLUSIVE lock: the plan measures the
    table from pg_class.relpages instead, and says so."""
    holder = Session(application_name="alterer").hold("tests_alpha", "ACCESS EXCLUSIVE")
    sessions.append(holder)
    document = plan_json()
    token = token_statement(document)
    size = token["sizes"][ALPHA]
    assert size["exact"] is False
    assert size["rows"] == 2000  # ANALYZE set relpages too
    assert size["table_bytes"] > 0
    assert [(h["pid"], h["mode"]) for h in token["holders"]] == [(holder.pid, "ACCESS EXCLUSIVE")]
    assert "from relpages" in lock_plan()
    holder.release()


def test_half_applied_migration_shows_what_is_left(prepared):
    connection = connections["default"]
    migration = MigrationLoader(connection).get_migration("tests", "0002_plan")
    recorder = ProgressRecorder(connection)
    recorder.load()
    recorder.save(
        migration, Progress(done=2, total=8, fingerprint=recorder.fingerprint(migration, 2))
    )
    document = plan_json()
    (planned,) = [m for m in document["migrations"] if m["name"] == "0002_plan"]
    assert planned["progress"] == "an earlier run applied operations 1 to 2 of 8"
    applied_before = [op["applied"] for op in planned["operations"]]
    assert applied_before == [True, True, False, False, False, False, False, False]
    assert planned["operations"][0]["statements"] == []
    assert "already applied by an earlier run" in lock_plan()


# Who is in the way ----------------------------------------------------------------------


def _token_holders(document: dict[str, Any]) -> list[dict[str, Any]]:
    token = token_statement(document)
    return token["holders"]


@pytest.fixture
def reader(prepared, sessions) -> Session:
    """An app session idle in a transaction that read tests_alpha (ACCESS SHARE)."""
    session = Session(application_name="app-reader").hold("tests_alpha")
    sessions.append(session)
    return session


@pytest.mark.parametrize(
    ("settings", "would", "then"),
    [
        ({"PGMIGRATE_BLOCKING_ACTION": "pgmigrate.Terminate"}, "end", None),
        ({"PGMIGRATE_BLOCKING_ACTION": "pgmigrate.Show"}, "show", "step aside"),
        (
            {"PGMIGRATE_BLOCKING_ACTION": "pgmigrate.Show", "PGMIGRATE_STEP_ASIDE": False},
            "show",
            "wait",
        ),
        ({"PGMIGRATE_BLOCKING_ACTION": "pgmigrate.Cancel"}, "leave", "step aside"),
        ({"PGMIGRATE_BLOCKING_ACTION": None}, "leave", "step aside"),
        (
            {"PGMIGRATE_PROTECTED": {"application_name": ["app-*"]}},
            "protected",
            "step aside",
        ),
    ],
)
def test_holder_and_what_pgmigrate_would_do(reader, settings, would, then):
    with override_settings(**settings):
        (holder,) = _token_holders(plan_json())
    assert holder["pid"] == reader.pid
    assert holder["application_name"] == "app-reader"
    assert holder["mode"] == "ACCESS SHARE"
    assert holder["granted"] is True
    assert holder["state"] == "idle in transaction"
    assert (holder["would"], holder["then"]) == (would, then)
    if would == "protected":
        assert "application_name 'app-reader' matches 'app-*'" in holder["reason"]


def test_prepared_transaction_in_the_way(prepared):
    if query("SHOW max_prepared_transactions") == [("0",)]:
        pytest.skip("the server allows no prepared transaction")
    session = Session(application_name="two-phase")
    try:
        session.connection.set_autocommit(False)
        session.execute("SELECT count(*) FROM tests_alpha")
        session.execute("PREPARE TRANSACTION 'pgmigrate-lock-plan'")
    finally:
        session.close()
    try:
        (holder,) = _token_holders(plan_json())
    finally:
        query("ROLLBACK PREPARED 'pgmigrate-lock-plan'")
    assert (holder["pid"], holder["gid"]) == (None, "pgmigrate-lock-plan")
    assert holder["mode"] == "ACCESS SHARE"
    assert (holder["would"], holder["then"]) == ("leave", "step aside")
    assert "ROLLBACK PREPARED" in holder["reason"]


def test_blocking_action_option_overrides_the_setting(reader):
    (holder,) = _token_holders(plan_json(blocking_action="show"))
    assert holder["would"] == "show"
    text = lock_plan()
    assert f"in the way now: pid {reader.pid} (application 'app-reader'" in text


def test_holder_only_for_conflicting_modes(reader):
    document = plan_json()
    # ACCESS SHARE does not conflict with the FK's SHARE ROW EXCLUSIVE on tests_alpha.
    fk = [s for s in deferred_of_delta(document) if "FOREIGN" in s["sql"]]
    assert fk[0]["holders"] == []
    (index,) = statements(operations(document, "0003_concurrently")[0])
    assert index["holders"] == []


# CI mode --------------------------------------------------------------------------------


def test_ci_fails_on_error_rules(prepared):
    with override_settings(**SMALL), pytest.raises(CommandError) as raised:
        lock_plan("--ci")
    message = str(raised.value)
    assert message.startswith("pgmigrate: the lock plan breaks ")
    assert message.splitlines()[0].endswith(" rule(s) at error level:")
    assert f"{L001}: tests.0002_plan operation 2: rewrites {ALPHA}" in message
    assert f"{L003}: tests.0002_plan operation 3: builds an index on {BETA}" in message
    assert L005 not in message  # a warning


def test_ci_passes_under_the_threshold(prepared):
    text = lock_plan("--ci")
    assert f"{L005} warning: tests.0002_plan operation 4" in text


def test_ci_passes_with_allowed_rules(prepared):
    allow = {"tests.0002_plan": [L001, L002, L003]}
    with override_settings(**SMALL, PGMIGRATE_LOCK_PLAN_ALLOW=allow):
        document = plan_json("--ci")
    assert document["failed"] is False
    assert {(b["rule"], b["allowed"]) for b in document["broken"]} >= {(L001, True), (L003, True)}


def test_allowing_rules_for_a_migration_that_does_not_exist_is_said(prepared):
    allow = {"tests.0002_plan": [L001], "tests.0002_plann": [L003]}  # a typo
    out, err = io.StringIO(), io.StringIO()
    with override_settings(PGMIGRATE_LOCK_PLAN_ALLOW=allow):
        call_command("pgmigrate", "--lock-plan", "--json", stdout=out, stderr=err)
    json.loads(out.getvalue())  # still valid JSON on stdout
    assert err.getvalue().splitlines() == [
        "pgmigrate: PGMIGRATE_LOCK_PLAN_ALLOW names 'tests.0002_plann', which is not a "
        "migration of this project (a typo, or a migration since removed?)."
    ]


def test_rules_setting_changes_levels_and_thresholds(prepared):
    rules = {
        L001: "warning",
        L002: "off",
        L003: {"threshold": 10**12},
        L005: "off",
    }
    with override_settings(**SMALL, PGMIGRATE_LOCK_PLAN_RULES=rules):
        document = plan_json("--ci")
    assert document["rules"][L003] == {"level": "error", "threshold": 10**12}
    assert [(b["rule"], b["level"]) for b in document["broken"]] == [
        (L001, "warning"),
        (L004, "warning"),  # the DO block
        (L004, "warning"),  # 0004's SQL, unknown until 0002 and 0003 run
    ]
    assert document["failed"] is False


def test_json_ci_prints_json_then_fails(prepared):
    out = io.StringIO()
    with override_settings(**SMALL), pytest.raises(CommandError):
        call_command("pgmigrate", "--lock-plan", "--json", "--ci", stdout=out)
    document = json.loads(out.getvalue())
    assert document["failed"] is True
    assert {b["rule"] for b in document["broken"]} >= {L001, L003, L005}


def test_subprocess_exit_status_and_json(prepared):
    env = {
        "PGMIGRATE_TEST_SCENARIO": "lock_plan",
        "PGMIGRATE_TEST_SETTINGS": json.dumps(SMALL),
    }
    failed = manage("pgmigrate", "--lock-plan", "--ci", **env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr
    assert "CommandError: pgmigrate: the lock plan breaks " in failed.stderr
    assert f"{L003}: tests.0002_plan operation 3: builds an index on {BETA}" in failed.stderr
    assert "Lock plan of database 'default'" in failed.stdout
    passed = manage(
        "migrate", "--lock-plan", "--ci", "--json", PGMIGRATE_TEST_SCENARIO="lock_plan"
    )
    assert passed.returncode == 0, passed.stderr
    assert json.loads(passed.stdout)["failed"] is False
    assert applied() == ["0001_initial"]


def test_subprocess_cannot_connect(prepared):
    result = manage(
        "pgmigrate",
        "--lock-plan",
        PGMIGRATE_TEST_SCENARIO="lock_plan",
        PGMIGRATE_TEST_DATABASE=json.dumps({"HOST": "127.0.0.1", "PORT": "1"}),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "CommandError: pgmigrate: cannot connect to database 'default'" in result.stderr
    assert "Nothing was planned." in result.stderr


# Targets and databases ------------------------------------------------------------------


def test_app_label_and_migration_name_targets(prepared):
    document = plan_json("tests", "0002")
    assert [m["name"] for m in document["migrations"]] == ["0002_plan"]


def test_through_patched_migrate(prepared):
    out = io.StringIO()
    call_command("migrate", "--lock-plan", "tests", stdout=out)
    assert "tests.0002_plan" in out.getvalue()


def test_database_other(prepared):
    migrate("tests", verbosity=0)  # default: nothing pending any more
    assert plan_json()["migrations"] == []
    query("DELETE FROM django_migrations WHERE app = 'tests'", using="other")
    migrate("tests", "0001", verbosity=0, database="other")
    query(
        "INSERT INTO tests_alpha (name) SELECT 'other' FROM generate_series(1, 300)",
        using="other",
    )
    query("ANALYZE tests_alpha", using="other")
    document = plan_json(database="other")
    assert document["database"] == "other"
    token = token_statement(document)
    assert token["sizes"][ALPHA]["rows"] == 300


def test_backwards_is_refused(prepared):
    migrate("tests", verbosity=0)
    with pytest.raises(
        CommandError,
        match=r"plans migrations forwards only; this target "
        r"unapplies tests\.0004_unwritable, tests\.0003_concurrently, tests\.0002_plan",
    ):
        lock_plan("tests", "0001")


# Bad input ------------------------------------------------------------------------------


def test_unknown_app_label(prepared):
    with pytest.raises(CommandError, match="No installed app with label 'nope'"):
        lock_plan("nope")


def test_ci_and_json_need_lock_plan(prepared):
    with pytest.raises(CommandError, match="--ci works with --lock-plan only"):
        call_command("pgmigrate", "--ci", stdout=io.StringIO())
    with pytest.raises(CommandError, match="drop --fake"):
        lock_plan("--fake")


def test_needs_postgresql(prepared):
    with pytest.raises(CommandError, match="needs PostgreSQL; database 'sqlite' is sqlite"):
        lock_plan(database="sqlite", skip_checks=True)


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("PGMIGRATE_LOCK_PLAN_THRESHOLD", -1, "pgmigrate.E016"),
        ("PGMIGRATE_LOCK_PLAN_THRESHOLD", "10MB", "pgmigrate.E016"),
        ("PGMIGRATE_LOCK_PLAN_RULES", {"pgmigrate.L999": "off"}, "pgmigrate.E017"),
        ("PGMIGRATE_LOCK_PLAN_RULES", {L001: "fatal"}, "pgmigrate.E017"),
        ("PGMIGRATE_LOCK_PLAN_RULES", {L001: {"threshold": -5}}, "pgmigrate.E017"),
        ("PGMIGRATE_LOCK_PLAN_RULES", {"pgmigrate.L005": {"threshold": 0}}, "pgmigrate.E017"),
        ("PGMIGRATE_LOCK_PLAN_ALLOW", {"0002_plan": [L001]}, "pgmigrate.E018"),
        ("PGMIGRATE_LOCK_PLAN_ALLOW", {"tests.0002_plan": L001}, "pgmigrate.E018"),
        ("PGMIGRATE_LOCK_PLAN_ALLOW", {"tests.0002_plan": ["L001"]}, "pgmigrate.E018"),
    ],
)
def test_bad_settings_are_check_errors(prepared, setting, value, check_id):
    with override_settings(**{setting: value}):
        with pytest.raises(SystemCheckError, match=check_id):
            lock_plan(skip_checks=False)
        with pytest.raises(CommandError, match=f"pgmigrate: {setting}"):
            lock_plan()  # call_command skips the checks
