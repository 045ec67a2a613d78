"""Bad input gets a clear error (a ``pgmigrate.E…`` check, an argparse or ``CommandError``
message), never a traceback: settings, command-line options, the report path, a missing
dependency app, a server that is down, a read-only database."""

import datetime as dt
import json
import math
import threading
from collections.abc import Iterator

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connections
from django.test import override_settings

import pgmigrate
from pgmigrate import config, events, options, retry
from tests.helpers import (
    ROOT,
    MigrateThread,
    Session,
    applied,
    is_waiting_on_lock,
    manage,
    migrate,
    query,
    wait_until,
    waited_at_least,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

NAN, INF = math.nan, math.inf


class FailsToStart(pgmigrate.BlockingAction):
    """An action whose constructor raises."""

    def __init__(self, **filters):
        raise RuntimeError("no configuration for this action")


class NeedsArgs(pgmigrate.BlockingAction):
    """An action whose constructor needs an argument: pgmigrate cannot make it from its class."""

    def __init__(self, page, **filters):
        super().__init__(**filters)
        self.page = page

    def worker(self, cmd, blocked_locks):
        return []


class WithLock(pgmigrate.Terminate):
    """An action holding what ``copy.deepcopy`` (done by the watcher on each run) refuses."""

    def __init__(self, **filters):
        super().__init__(**filters)
        self.lock = threading.Lock()


#: Filters that Django accepts but PostgreSQL refuses (``manage.py check --database`` and
#: the settings: ``PGMIGRATE_TEST_ACTION=tests.test_bad_input.INTEGER_DURATION``).
INTEGER_DURATION = pgmigrate.Terminate(blocking_activity__duration__gte=5)

#: Values that are wrong for every duration setting (None is wrong for some).
BAD_DURATIONS = ["5s", True, [1], -1, NAN, INF, -INF, 1e12, 10**400, 10**5000]

#: (setting, check id, bad values): wrong type, negative, zero, NaN, infinity, huge, unknown.
BAD_SETTINGS = [
    (
        "PGMIGRATE_BLOCKING_ACTION",
        "pgmigrate.E003",
        [
            "kill",
            "",
            "no.such.Action",
            "datetime.timedelta",
            42,
            NAN,
            ["show"],
            pgmigrate,
            ".Show",
            ".",
            "..x",
            "pgmigrate.",
            NeedsArgs,
            "tests.test_bad_input.NeedsArgs",
            WithLock,
            WithLock(),
            pgmigrate.Terminate(blocking_activity__backend_start__gte="abc"),
            pgmigrate.Show(blocking_activity__pid__in=["x"]),
        ],
    ),
    ("PGMIGRATE_BLOCKING_ACTION_INTERVAL", "pgmigrate.E004", [*BAD_DURATIONS, None, 0, 60.5]),
    (
        "PGMIGRATE_LOCK_TIMEOUT",
        "pgmigrate.E005",
        [
            *BAD_DURATIONS,
            0,
            0.0009,
            1e-400,
            dt.timedelta(microseconds=999),
            2147483.648,
            dt.timedelta(days=25),
            dt.timedelta.max,
        ],
    ),
    ("PGMIGRATE_PATCH_MIGRATE", "pgmigrate.E006", ["yes", 1, 0, None, NAN]),
    ("PGMIGRATE_ATOMIC", "pgmigrate.E007", ["true", 1, None, NAN]),
    (
        "PGMIGRATE_PROTECTED",
        "pgmigrate.E008",
        [["pg_dump"], None, NAN, {"app_name": ["x"]}, {"application_name": "x"}, {"query": [1]}],
    ),
    ("PGMIGRATE_CONCURRENT_MIGRATE", "pgmigrate.E009", ["queue", "WAIT", None, 1, NAN]),
    (
        "PGMIGRATE_LOCK_RETRIES",
        "pgmigrate.E010",
        [-1, 1.5, "3", True, None, NAN, INF, -INF, 1e12, 2**63, 10**400, 10**5000],
    ),
    ("PGMIGRATE_LOCK_RETRY_DELAY", "pgmigrate.E011", [*BAD_DURATIONS, None, 0, 3601]),
    ("PGMIGRATE_LOCK_RETRY_MAX_DELAY", "pgmigrate.E011", [*BAD_DURATIONS, None, 0, 3601]),
    (
        "PGMIGRATE_STATEMENT_TIMEOUT",
        "pgmigrate.E012",
        [
            *BAD_DURATIONS,
            0,
            0.0001,
            dt.timedelta(microseconds=999),
            2147483.648,
            dt.timedelta(days=25),
        ],
    ),
    (
        "PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT",
        "pgmigrate.E013",
        ["RunPython", None, NAN, ["no.Such"], [42], [NAN], [".RunPython"], ["."], [int]],
    ),
    ("PGMIGRATE_LOG_QUERIES", "pgmigrate.E014", ["no", 1, None, NAN]),
    (
        "PGMIGRATE_LOCK_PLAN_ALLOW",
        "pgmigrate.E018",
        [{"tests.0002_add_fields": [["pgmigrate.L001"]]}, {"tests.0002_add_fields": [{}]}],
    ),
]


def _label(value):
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**20 else "huge-int"
    return text[:30]


def check_messages(**settings):
    """The pgmigrate messages of ``manage.py check`` under ``settings`` (raises on a crash)."""
    with override_settings(**settings):
        found = checks.run_checks()
    return {message.id: message.msg for message in found if message.id.startswith("pgmigrate")}


@pytest.mark.parametrize(
    ("setting", "check_id", "value"),
    [
        pytest.param(setting, check_id, value, id=f"{setting}={_label(value)}")
        for setting, check_id, values in BAD_SETTINGS
        for value in values
    ],
)
def test_bad_setting_value_is_a_check_error(setting, check_id, value):
    found = check_messages(**{setting: value})
    assert check_id in found, found
    assert setting in found[check_id]
    assert len(found[check_id]) < 400  # a huge value is shortened, not printed in full
    errors = [i for i in found if ".E" in i]
    assert errors == [check_id], found


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("PGMIGRATE_LOCK_TIMEOUT", 2147483.647),
        ("PGMIGRATE_LOCK_TIMEOUT", dt.timedelta(days=24)),
        ("PGMIGRATE_LOCK_TIMEOUT", 0.001),
        ("PGMIGRATE_STATEMENT_TIMEOUT", 2147483),
        ("PGMIGRATE_LOCK_RETRIES", 10**12),
        ("PGMIGRATE_LOCK_RETRIES", 2**63 - 1),
        ("PGMIGRATE_LOCK_RETRY_DELAY", 3600),
        ("PGMIGRATE_LOCK_RETRY_MAX_DELAY", dt.timedelta(hours=1)),
        ("PGMIGRATE_BLOCKING_ACTION_INTERVAL", 60),
    ],
)
def test_values_at_the_limits_are_accepted(setting, value):
    settings = {setting: value}
    if setting == "PGMIGRATE_LOCK_RETRIES":
        settings["PGMIGRATE_LOCK_TIMEOUT"] = 5
    assert not [i for i in check_messages(**settings) if ".E" in i]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("show", pgmigrate.Show()),
        ("Terminate", pgmigrate.Terminate()),
        (" CANCEL ", pgmigrate.Cancel()),
        ("none", None),
        ("pgmigrate.Show", pgmigrate.Show()),
    ],
)
def test_setting_takes_the_short_names_of_the_command_line(value, expected):
    with override_settings(PGMIGRATE_BLOCKING_ACTION=value):
        assert config.blocking_action() == expected
    assert options.parse_action(value) == expected


