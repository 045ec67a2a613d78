"""The pgmigrate logger, signals, the end-of-run summary and the JSON report."""

import json
import logging

import pytest
from django.test import override_settings

from pgmigrate import signals
from tests.helpers import MigrateThread, Session, migrate, wait_until, waited_at_least

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


def events_of(caplog):
    return [r for r in caplog.records if r.name == "pgmigrate"]


@override_settings(PGMIGRATE_LOCK_TIMEOUT=30)
def test_log_events_signals_and_summary(scenario, sessions, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="pgmigrate")
    received = []

    def receiver(sender, **fields):
        received.append(fields)

    signals.blocker_ended.connect(receiver)
    try:
        migrate("tests", "0001")
        blocker = Session(application_name="report").hold("tests_beta")
        sessions.append(blocker)
        report = tmp_path / "report.json"
        out = migrate("tests", "0002", pgmigrate_report=str(report))
    finally:
        signals.blocker_ended.disconnect(receiver)

    records = events_of(caplog)
    kinds = [r.event for r in records]
    assert "migration_started" in kinds and "blocked" in kinds and "blocker_ended" in kinds
    ended = next(r for r in records if r.event == "blocker_ended")
    assert ended.blocker_pid == blocker.pid
    assert ended.migration == "tests.0002_add_fields"
    assert ended.database == "default"
    assert ended.levelno == logging.WARNING
    assert not hasattr(ended, "query")  # PGMIGRATE_LOG_QUERIES is off
    finished = [r for r in records if r.event == "migration_finished"][-1]
    assert finished.status == "applied" and finished.duration > 0 and finished.lock_wait > 0
    assert received[0]["blocker_pid"] == blocker.pid
    assert received[0]["application_name"] == "report"

    assert "pgmigrate summary:" in out
    assert "tests.0002_add_fields: applied in" in out and "ended 1 blocker(s)" in out

    data = json.loads(report.read_text())
    assert data["status"] == "applied" and data["database"] == "default"
    migration = next(m for m in data["migrations"] if m["migration"] == "tests.0002_add_fields")
    assert migration["blockers_ended"] == [blocker.pid]
    assert migration["lock_wait"] > 0


@override_settings(
    PGMIGRATE_BLOCKING_ACTION="pgmigrate.Show",
    PGMIGRATE_LOG_QUERIES=True,
    PGMIGRATE_STEP_ASIDE=False,
)
def test_queries_are_logged_only_when_asked(scenario, sessions, caplog):
    caplog.set_level(logging.INFO, logger="pgmigrate")
    migrate("tests", "0001")
    blocker = Session().hold("tests_beta")
    sessions.append(blocker)
    run = MigrateThread("tests", "0002")
    wait_until(lambda: waited_at_least(run.backend_pid, 0.1), what="migrate waits")
    wait_until(lambda: "blocks the migration" in run.output.getvalue(), what="shown")
    blocker.release()
    run.finish()
    shown = next(r for r in events_of(caplog) if r.event == "blocker_shown")
    assert shown.query == "LOCK TABLE tests_beta IN ACCESS SHARE MODE"


def test_quiet_run_has_no_summary(scenario):
    """Applying, unapplying or faking without incident: the output is Django's alone."""
    out = migrate("tests")
    assert "pgmigrate summary" not in out
    assert "pgmigrate summary" not in migrate("tests", "0001")
    assert "pgmigrate summary" not in migrate("tests", "zero", fake=True)


@override_settings(
    PGMIGRATE_BLOCKING_ACTION=None, PGMIGRATE_LOCK_TIMEOUT=0.1, PGMIGRATE_STEP_ASIDE=False
)
def test_lock_timeout_event_without_retries(scenario, sessions, caplog):
    from django.core.management.base import CommandError

    caplog.set_level(logging.INFO, logger="pgmigrate")
    migrate("tests", "0001")
    sessions.append(Session().hold("tests_alpha"))
    with pytest.raises(CommandError):
        migrate("tests", "0002")
    timeouts = [r for r in events_of(caplog) if r.event == "lock_timeout"]
    assert len(timeouts) == 1 and timeouts[0].gave_up and timeouts[0].attempt == 1
    finished = [r for r in events_of(caplog) if r.event == "migration_finished"][-1]
    assert finished.status == "lock_timeout"


def test_a_failing_receiver_does_not_stop_migrate(scenario, caplog):
    def broken(sender, **fields):
        raise RuntimeError("receiver bug")

    signals.migration_started.connect(broken)
    try:
        migrate("tests")
    finally:
        signals.migration_started.disconnect(broken)
    from tests.helpers import applied

    assert applied() == ["0001_initial", "0002_add_fields", "0003_alpha_note"]
    assert any("receiver bug" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00:00.0"), (10, "0:00:10.0"), (59.96, "0:01:00.0"), (3725.25, "1:02:05.2")],
)
def test_transaction_age_format(seconds, text):
    import datetime as dt

    from pgmigrate.actions import _age

    assert _age(dt.timedelta(seconds=seconds)) == text
