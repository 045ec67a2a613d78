"""A ``migrate`` that waited for another one plans again (``PGMigrateExecutor._replan``), as
Django would have planned after the other one: with the graph as it is now (a squashed
migration in place of those it replaces, or the other way round) and contenttypes'
``RenameContentType`` after each ``RenameModel`` where ``ContentType`` is there now."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import django
import pglock
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from pgmigrate.command import DjangoMigrateCommand
from pgmigrate.migrate_lock import LOCK_NAME
from tests.helpers import MigrateThread, Session, applied, columns, migrate, query, wait_until

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


def _plain_django(*args: str) -> Callable[[], None]:
    """The other migrate: Django's own command (it does not take the migrate lock)."""
    return lambda: call_command(DjangoMigrateCommand(), *args, verbosity=0)


def _only_the_first_of_the_squashed_applied() -> None:
    """Of 0001 and 0002, which 0001_squashed_0002 replaces, only 0001 applied: the graph
    then has those two, not the squashed migration."""
    MigrateThread("tests", "0001_squashed_0002").finish()
    query("ALTER TABLE tests_beta DROP COLUMN flag")
    query(
        "DELETE FROM django_migrations WHERE app = 'tests'"
        " AND name IN ('0002_flag', '0001_squashed_0002')"
    )


ALL_SQUASH_REPLAN = ["0001_initial", "0001_squashed_0002", "0002_flag", "0003_note"]


@pytest.mark.scenario("squash_replan")
def test_a_plan_made_again_applies_the_squashed_migration_the_graph_now_has(scenario, sessions):
    """Planned with 0002 (0001 applied), then the other migrate unapplies 0001: the graph
    now has the squashed migration, which the plan made again applies, then 0003."""
    _only_the_first_of_the_squashed_applied()
    out = _after_another_migrate(_plain_django("tests", "zero"), "tests", sessions=sessions)
    assert "Applying tests.0001_squashed_0002... OK" in out
    assert applied() == ALL_SQUASH_REPLAN
    assert "flag" in columns("tests_beta") and "note" in columns("tests_alpha")
    migrate("tests")  # the history is Django's: nothing left to do, no error


@pytest.mark.scenario("squash_replan")
def test_a_plan_made_again_unapplies_the_squashed_migration_the_graph_now_has(scenario, sessions):
    """Planned to unapply 0001, then the other migrate applies the rest: the plan made
    again unapplies 0003 and the squashed migration."""
    _only_the_first_of_the_squashed_applied()
    _after_another_migrate(_plain_django("tests"), "tests", "zero", sessions=sessions)
    assert applied() == []
    assert query("SELECT to_regclass('tests_alpha')") == [(None,)]


@pytest.mark.scenario("squash_replan")
def test_a_target_the_graph_no_longer_has_is_a_command_error(scenario, sessions):
    """Planned to 0002 (a node while only 0001 is applied), then the other migrate unapplies
    0001: the squashed migration replaces 0002 in the graph, so there is no plan to it."""
    _only_the_first_of_the_squashed_applied()
    other = Session(application_name="other-migrate")
    sessions.append(other)
    lock_id = pglock.advisory(LOCK_NAME).int_lock_id
    other.execute("SELECT pg_advisory_lock(%s)", [lock_id])
    run = MigrateThread("tests", "0002_flag")
    wait_until(
        lambda: "another migrate is running" in run.output.getvalue(),
        what="migrate waits for the other one",
    )
    _plain_django("tests", "zero")()
    other.execute("SELECT pg_advisory_unlock(%s)", [lock_id])
    if django.VERSION >= (6, 0):  # Django 6.0 plans to a migration a squashed one replaces
        run.finish()
        assert "0001_squashed_0002" in applied()
        assert "flag" in columns("tests_beta")
        return
    with pytest.raises(CommandError, match=r"the plan cannot be made again: .*0002_flag"):
        run.finish()
    assert applied() == []


@pytest.mark.scenario("rename_replan")
def test_content_types_made_meanwhile_are_renamed(contenttypes, sessions):
    """Planned while contenttypes was not migrated (no RenameContentType), then the other
    migrate migrates it: the RenameModel renames the content type, as Django planning now
    would."""
    with override_settings(INSTALLED_APPS=CONTENTTYPE_APPS):
        _plain_django("contenttypes", "zero")()
        MigrateThread("tests", "0001").finish()

        def contenttypes_migrated() -> None:
            _plain_django("contenttypes")()
            query("INSERT INTO django_content_type (app_label, model) VALUES ('tests', 'gamma')")

        try:
            _after_another_migrate(contenttypes_migrated, "tests", sessions=sessions)
            assert applied() == ["0001_initial", "0002_rename", "0003_note"]
            assert "delta" in _tests_content_types()
            assert "gamma" not in _tests_content_types()
        finally:
            query("DELETE FROM django_content_type WHERE app_label = 'tests'")


@pytest.mark.scenario("rename_replan")
def test_content_types_gone_meanwhile_are_not_renamed(gamma, sessions):
    """Planned with RenameContentType, then the other migrate unapplies contenttypes: the
    plan made again has none, as Django planning now would, and applies."""
    MigrateThread("tests", "0001").finish()
    try:
        _after_another_migrate(_plain_django("contenttypes", "zero"), "tests", sessions=sessions)
        assert applied() == ["0001_initial", "0002_rename", "0003_note"]
    finally:
        with override_settings(INSTALLED_APPS=CONTENTTYPE_APPS):
            migrate("contenttypes", verbosity=0)