def test_unknown_action_name_suggests_the_names_and_a_path():
    found = check_messages(PGMIGRATE_BLOCKING_ACTION="kill")
    assert "'kill' is not an action" in found["pgmigrate.E003"]
    assert "terminate, cancel, show, none" in found["pgmigrate.E003"]
    assert "'pgmigrate.Show'" in found["pgmigrate.E003"]


def test_retries_without_a_lock_timeout_warn():
    found = check_messages(PGMIGRATE_LOCK_RETRIES=3)
    assert "PGMIGRATE_LOCK_RETRIES = 3 has no effect" in found["pgmigrate.W004"]
    assert "pgmigrate.W004" not in check_messages(
        PGMIGRATE_LOCK_RETRIES=3, PGMIGRATE_LOCK_TIMEOUT=5
    )
    assert "pgmigrate.W004" not in check_messages()


# The command line ---------------------------------------------------------------------

#: (option, bad values): each must give an argparse or CommandError message.
BAD_OPTIONS = [
    (
        "--lock-timeout",
        ["nan", "NaN", "inf", "-inf", "1e12", "2147483.648", "-1", "0.0001", "5s", "1e-400"],
    ),
    (
        "--statement-timeout",
        ["nan", "infinity", "-inf", "1e12", "-0.5", "", "ten", "0.0001", "1e-400", "-1e-400"],
    ),
    ("--lock-retries", ["-1", "1.5", "nan", "inf", "1e12", "", "three", str(2**63)]),
    (
        "--blocking-action",
        ["kill", "", "no.such.Action", "datetime.timedelta", "pgmigrate", ".show", ".", "..x"],
    ),
    ("--pgmigrate-report", ["/nonexistent-pgmigrate-dir/report.json", str(ROOT), ""]),
]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        pytest.param(option, value, id=f"{option}={value}")
        for option, values in BAD_OPTIONS
        for value in values
    ],
)
def test_bad_option_value_is_a_command_error(scenario, option, value):
    with pytest.raises(CommandError) as caught:
        migrate("tests", f"{option}={value}")
    message = str(caught.value)
    assert option.lstrip("-") in message or "action" in message, message
    assert applied() == []


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("lock_timeout", NAN),
        ("lock_timeout", -INF),
        ("lock_timeout", 1e12),
        ("lock_timeout", 10**400),
        ("lock_timeout", "soon"),
        ("lock_timeout", True),
        ("statement_timeout", dt.timedelta(days=30)),
        ("statement_timeout", [5]),
        ("lock_retries", -1),
        ("lock_retries", 2.0),
        ("lock_retries", "many"),
        ("blocking_action", 42),
        ("blocking_action", "kill"),
        ("blocking_action", ".Show"),
        pytest.param("lock_retries", 10**5000, id="lock_retries-huge"),
        ("lock_retries", 2**63),
        ("step_aside", "no"),
        ("step_aside", 1),
        ("pgmigrate_restart", "no"),
        ("pgmigrate_report", 123456),
        ("pgmigrate_report", b"report.json"),
        ("pgmigrate_report", ""),
    ],
)
def test_bad_keyword_of_call_command_is_a_command_error(scenario, option, value):
    """``call_command`` passes keyword values without the parser: they are checked too."""
    with pytest.raises(CommandError) as caught:
        migrate("tests", **{option: value})
    assert option.replace("_", "-") in str(caught.value)
    assert applied() == []


