"""Stepping out of the lock queue (``pgmigrate.aside``): while the sessions blocking the
migration are ones pgmigrate does not end, the app's queries never queue behind it."""

import pytest
from django.test import override_settings

from tests.helpers import (
    MigrateThread,
    Session,
    applied,
    columns,
    is_waiting_on_lock,
    migrate,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

STEPPED = "stepped out of the lock queue"


def app_reads(session: Session, table: str = "tests_beta") -> None:
    """An app query on ``table`` that fails rather than queue for long."""
    session.execute("SET lock_timeout = '10s'")
    session.execute(f"SELECT count(*) FROM {table}")


@pytest.mark.scenario("basic")
@override_settings(PGMIGRATE_PROTECTED={"application_name": ["nightly-*"]})
def test_steps_aside_for_a_protected_blocker(scenario, sessions):
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="nightly-export").hold("tests_beta")
    app = Session(application_name="app")
    sessions += [blocker, app]
    run = MigrateThread("tests", "0002")
    wait_until(lambda: STEPPED in run.output.getvalue(), what="migrate stepped aside")
    assert not is_waiting_on_lock(run.backend_pid)
    app_reads(app)
    blocker.release()
    out = run.finish()
    assert "flag" in columns("tests_beta")
    assert applied() == ["0001_initial", "0002_add_fields"]
    print(out)
