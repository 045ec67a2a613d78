"""PGMIGRATE_LOCK_TIMEOUT on the migrating connection."""

import datetime as dt

import pytest
from django.core.management.base import CommandError
from django.test import override_settings

from tests.helpers import Session, applied, columns, migrate, watcher_threads

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


@pytest.mark.parametrize("using", ["default", "other"])
@pytest.mark.parametrize("timeout", [0.2, dt.timedelta(milliseconds=200)], ids=["float", "td"])
def test_lock_timeout_stops_migrate_clearly(scenario, sessions, using, timeout):
    migrate("tests", "0001", database=using)
    blocker = Session(using).hold("tests_beta")
    sessions.append(blocker)

    with (
        override_settings(
            PGMIGRATE_LOCK_TIMEOUT=timeout,
            PGMIGRATE_BLOCKING_ACTION=None,
            PGMIGRATE_STEP_ASIDE=False,
        ),
        pytest.raises(CommandError) as raised,
    ):
        migrate("tests", database=using)

    message = str(raised.value)
    assert "migration tests.0002_add_fields stopped" in message
    assert "lock timeout (PGMIGRATE_LOCK_TIMEOUT = 0.2 s)" in message
    # Applied before: stays applied. The blocked one and those after it: not applied.
    assert applied(using) == ["0001_initial"]
    assert "note" not in columns("tests_alpha", using)
    assert not watcher_threads()


def test_lock_timeout_is_restored_afterwards(scenario):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        before = cursor.fetchone()[0]
    with override_settings(PGMIGRATE_LOCK_TIMEOUT=1.5):
        migrate("tests")
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone()[0] == before