@pytest.mark.parametrize("value", ["0", "0.0", "none", "None", "off"])
def test_zero_or_none_turns_the_timeout_off(value):
    parser = pgmigrate.MigrateCommand().create_parser("manage.py", "migrate")
    parsed = vars(parser.parse_args(["--lock-timeout", value, "--statement-timeout", value]))
    with override_settings(PGMIGRATE_LOCK_TIMEOUT=5, PGMIGRATE_STATEMENT_TIMEOUT=10):
        run_options = options.RunOptions.from_command(parsed)
    assert run_options.lock_timeout is None
    assert run_options.statement_timeout is None


@override_settings(
    PGMIGRATE_LOCK_TIMEOUT=0.2, PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_STEP_ASIDE=False
)
def test_lock_timeout_0_waits_past_the_setting(scenario, sessions):
    migrate("tests", "0001", verbosity=0)
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    run = MigrateThread("tests", "0002", "--lock-timeout", "0")
    wait_until(lambda: waited_at_least(run.backend_pid, 1.0), what="migrate waited 1 s")
    assert run.is_alive()  # PGMIGRATE_LOCK_TIMEOUT (0.2 s) is off for this run
    blocker.release()
    run.finish()
    assert applied() == ["0001_initial", "0002_add_fields"]


def test_retries_without_a_lock_timeout_are_noticed_at_run_time(scenario):
    out = migrate("tests", "0001", "--lock-retries", "2")
    assert "pgmigrate: --lock-retries 2 has no effect: no lock timeout is set" in out
    migrate("tests", "zero", verbosity=0)
    with override_settings(PGMIGRATE_LOCK_RETRIES=2):
        out = migrate("tests", "0001", "--lock-timeout", "5")
    assert "has no effect" not in out


