"""Review of the urgent path (the first look reading the lock graph along, the deferred
``blocked_locks`` filter, ``prepare_all``): cases its change got wrong."""

import threading
from typing import Any

import pytest
from django.test import override_settings

from pgmigrate import signals
from tests.helpers import (
    MigrateThread,
    Session,
    applied,
    is_alive,
    migrate,
    wait_until,
    watcher_threads,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


# A long interval: the first look comes 0.2 s after the ALTER starts, when it waits for sure.
# A protection rule (matching nobody): the watcher judges in Python, after the event (without
# one, the first look's statement ends the blocker while it blocks, ``watcher.FIRST_END``).
@override_settings(
    PGMIGRATE_BLOCKING_ACTION_INTERVAL=1.0,
    PGMIGRATE_PROTECTED={"application_name": ["nobody"]},
)
def test_a_blocker_that_let_go_while_the_blocked_event_was_sent_is_not_ended(scenario, sessions):
    """The graph the first look read along is not acted on once a receiver of ``blocked``
    (or a log handler) took long: meanwhile the blocker rolled back to a savepoint, freeing
    its lock in the same transaction, and the migration went on. Ending it then ends a
    session that no longer blocks anything."""
    migrate("tests", "0001", verbosity=0)
    blocker = Session()
    sessions.append(blocker)
    blocker.connection.set_autocommit(False)
    blocker.execute("SAVEPOINT held")
    blocker.execute("LOCK TABLE tests_beta IN ACCESS SHARE MODE")
    observer = Session()
    sessions.append(observer)
    let_go = threading.Event()

    def applied_0002() -> bool:
        rows = observer.execute(
            "SELECT 1 FROM django_migrations WHERE app = 'tests' AND name = '0002_add_fields'"
        )
        return bool(rows)

    def slow_receiver(**fields: Any) -> None:
        if let_go.is_set():
            return
        let_go.set()
        blocker.execute("ROLLBACK TO SAVEPOINT held")  # its transaction goes on
        wait_until(applied_0002, what="the migration went on")

    signals.blocked.connect(slow_receiver, weak=False)
    try:
        run = MigrateThread("tests", "0002")
        output = run.finish()
    finally:
        signals.blocked.disconnect(slow_receiver)
    wait_until(lambda: not watcher_threads(), what="the watcher stopped")
    assert let_go.is_set()
    assert applied() == ["0001_initial", "0002_add_fields"]
    assert is_alive(blocker.pid), output
    assert "terminated" not in output
    blocker.release()
