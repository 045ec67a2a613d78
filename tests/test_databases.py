"""--database, other databases, bystanders and non-PostgreSQL aliases."""

import threading

import pytest
from django.db import connections
from django.test import override_settings

from tests import actions
from tests.helpers import (
    MigrateThread,
    Session,
    applied,
    columns,
    is_alive,
    is_waiting_on_lock,
    migrate,
    query,
    wait_until,
    watcher_threads,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other", "sqlite"])


@override_settings(PGMIGRATE_BLOCKING_ACTION="tests.actions.Gated", PGMIGRATE_LOCK_TIMEOUT=30)
def test_database_option_is_honoured(scenario, sessions):
    migrate("tests", "0001", database="other")
    migrate("tests", "0001", database="default")
    blocker = Session("other").hold("tests_beta")
    same_table_elsewhere = Session("default").hold("tests_beta")
    sessions += [blocker, same_table_elsewhere]

    actions.Gated.gate.clear()
    run = MigrateThread("tests", "0002", database="other")
    pid = run.backend_pid
    wait_until(lambda: is_waiting_on_lock(pid, "other"), what="the migration waits")
    datname = query("SELECT datname FROM pg_stat_activity WHERE pid = %s", [pid], using="other")
    actions.Gated.gate.set()
    out = run.finish()

    assert "(database 'other')" in out
    assert datname == [(connections["other"].settings_dict["NAME"],)]
    assert not is_alive(blocker.pid, "other")
    assert is_alive(same_table_elsewhere.pid, "default")
    assert applied("other") == ["0001_initial", "0002_add_fields"]
    assert applied("default") == ["0001_initial"]
    assert "flag" not in columns("tests_beta", "default")


@override_settings(PGMIGRATE_BLOCKING_ACTION="tests.actions.Gated", PGMIGRATE_LOCK_TIMEOUT=30)
def test_bystanders_are_left_alone(scenario, sessions):
    migrate("tests", "0001")
    blocker = Session(application_name="blocker").hold("tests_beta")
    bystander = Session(application_name="bystander").hold("tests_gamma", "ROW EXCLUSIVE")
    queued = Session(application_name="queued")
    sessions += [blocker, bystander, queued]
    actions.Gated.gate.clear()

    run = MigrateThread("tests", "0002")
    pid = run.backend_pid
    wait_until(lambda: is_waiting_on_lock(pid), what="the migration waits on tests_beta")
    reader = threading.Thread(target=queued.execute, args=("SELECT count(*) FROM tests_beta",))
    reader.start()
    wait_until(lambda: is_waiting_on_lock(queued.pid), what="a reader queues behind migrate")
    actions.Gated.gate.set()
    out = run.finish()
    reader.join(30)

    assert not is_alive(blocker.pid)
    assert is_alive(bystander.pid)
    assert is_alive(queued.pid)
    assert f"pid {blocker.pid}" in out
    assert f"pid {bystander.pid}" not in out and f"pid {queued.pid}" not in out


def test_non_postgresql_alias_is_plain_django(scenario):
    out = migrate("tests", database="sqlite")
    try:
        assert "pgmigrate" not in out
        assert "Applying tests.0002_add_fields... OK" in out
        assert not watcher_threads()
        tables = connections["sqlite"].introspection.table_names()
        assert "tests_alpha" in tables
    finally:
        migrate("tests", "zero", database="sqlite", verbosity=0)


class TestsAppOnOther:
    """A database router that keeps the ``tests`` app's tables on ``other`` only."""

    def allow_migrate(self, db: str, app_label: str, **hints: object) -> bool | None:
        return db == "other" if app_label == "tests" else None


@override_settings(DATABASE_ROUTERS=[TestsAppOnOther()])
def test_progress_table_only_where_something_is_recorded(scenario):
    """Django records the ``tests`` migrations on both databases but runs their operations
    on ``other`` only: ``default`` has nothing to record, so it gets no pgmigrate_progress."""
    query("DROP TABLE IF EXISTS pgmigrate_progress")
    query("DROP TABLE IF EXISTS pgmigrate_progress", using="other")
    migrate("tests", database="default")
    migrate("tests", database="other")
    assert applied() == applied("other") == ["0001_initial", "0002_add_fields", "0003_alpha_note"]
    assert "flag" in columns("tests_alpha", using="other")
    assert query("SELECT to_regclass('pgmigrate_progress')") == [(None,)]
    assert query("SELECT to_regclass('pgmigrate_progress')::text", using="other") == [
        ("pgmigrate_progress",)
    ]