def test_a_lock_timeout_too_short_to_act_is_noticed_at_run_time(scenario):
    """pgmigrate.W002 at run time, for the lock timeouts the check cannot see: the option
    and the server's. The setting's is the check's (said once, before migrate)."""
    short = "is shorter than the watcher needs to act on blockers"
    out = migrate("tests", "0001", "--lock-timeout", "0.002")
    assert f"pgmigrate: --lock-timeout 0.002 {short}" in out
    migrate("tests", "zero", verbosity=0)
    with override_settings(PGMIGRATE_LOCK_TIMEOUT=None):
        query("ALTER ROLE CURRENT_USER SET lock_timeout = '2ms'")
        connections["default"].close()
        try:
            out = migrate("tests", "0001")
        finally:
            query("ALTER ROLE CURRENT_USER RESET lock_timeout")
            connections["default"].close()
    assert f"pgmigrate: the server's lock_timeout (0.002 s) {short}" in out
    migrate("tests", "zero", verbosity=0)
    with override_settings(PGMIGRATE_LOCK_TIMEOUT=0.002):
        assert short not in migrate("tests", "0001", skip_checks=True)
    migrate("tests", "zero", verbosity=0)
    assert short not in migrate("tests", "0001", "--lock-timeout", "1")
    migrate("tests", "zero", verbosity=0)
    assert short not in migrate("tests", "0001", "--lock-timeout", "0.002", blocking_action="none")


def test_server_lock_timeout_makes_retries_useful():
    connection = connections["default"]
    run_options = options.RunOptions.from_command({"lock_retries": 2})
    effective = options.effective_lock_timeout
    assert "has no effect" in (
        options.retries_without_timeout(run_options, effective(run_options, connection)) or ""
    )
    query("SET lock_timeout = '5s'")
    try:
        assert (
            options.retries_without_timeout(run_options, effective(run_options, connection))
            is None
        )
    finally:
        query("RESET lock_timeout")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--lock-timeout", "nan"], "error: argument --lock-timeout: must be at least 0.001"),
        (["--statement-timeout", "1e12"], "error: argument --statement-timeout: must be at"),
        (["--lock-retries", "inf"], "error: argument --lock-retries: not a whole number"),
        (["--blocking-action", "kill"], "CommandError: --blocking-action: 'kill' is not an"),
        (["--blocking-action", ".show"], "CommandError: --blocking-action: '.show' is not a f"),
        (["--lock-timeout", "1e-400"], "error: argument --lock-timeout: must be at least 0.001"),
        (["--pgmigrate-report", "/nonexistent-dir/r.json"], "CommandError: pgmigrate: --pgm"),
    ],
)
def test_bad_options_on_the_command_line(scenario, args, expected):
    result = manage("migrate", "tests", *args)
    assert result.returncode in (1, 2), result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    assert applied() == []


