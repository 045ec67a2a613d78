"""Blockers of every kind of lock wait: relation locks, row locks, and the snapshot waits of
``CREATE INDEX CONCURRENTLY``."""

import pytest
from django.test import override_settings

from tests.helpers import Session, applied, is_alive, migrate, query

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "other"]),
    pytest.mark.scenario("waits"),
    pytest.mark.usefixtures("scenario"),
]


@override_settings(PGMIGRATE_LOCK_TIMEOUT=30)
def test_row_lock_blocker_is_ended(sessions):
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (id, name) VALUES (1, 'app')")
    blocker = Session(application_name="row-locker")
    sessions.append(blocker)
    blocker.connection.set_autocommit(False)
    blocker.execute("SELECT * FROM tests_alpha WHERE id = 1 FOR UPDATE")

    out = migrate("tests", "0002")

    assert f"terminated 1 session blocking the migration: pid {blocker.pid}" in out
    assert not is_alive(blocker.pid)
    assert query("SELECT name FROM tests_alpha WHERE id = 1") == [("migrated",)]


@override_settings(PGMIGRATE_LOCK_TIMEOUT=30)
def test_snapshot_blocker_of_create_index_concurrently_is_ended(sessions):
    migrate("tests", "0002")
    # A transaction holding a snapshot, on another table: CREATE INDEX CONCURRENTLY waits for
    # it to end before the index can be used.
    blocker = Session(application_name="old-snapshot")
    sessions.append(blocker)
    blocker.connection.set_autocommit(False)
    blocker.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    blocker.execute("SELECT count(*) FROM tests_gamma")
    bystander = Session(application_name="bystander")  # no transaction: not a blocker
    sessions.append(bystander)

    out = migrate("tests", "0003")

    assert f"terminated 1 session blocking the migration: pid {blocker.pid}" in out
    assert not is_alive(blocker.pid)
    assert is_alive(bystander.pid)
    assert applied()[-1] == "0003_index_concurrently"
    assert query(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'tests_alpha_name_idx'::regclass"
    ) == [(True,)]
