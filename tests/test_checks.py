"""System checks: bad settings give errors with stable ids, not tracebacks."""

import datetime as dt

import pytest
from django.core import checks
from django.test import override_settings


def ids(**settings):
    with override_settings(**settings):
        return {message.id: message.msg for message in checks.run_checks()}


def test_clean_settings_pass():
    assert not [i for i in ids() if i.startswith("pgmigrate")]


@pytest.mark.parametrize(
    ("setting", "value", "check_id", "text"),
    [
        ("PGMIGRATE_BLOCKING_ACTION", "no.such.Action", "pgmigrate.E003", "cannot import"),
        ("PGMIGRATE_BLOCKING_ACTION", "datetime.timedelta", "pgmigrate.E003", "BlockingAction"),
        ("PGMIGRATE_BLOCKING_ACTION", 42, "pgmigrate.E003", "not 42"),
        (
            "PGMIGRATE_BLOCKING_ACTION",
            "pgmigrate.BlockingAction",
            "pgmigrate.E003",
            "BlockingAction does not implement worker()",
        ),
        ("PGMIGRATE_BLOCKING_ACTION_INTERVAL", "fast", "pgmigrate.E004", "number of seconds"),
        ("PGMIGRATE_BLOCKING_ACTION_INTERVAL", 0, "pgmigrate.E004", "between 0.001 and 60"),
        ("PGMIGRATE_BLOCKING_ACTION_INTERVAL", 61, "pgmigrate.E004", "between"),
        ("PGMIGRATE_LOCK_TIMEOUT", "1s", "pgmigrate.E005", "number of seconds"),
        ("PGMIGRATE_LOCK_TIMEOUT", dt.timedelta(0), "pgmigrate.E005", "at least 1 millisecond"),
        ("PGMIGRATE_LOCK_TIMEOUT", True, "pgmigrate.E005", "number of seconds"),
        ("PGMIGRATE_PATCH_MIGRATE", "yes", "pgmigrate.E006", "True or False"),
        ("PGMIGRATE_ATOMIC", 1, "pgmigrate.E007", "True or False"),
        ("PGMIGRATE_LOCK_RETRIES", -1, "pgmigrate.E010", "whole number >= 0"),
        ("PGMIGRATE_LOCK_RETRIES", 1.5, "pgmigrate.E010", "whole number >= 0"),
        ("PGMIGRATE_LOCK_RETRY_DELAY", 0, "pgmigrate.E011", "at least 1 millisecond"),
        ("PGMIGRATE_LOCK_RETRY_MAX_DELAY", "1m", "pgmigrate.E011", "number of seconds"),
        ("PGMIGRATE_STATEMENT_TIMEOUT", -1, "pgmigrate.E012", "at least 1 millisecond"),
        ("PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT", "RunPython", "pgmigrate.E013", "a list"),
        ("PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT", ["no.Such"], "pgmigrate.E013", "cannot import"),
        ("PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT", [42], "pgmigrate.E013", "not an operation"),
        ("PGMIGRATE_LOG_QUERIES", "yes", "pgmigrate.E014", "True or False"),
    ],
)
def test_bad_setting(setting, value, check_id, text):
    found = ids(**{setting: value})
    assert check_id in found, found
    assert setting in found[check_id] or "BlockingAction" in found[check_id]
    assert text in found[check_id]


def test_a_first_retry_delay_above_the_cap():
    found = ids(PGMIGRATE_LOCK_RETRY_DELAY=10, PGMIGRATE_LOCK_RETRY_MAX_DELAY=1)
    assert "each retry waits up to 1 s, never 10 s" in found["pgmigrate.W006"]
    assert "pgmigrate.W006" not in ids(
        PGMIGRATE_LOCK_RETRY_DELAY=1, PGMIGRATE_LOCK_RETRY_MAX_DELAY=1
    )


def test_bad_filter():
    import pgmigrate

    found = ids(PGMIGRATE_BLOCKING_ACTION=pgmigrate.Terminate(no_such_field=1))
    assert "invalid filter" in found["pgmigrate.E003"]


@pytest.mark.parametrize(("app", "check_id"), [("pgactivity", "E001"), ("pglock", "E002")])
def test_missing_dependency_app(app, check_id):
    apps = [a for a in ["pgactivity", "pglock", "pgmigrate", "tests"] if a != app]
    found = ids(INSTALLED_APPS=apps)
    assert f"pgmigrate.{check_id}" in found
    assert app in found[f"pgmigrate.{check_id}"]


def test_checks_are_silent_when_pgmigrate_is_not_installed():
    """Django's check registry keeps pgmigrate's checks after an
    ``override_settings(INSTALLED_APPS=...)`` without pgmigrate: they must say nothing."""
    found = ids(INSTALLED_APPS=["django.contrib.contenttypes", "tests"], PGMIGRATE_ATOMIC=1)
    assert not [i for i in found if i.startswith("pgmigrate")], found


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (["pg_dump"], "must be a dict"),
        ({"app_name": ["x"]}, "'app_name' is not a column of pg_stat_activity"),
        ({"application_name": "pg_dump"}, "must be a list of patterns"),
        ({"application_name": [1]}, "must hold strings only"),
    ],
)
def test_bad_protected_setting(value, text):
    found = ids(PGMIGRATE_PROTECTED=value)
    assert text in found["pgmigrate.E008"]


def test_bad_concurrent_migrate_setting():
    found = ids(PGMIGRATE_CONCURRENT_MIGRATE="queue")
    assert 'must be "wait" or "fail"' in found["pgmigrate.E009"]


def test_lock_timeout_too_short_for_the_watcher():
    found = ids(PGMIGRATE_LOCK_TIMEOUT=0.01)
    assert "shorter than the watcher needs to act" in found["pgmigrate.W002"]
    assert "pgmigrate.W002" not in ids(PGMIGRATE_LOCK_TIMEOUT=0.01, PGMIGRATE_BLOCKING_ACTION=None)
    assert "pgmigrate.W002" not in ids(PGMIGRATE_LOCK_TIMEOUT=0.5)