@pytest.mark.parametrize(
    ("settings", "check_id"),
    [
        ({"PGMIGRATE_LOCK_TIMEOUT": NAN}, "pgmigrate.E005"),
        ({"PGMIGRATE_STATEMENT_TIMEOUT": 1e10}, "pgmigrate.E012"),
        ({"PGMIGRATE_LOCK_RETRY_DELAY": INF}, "pgmigrate.E011"),
        ({"PGMIGRATE_BLOCKING_ACTION": ".Show"}, "pgmigrate.E003"),
        ({"PGMIGRATE_BLOCKING_ACTION": "tests.test_bad_input.NeedsArgs"}, "pgmigrate.E003"),
        ({"PGMIGRATE_BLOCKING_ACTION": "tests.test_bad_input.WithLock"}, "pgmigrate.E003"),
        ({"PGMIGRATE_BLOCKING_ACTION": "tests.test_bad_input.FailsToStart"}, "pgmigrate.E003"),
        ({"PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT": [".RunPython"]}, "pgmigrate.E013"),
        ({"PGMIGRATE_LOCK_RETRIES": 2**63}, "pgmigrate.E010"),
    ],
)
def test_bad_settings_on_the_command_line(scenario, settings, check_id):
    for skip in ([], ["--skip-checks"]):
        result = manage("migrate", "tests", *skip, PGMIGRATE_TEST_SETTINGS=json.dumps(settings))
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert (check_id if not skip else f"CommandError: pgmigrate: {next(iter(settings))}") in (
            result.stderr
        )
    assert applied() == []


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (NeedsArgs, "the class NeedsArgs cannot be made without arguments (missing a required"),
        (
            "tests.test_bad_input.FailsToStart",
            "making the action FailsToStart() failed: RuntimeError: no configuration for this",
        ),
        (WithLock, "WithLock() cannot be copied (cannot pickle '_thread.lock' object)"),
        (".Show", "'.Show' is not a full dotted path: it has an empty part"),
        (
            pgmigrate.Terminate(blocking_activity__backend_start__gte="abc"),
            "has an invalid filter: \u201cabc\u201d value has an invalid format",
        ),
    ],
)
def test_unusable_action_says_why(value, text):
    found = check_messages(PGMIGRATE_BLOCKING_ACTION=value)
    assert found["pgmigrate.E003"].startswith("PGMIGRATE_BLOCKING_ACTION: "), found
    assert text in found["pgmigrate.E003"], found


def test_action_that_cannot_be_copied_stops_migrate_before_anything(scenario):
    """The watcher copies the action at the start of each run: it failed there, mid-run."""
    bad = override_settings(PGMIGRATE_BLOCKING_ACTION=WithLock())
    with bad, pytest.raises(CommandError, match=r"pgmigrate: PGMIGRATE_BLOCKING_ACTION: WithL"):
        migrate("tests")
    assert applied() == []


def test_statement_timeout_exempt_takes_operation_classes_only():
    found = check_messages(PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT=[int])
    assert "<class 'int'> is not an operation class (a subclass of" in found["pgmigrate.E013"]
    assert "pgmigrate.E013" not in check_messages(
        PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT=["django.db.migrations.operations.RunSQL"]
    )


def test_lock_plan_allow_with_a_list_for_a_rule_id(scenario):
    allow = {"tests.0002_add_fields": [["pgmigrate.L001"]]}
    found = check_messages(PGMIGRATE_LOCK_PLAN_ALLOW=allow)
    assert "['pgmigrate.L001'] is not a rule of the lock plan" in found["pgmigrate.E018"]
    bad = override_settings(PGMIGRATE_LOCK_PLAN_ALLOW=allow)
    with bad, pytest.raises(CommandError, match=r"pgmigrate: PGMIGRATE_LOCK_PLAN_ALLOW\["):
        migrate("tests", "--lock-plan", skip_checks=True)


def test_huge_lock_retries_are_refused_not_printed():
    """W004 printed the value: an int of 5000 digits has no ``str``."""
    found = check_messages(PGMIGRATE_LOCK_RETRIES=10**5000)
    assert found["pgmigrate.E010"] == (
        "PGMIGRATE_LOCK_RETRIES must be a whole number from 0 to 9223372036854775807, not an "
        "int too large to show."
    )
    assert "pgmigrate.W004" not in found


# Action filters that only PostgreSQL refuses ----------------------------------------------

#: Filters that Django builds but PostgreSQL refuses, and what it says.
FILTERS_POSTGRESQL_REFUSES = [
    ({"blocking_activity__duration__gte": 5}, "operator does not exist: interval >= integer"),
    ({"wait_duration__gte": 3}, "operator does not exist: interval >= integer"),
    ({"blocking_activity__duration__gte": "abc"}, 'invalid input syntax for type interval: "abc"'),
    ({"blocking_activity__application_name__regex": "("}, "invalid regular expression"),
    ({"blocking_activity__query__iregex": "a{2,1}"}, "invalid regular expression"),
]


def database_check_messages(**settings):
    """The pgmigrate messages of ``manage.py check --database default`` under ``settings``."""
    with override_settings(**settings):
        found = checks.run_checks(databases=["default"], tags=[checks.Tags.database])
    return {message.id: message.msg for message in found if message.id.startswith("pgmigrate")}


