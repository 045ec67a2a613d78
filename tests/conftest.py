from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder
from django.test import override_settings

from tests.helpers import migrate, query

POSTGRES_ALIASES = ("default", "other")


def _reset_tests_app(using: str) -> None:
    """Drop the tables of the ``tests`` app and forget its migrations."""
    tables = query(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        " AND tablename LIKE 'tests\\_%%'",
        using=using,
    )
    tables.append(("pgmigrate_progress",))
    for (table,) in tables:
        query(f'DROP TABLE IF EXISTS "{table}" CASCADE', using=using)
    query("DROP FUNCTION IF EXISTS tests_slow(text) CASCADE", using=using)
    query("DROP SEQUENCE IF EXISTS tests_race_seq", using=using)
    recorder = MigrationRecorder(connections[using])
    recorder.ensure_schema()
    recorder.migration_qs.filter(app="tests").delete()


@pytest.fixture
def scenario(request: pytest.FixtureRequest, transactional_db: None) -> Iterator[str]:
    """Use the migrations of ``tests/scenarios/<name>`` for the ``tests`` app.

    Parametrize indirectly or mark the test with ``@pytest.mark.scenario("name")``.
    """
    marker = request.node.get_closest_marker("scenario")
    name = marker.args[0] if marker else getattr(request, "param", "basic")
    for using in POSTGRES_ALIASES:
        _reset_tests_app(using)
    with override_settings(MIGRATION_MODULES={"tests": f"tests.scenarios.{name}"}):
        yield name
    for using in POSTGRES_ALIASES:
        _reset_tests_app(using)


@pytest.fixture
def contenttypes(scenario: str) -> Iterator[None]:
    """django.contrib.contenttypes installed and migrated, as in most projects."""
    apps = ["django.contrib.contenttypes", "pgactivity", "pglock", "pgmigrate", "tests"]
    with override_settings(INSTALLED_APPS=apps):
        migrate("contenttypes")
        yield
        migrate("contenttypes", "zero")
    query("DELETE FROM django_migrations WHERE app = 'contenttypes'")


@pytest.fixture
def sessions() -> Iterator[list]:
    """Collects test-made sessions and closes them all at the end of the test."""
    opened: list = []
    yield opened
    for session in opened:
        session.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario(name): migrations scenario for the tests app")


def pytest_sessionstart(session: pytest.Session) -> None:
    """With ``$TEST_POSTGRES_VERSION`` set (as in each nox cell), stop unless the tests'
    server is of that major version."""
    from tests import pgserver

    wanted = os.environ.get(pgserver.VERSION_VARIABLE)
    if not wanted:
        return
    version = pgserver.server_version(pgserver.database_url())
    if version.split(".")[0] != wanted:
        raise pytest.UsageError(
            f"the tests' server is PostgreSQL {version}, not {pgserver.VERSION_VARIABLE}={wanted}"
        )


def pytest_report_header(config: pytest.Config) -> str:
    from tests import pgserver

    return f"postgresql: {pgserver.server_version(pgserver.database_url())}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Drop the databases that settings.py created for this run (``<name>_other``), so a
    ``$DATABASE_URL`` server is left as it was found. pytest-django drops its test_* ones."""
    from django.conf import settings

    from tests import pgserver

    if settings.configured:
        for name in getattr(settings, "TESTS_CREATED_DATABASES", []):
            pgserver.drop_database(pgserver.database_url(), name)


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    for using in POSTGRES_ALIASES:
        connections[using].close()
