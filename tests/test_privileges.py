"""A migrating role without superuser rights, as on managed PostgreSQL."""

from collections.abc import Iterator
from io import StringIO

import pytest
from django.core import checks
from django.core.management import call_command
from django.db import connections
from django.test import override_settings

from tests.helpers import (
    TERMINATE_SIGNAL,
    WATCHER_ERROR,
    MigrateThread,
    Session,
    WatcherStatements,
    applied,
    is_alive,
    is_waiting_on_lock,
    query,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other", "migrator"])

MIGRATOR, APP = "pgm_migrator", "pgm_app"


def _create_role(name: str) -> None:
    if not query("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]):
        query(f"CREATE ROLE {name} LOGIN NOSUPERUSER")


def _drop_role(name: str) -> None:
    query(f"DROP OWNED BY {name} CASCADE")
    query(f"DROP ROLE {name}")


@pytest.fixture
def roles(scenario) -> Iterator[None]:
    """A migrating role (owner of the tests tables) and an app role, both non-superuser."""
    for role in (MIGRATOR, APP):
        _create_role(role)
    query(f"GRANT CREATE ON SCHEMA public TO {MIGRATOR}")
    query(f"GRANT ALL ON TABLE django_migrations TO {MIGRATOR}")
    query(f"GRANT ALL ON SEQUENCE django_migrations_id_seq TO {MIGRATOR}")
    query(f"ALTER DEFAULT PRIVILEGES FOR ROLE {MIGRATOR} GRANT SELECT ON TABLES TO {APP}")
    yield
    query("DELETE FROM django_migrations WHERE app = 'tests'")
    for role in (MIGRATOR, APP):
        _drop_role(role)


def _migrate_as_migrator_blocked_by(*blockers):
    run = MigrateThread("tests", "0002", database="migrator")
    wait_until(lambda: is_waiting_on_lock(run.backend_pid), what="migrate waits")
    return run


@override_settings(PGMIGRATE_LOCK_TIMEOUT=30, PGMIGRATE_STEP_ASIDE=False)  # it keeps trying
def test_permission_error_is_reported_once_with_the_remedy(roles, sessions):
    MigrateThread("tests", "0001", database="migrator").finish()
    app_session = Session(user=APP, application_name="app").hold("tests_beta")
    superuser_session = Session(application_name="admin").hold("tests_beta")
    sessions += [app_session, superuser_session]

    run = _migrate_as_migrator_blocked_by(app_session, superuser_session)
    wait_until(
        lambda: run.output.getvalue().count("could not run pg_terminate_backend") == 2,
        what="both failures reported",
    )
    # Let the watcher try again a few times: each failure is reported once only.
    wait_until(
        lambda: query(
            "SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted"
            " AND now() - waitstart > interval '300 ms'",
            [run.backend_pid],
        ),
        what="migrate waited 0.3 s",
    )
    assert is_alive(app_session.pid) and is_alive(superuser_session.pid)
    app_session.release()
    superuser_session.release()
    out = run.finish()  # the watcher's errors do not spoil the migration's outcome

    assert out.count("could not run pg_terminate_backend") == 2
    assert f'remedy: GRANT pg_signal_backend TO "{MIGRATOR}"' in out
    assert "only a superuser can end a superuser's session" in out
    assert applied("migrator") == ["0001_initial", "0002_add_fields"]


@override_settings(PGMIGRATE_LOCK_TIMEOUT=30)
def test_other_blockers_are_still_ended(roles, sessions):
    """One blocker out of reach: the first look's statement ends none of them
    (``watcher.FIRST_END``); the watcher ends the others and says why that one stays."""
    recorder = WatcherStatements()
    with recorder.recording():
        _other_blockers_are_still_ended(sessions)
    # Ended by the watcher's signal statement (beyond its warm-up), not by the look.
    assert recorder.beyond_warm_up(TERMINATE_SIGNAL) >= 1, recorder.statements


def _other_blockers_are_still_ended(sessions: list) -> None:
    query(f"GRANT pg_signal_backend TO {MIGRATOR}")
    MigrateThread("tests", "0001", database="migrator").finish()
    app_session = Session(user=APP, application_name="app").hold("tests_beta")
    superuser_session = Session(application_name="admin").hold("tests_beta")
    sessions += [app_session, superuser_session]

    # Not "waits on the lock": it ends the one and steps out of the queue for the other, maybe
    # before a look could see it wait.
    run = MigrateThread("tests", "0002", database="migrator")
    wait_until(lambda: not is_alive(app_session.pid), what="the app session was ended")
    wait_until(
        lambda: "could not run pg_terminate_backend" in run.output.getvalue(),
        what="the superuser failure reported",
    )
    assert is_alive(superuser_session.pid)
    superuser_session.release()
    out = run.finish()
    assert f"terminated 1 session blocking the migration: pid {app_session.pid}" in out
    assert applied("migrator") == ["0001_initial", "0002_add_fields"]


def test_privilege_warning(roles):
    found = checks.run_checks(databases=["migrator"])
    warnings = [m for m in found if m.id == "pgmigrate.W003"]
    assert len(warnings) == 1
    assert f'GRANT pg_signal_backend TO "{MIGRATOR}"' in warnings[0].hint
    query(f"GRANT pg_signal_backend TO {MIGRATOR}")
    assert not [m for m in checks.run_checks(databases=["migrator"]) if m.id == "pgmigrate.W003"]
    assert not [m for m in checks.run_checks(databases=["default"]) if m.id == "pgmigrate.W003"]


def _migrate_as_migrator(*args: str) -> str:
    out = StringIO()
    try:
        call_command("migrate", *args, database="migrator", stdout=out, stderr=out, no_color=True)
    finally:
        connections["migrator"].close()
    return out.getvalue()


def test_a_role_with_room_for_one_more_connection_migrates(roles):
    """The watcher connects only after the migration's own connection: a role that may open
    one more connection migrates (unwatched, as it says), and a run with nothing to apply
    says nothing of the watcher."""
    MigrateThread("tests", "0001", database="migrator").finish()
    connections["migrator"].close()
    query(f"ALTER ROLE {MIGRATOR} CONNECTION LIMIT 1")
    try:
        out = _migrate_as_migrator("tests", "0001")
        assert "No migrations to apply" in out
        assert WATCHER_ERROR not in out, out
        out = _migrate_as_migrator("tests", "0002")
        assert "pgmigrate: error while connecting" in out, out
        assert "too many connections for role" in out, out
        assert applied("migrator") == ["0001_initial", "0002_add_fields"]
    finally:
        query(f"ALTER ROLE {MIGRATOR} CONNECTION LIMIT -1")


DEPLOYER = "pgm_deployer"


@pytest.fixture
def assumed_role(roles) -> Iterator[None]:
    """The "migrator" alias logs in as another role, a member of the migrating role, and
    switches to the migrating role when it connects (``-c role=...``, as Django's
    ``assume_role`` does with a ``SET ROLE``)."""
    _create_role(DEPLOYER)
    query(f"GRANT {MIGRATOR} TO {DEPLOYER}")
    settings = connections["migrator"].settings_dict
    saved = {"USER": settings["USER"], "OPTIONS": settings.get("OPTIONS", {})}
    connections["migrator"].close()
    settings["USER"] = DEPLOYER
    settings["OPTIONS"] = {**saved["OPTIONS"], "options": f"-c role={MIGRATOR}"}
    try:
        yield
    finally:
        connections["migrator"].close()
        settings.update(saved)
        _drop_role(DEPLOYER)


BLIND = "pgmigrate: the watcher cannot see the migrating backend"


def test_a_watcher_that_cannot_see_the_migration_says_so(assumed_role, sessions):
    """The role the connection switches to lacks the privileges of the role that logged in:
    PostgreSQL hides the migrating backend's state from it, so the watcher cannot see the
    migration wait. It says so and why; with pg_read_all_stats it sees, and says nothing."""
    out = _migrate_as_migrator("tests", "0001")
    assert out.count(BLIND) == 1, out
    assert f"its role '{MIGRATOR}'" in out and f"logged in is '{DEPLOYER}'" in out
    assert f'GRANT pg_read_all_stats TO "{MIGRATOR}"' in out
    query(f"GRANT pg_read_all_stats TO {MIGRATOR}")
    out = _migrate_as_migrator("tests", "0002")
    assert BLIND not in out, out
    assert applied("migrator") == ["0001_initial", "0002_add_fields"]


def test_a_watcher_that_sees_the_migration_says_nothing(roles):
    out = _migrate_as_migrator("tests", "0001")
    assert BLIND not in out, out


def test_a_role_that_cannot_see_its_own_backend_is_warned_of(assumed_role):
    """pgmigrate.W007, with the remedy; none once the role has pg_read_all_stats, nor for a
    connection that logs in as the migrating role."""
    found = [m for m in checks.run_checks(databases=["migrator"]) if m.id == "pgmigrate.W007"]
    assert len(found) == 1, found
    assert f"logs in as '{DEPLOYER}'" in found[0].msg
    assert f'GRANT pg_read_all_stats TO "{MIGRATOR}"' in found[0].hint
    query(f"GRANT pg_read_all_stats TO {MIGRATOR}")
    assert not [m for m in checks.run_checks(databases=["migrator"]) if m.id == "pgmigrate.W007"]


def test_a_role_that_logs_in_itself_is_not_warned_of(roles):
    for using in ("migrator", "default"):
        found = checks.run_checks(databases=[using])
        assert not [m for m in found if m.id == "pgmigrate.W007"], using