@pytest.mark.parametrize(
    ("filters", "text"),
    [pytest.param(f, t, id=next(iter(f))) for f, t in FILTERS_POSTGRESQL_REFUSES],
)
def test_filter_postgresql_refuses_is_a_database_check_error(filters, text):
    action = pgmigrate.Terminate(**filters)
    assert "pgmigrate.E003" not in check_messages(PGMIGRATE_BLOCKING_ACTION=action)
    found = database_check_messages(PGMIGRATE_BLOCKING_ACTION=action)
    assert list(found) == ["pgmigrate.E019"], found
    message = found["pgmigrate.E019"]
    assert message.startswith(f"PGMIGRATE_BLOCKING_ACTION {action!r}: its filters fail on ")
    assert f"database 'default': {text}" in message
    assert "LINE 1" not in message  # the error's first line, not the SQL it quotes


@pytest.mark.parametrize(
    "action",
    [
        pgmigrate.Terminate(blocking_activity__duration__gte=dt.timedelta(seconds=5)),
        pgmigrate.Cancel(blocking_activity__application_name__regex="^(web|worker)-"),
        pgmigrate.Show(blocking_activity__state="idle in transaction", mode="ACCESS_SHARE"),
        pgmigrate.Terminate(),
        None,
    ],
)
def test_filters_postgresql_accepts_pass_the_database_check(action):
    assert database_check_messages(PGMIGRATE_BLOCKING_ACTION=action) == {}


def test_filter_postgresql_refuses_stops_migrate_without_checks(scenario):
    """``call_command`` and ``--skip-checks`` skip the checks: migrate runs the filter
    once before applying anything (without it, the filter failed only once a session
    blocked the migration, and the blocker was left alone)."""
    bad = override_settings(PGMIGRATE_BLOCKING_ACTION=INTEGER_DURATION)
    with bad, pytest.raises(CommandError) as caught:
        migrate("tests")
    assert str(caught.value) == (
        f"pgmigrate: the filters of the blocking action {INTEGER_DURATION!r} fail on database "
        "'default': operator does not exist: interval >= integer. Nothing was migrated."
    )
    assert applied() == []
    # and a good filter runs
    action = pgmigrate.Terminate(blocking_activity__duration__gte=dt.timedelta(seconds=5))
    with override_settings(PGMIGRATE_BLOCKING_ACTION=action):
        migrate("tests", "0001", verbosity=0)
    assert applied() == ["0001_initial"]


def test_filter_postgresql_refuses_on_the_command_line(scenario):
    action = {"PGMIGRATE_TEST_ACTION": "tests.test_bad_input.INTEGER_DURATION"}
    result = manage("check", "--database", "default", **action)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "(pgmigrate.E019) PGMIGRATE_BLOCKING_ACTION Terminate(" in result.stderr
    for skip in ([], ["--skip-checks"]):
        result = manage("migrate", "tests", *skip, **action)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        expected = "CommandError: pgmigrate: the filters of" if skip else "pgmigrate.E019"
        assert expected in result.stderr
    assert applied() == []


