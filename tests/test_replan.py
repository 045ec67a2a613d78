"""A ``migrate`` that waited for another one plans again (``PGMigrateExecutor._replan``): its
migrations keep what Django's ``pre_migrate`` gave them, and those only the new plan has get
it too (contenttypes' ``RenameContentType`` after a ``RenameModel``), as they would had it
planned after the other one."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pglock
import pytest
from django.core.management import call_command
from django.test import override_settings

from pgmigrate.command import DjangoMigrateCommand
from pgmigrate.migrate_lock import LOCK_NAME
from tests.helpers import MigrateThread, Session, applied, query, wait_until

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

CONTENTTYPE_APPS = ["django.contrib.contenttypes", "pgactivity", "pglock", "pgmigrate", "tests"]


def _tests_content_types() -> list[str]:
    rows = query("SELECT model FROM django_content_type WHERE app_label = 'tests' ORDER BY 1")
    return [model for (model,) in rows]


@pytest.fixture
def gamma(contenttypes: None) -> Iterator[None]:
    """contenttypes installed, with a content type for the tests app's Gamma model."""
    with override_settings(INSTALLED_APPS=CONTENTTYPE_APPS):
        query("INSERT INTO django_content_type (app_label, model) VALUES ('tests', 'gamma')")
        try:
            yield
        finally:
            query("DELETE FROM django_content_type WHERE app_label = 'tests'")
            query("DELETE FROM django_migrations WHERE app = 'elsewhere'")


def _after_another_migrate(change: Callable[[], None], *args: str, sessions: list) -> str:
    """Run ``migrate *args`` while another migrate holds the migrate lock; once it waits,
    ``change`` the applied migrations (as the other migrate would) and release the lock.
    Returns the output."""
    other = Session(application_name="other-migrate")
    sessions.append(other)
    lock_id = pglock.advisory(LOCK_NAME).int_lock_id
    other.execute("SELECT pg_advisory_lock(%s)", [lock_id])
    run = MigrateThread(*args)
    wait_until(
        lambda: "another migrate is running" in run.output.getvalue(),
        what="migrate waits for the other one",
    )
    change()
    other.execute("SELECT pg_advisory_unlock(%s)", [lock_id])
    out = run.finish()
    assert "planning again" in out
    return out


@pytest.mark.scenario("rename_replan")
def test_a_plan_made_again_unapplies_the_content_type_rename(gamma, sessions):
    """Unapplying a RenameModel after planning again renames its content type back."""
    MigrateThread("tests", "0002").finish()
    assert _tests_content_types() == ["delta"]

    def another_app_applied() -> None:
        query(
            "INSERT INTO django_migrations (app, name, applied)"
            " VALUES ('elsewhere', '0001_initial', now())"
        )

    _after_another_migrate(another_app_applied, "tests", "0001", sessions=sessions)
    assert applied() == ["0001_initial"]
    assert _tests_content_types() == ["gamma"]


@pytest.mark.scenario("rename_replan")
def test_a_migration_only_the_new_plan_has_renames_its_content_type(gamma, sessions):
    """The other migrate unapplies the RenameModel this one's plan started after: planned
    again, this one applies it, with the content type renamed as in Django's plan."""
    MigrateThread("tests", "0002").finish()

    def rename_unapplied() -> None:
        call_command(DjangoMigrateCommand(), "tests", "0001", verbosity=0)
        assert _tests_content_types() == ["gamma"]

    out = _after_another_migrate(rename_unapplied, "tests", sessions=sessions)
    assert "Applying tests.0002_rename... OK" in out
    assert applied() == ["0001_initial", "0002_rename", "0003_note"]
    assert _tests_content_types() == ["delta"]


@pytest.mark.scenario("rename_replan")
def test_a_migration_of_both_plans_renames_its_content_type_once(gamma, sessions):
    """Planned again after another app's migration, the RenameModel keeps Django's one
    RenameContentType (the one pre_migrate gave it, not a second)."""

    def another_app_applied() -> None:
        query(
            "INSERT INTO django_migrations (app, name, applied)"
            " VALUES ('elsewhere', '0001_initial', now())"
        )

    MigrateThread("tests", "0001").finish()
    _after_another_migrate(another_app_applied, "tests", sessions=sessions)
    assert applied() == ["0001_initial", "0002_rename", "0003_note"]
    assert _tests_content_types() == ["delta"]
