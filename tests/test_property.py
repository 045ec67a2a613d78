"""Property: over random mixes of sessions, exactly the unprotected blockers are ended."""

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import (
    MigrateThread,
    Session,
    columns,
    is_alive,
    is_waiting_on_lock,
    migrate,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

#: Kinds of session: what it holds, and whether pgmigrate may end it.
KINDS = {
    "blocker": ("tests_beta", "ACCESS SHARE"),
    "protected": ("tests_beta", "ACCESS SHARE"),
    "bystander": ("tests_gamma", "ROW EXCLUSIVE"),
    "other-database": ("tests_beta", "ACCESS SHARE"),
}


def expected_columns(table: str) -> set[str]:
    """The columns Django's migration state says ``table`` has after 0002."""
    state = MigrationLoader(connection).project_state(("tests", "0002_add_fields"))
    model = next(m for m in state.apps.get_models() if m._meta.db_table == table)
    return {field.column for field in model._meta.local_fields}


@override_settings(PGMIGRATE_PROTECTED={"application_name": ["protected-*"]})
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kinds=st.lists(st.sampled_from(sorted(KINDS)), max_size=6))
def test_exactly_the_unprotected_blockers_are_ended(scenario, kinds):
    migrate("tests", "0001", verbosity=0)
    migrate("tests", "0001", database="other", verbosity=0)
    sessions = []
    try:
        for number, kind in enumerate(kinds):
            table, mode = KINDS[kind]
            using = "other" if kind == "other-database" else "default"
            session = Session(using, application_name=f"{kind}-{number}")
            sessions.append((kind, session.hold(table, mode)))
        run = MigrateThread("tests", "0002")
        protected = [s for kind, s in sessions if kind == "protected"]
        if protected:
            wait_until(
                lambda: run.output.getvalue().count("is protected") == len(protected),
                what="each protected blocker was shown",
            )
            wait_until(lambda: is_waiting_on_lock(run.backend_pid), what="migrate still waits")
            for session in protected:
                session.release()
        run.finish()

        for kind, session in sessions:
            assert is_alive(session.pid, session.using) == (kind != "blocker"), (kind, kinds)
        for table in ("tests_alpha", "tests_beta", "tests_gamma"):
            assert columns(table) == expected_columns(table)
    finally:
        for _, session in sessions:
            session.close()
        migrate("tests", "0001", verbosity=0)