def test_filter_postgresql_refuses_in_the_blocking_action_option(scenario):
    """``--blocking-action``: the checks see only the setting; migrate runs the option's
    filters before it applies anything."""
    result = manage(
        "migrate", "tests", "--blocking-action", "tests.test_bad_input.INTEGER_DURATION"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "CommandError: pgmigrate: the filters of the blocking action Terminate(" in (
        result.stderr
    )
    assert "interval >= integer" in result.stderr
    assert applied() == []


# The report path ------------------------------------------------------------------------


def test_unwritable_report_path_stops_before_migrating(scenario, tmp_path):
    path = tmp_path / "missing-dir" / "report.json"
    with pytest.raises(CommandError, match=r"cannot write to .*No such file or directory"):
        migrate("tests", pgmigrate_report=str(path))
    assert applied() == []
    assert not path.parent.exists()


def test_report_path_may_be_a_path_object(scenario, tmp_path):
    path = tmp_path / "report.json"
    migrate("tests", "0001", verbosity=0, pgmigrate_report=path)
    assert json.loads(path.read_text())


def test_report_path_check_leaves_files_as_they_were(tmp_path):
    path = tmp_path / "report.json"
    events.check_report_path(str(path))
    assert not path.exists()
    path.write_text("an earlier report")
    events.check_report_path(str(path))
    assert path.read_text() == "an earlier report"


@pytest.mark.parametrize("outcome", ["applied", "failed"])
def test_report_write_failure_keeps_the_outcome(scenario, sessions, tmp_path, outcome):
    """The report's folder vanishes while migrate runs: the run's own outcome stands."""
    folder = tmp_path / "reports"
    folder.mkdir()
    migrate("tests", "0001", verbosity=0)
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    run = MigrateThread(
        "tests",
        "0002",
        blocking_action="none",
        step_aside=False,
        pgmigrate_report=str(folder / "r.json"),
    )
    wait_until(lambda: is_waiting_on_lock(run.backend_pid), what="migrate waits")
    folder.rmdir()
    if outcome == "applied":
        blocker.release()
        out = run.finish()
        assert applied() == ["0001_initial", "0002_add_fields"]
    else:
        query("SELECT pg_cancel_backend(%s)", [run.backend_pid])
        with pytest.raises(CommandError, match=r"migration tests\.0002_add_fields failed"):
            run.finish()
        out = run.output.getvalue()
        assert applied() == ["0001_initial"]
    assert "pgmigrate: could not write the report to" in out
    assert "No such file or directory" in out


# Missing apps, a server that is down, a read-only database -------------------------------


@pytest.mark.parametrize(
    ("apps", "check_ids"),
    [
        (["pgactivity", "pgmigrate", "tests"], ["pgmigrate.E002"]),
        (["pgmigrate", "tests"], ["pgmigrate.E001", "pgmigrate.E002"]),
    ],
)
def test_missing_dependency_apps_are_check_errors(apps, check_ids):
    settings = json.dumps({"INSTALLED_APPS": apps})
    result = manage("check", PGMIGRATE_TEST_SETTINGS=settings)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    found = sorted({word.strip("():") for word in result.stderr.split() if "pgmigrate.E" in word})
    assert found == check_ids, result.stderr


def test_server_down_is_one_line(scenario):
    result = manage("migrate", "tests", PGMIGRATE_TEST_DATABASE=json.dumps({"PORT": 1}))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("CommandError: pgmigrate: cannot connect to database 'default': ")
    assert lines[0].endswith("Nothing was migrated.")


def test_server_down_raises_the_driver_error_too(scenario):
    """``call_command`` callers can catch the ``OperationalError``, as with Django."""
    connections["default"].close()
    settings = connections["default"].settings_dict
    port = settings["PORT"]
    settings["PORT"] = 1
    try:
        with pytest.raises(OperationalError) as caught:
            migrate("tests")
    finally:
        settings["PORT"] = port
    assert isinstance(caught.value, CommandError)
    assert "cannot connect to database 'default'" in str(caught.value)


@pytest.fixture
def read_only_database(scenario) -> Iterator[str]:
    """The test database, read-only for new sessions (as a hot standby is)."""
    name = connections["default"].settings_dict["NAME"]
    query(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        yield name
    finally:
        query(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')


def test_read_only_database_is_one_clear_line(read_only_database):
    result = manage("migrate", "tests")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    first = next(line for line in result.stderr.splitlines() if line.startswith("CommandError"))
    assert first.startswith(
        "CommandError: pgmigrate: migration tests.0001_initial stopped: database 'default' is "
        "read-only (cannot execute CREATE TABLE in a read-only transaction)"
    ), result.stderr
    assert "Run migrate against the primary." in first
    assert applied() == []


def test_call_command_with_bad_settings_is_a_command_error(scenario):
    with override_settings(PGMIGRATE_LOCK_TIMEOUT=NAN), pytest.raises(CommandError) as caught:
        call_command("migrate", "tests", verbosity=0)
    assert "PGMIGRATE_LOCK_TIMEOUT must be at least 1 millisecond" in str(caught.value)


def test_backoff_of_a_late_attempt_does_not_overflow():
    """A large PGMIGRATE_LOCK_RETRIES reaches attempts whose 2**n no float holds."""
    assert retry.backoff(10_000, 0.001, 3600, rand=lambda: 1.0) == 3600
    assert retry.backoff(3, 0.5, 30, rand=lambda: 0.0) == 1.0
