"""Review 15 (the signal statement, the watcher's readiness, the lock plan's search_path):
defects found by trying them as users and attackers would, each a test on the real server."""

from __future__ import annotations

import pytest

from tests.helpers import applied, migrate, query

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


@pytest.mark.scenario("review15_local")
def test_a_set_local_in_a_non_atomic_migration_changes_nothing_as_in_django(scenario):
    """Django runs the statements of an ``atomic = False`` migration outside a transaction,
    where ``SET LOCAL search_path`` only warns: the migration applies. pgmigrate ran it in a
    transaction with its progress record, whose table the ``SET LOCAL`` hid."""
    migrate("tests", "0002")
    assert applied() == ["0001_initial", "0002_local"]
    assert query("SELECT obj_description('tests_alpha'::regclass)") == [("commented",)]
