"""Review 15 (the signal statement, the watcher's readiness, the lock plan's search_path):
defects found by trying them as users and attackers would, each a test on the real server."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from tests.helpers import applied, migrate, query
from tests.scenarios import RESUME_FAIL_AT

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


@pytest.mark.scenario("review15_local")
def test_a_set_local_in_a_non_atomic_migration_changes_nothing_as_in_django(scenario):
    """Django runs the statements of an ``atomic = False`` migration outside a transaction,
    where ``SET LOCAL search_path`` only warns: the migration applies. pgmigrate ran it in a
    transaction with its progress record, whose table the ``SET LOCAL`` hid."""
    migrate("tests", "0002")
    assert applied() == ["0001_initial", "0002_local"]
    assert query("SELECT obj_description('tests_alpha'::regclass)") == [("commented",)]


@pytest.mark.scenario("resume")
def test_the_plan_of_a_half_applied_migration_under_pgmigrate_atomic_is_per_operation(
    scenario,
):
    """Under ``PGMIGRATE_ATOMIC``, migrate resumes a migration that an earlier run (without
    it) left half applied one operation a transaction, not in the migration's one."""
    migrate("tests", "0001")
    RESUME_FAIL_AT["checkpoint"] = 2
    try:
        with pytest.raises(CommandError):
            migrate("tests")
    finally:
        RESUME_FAIL_AT["checkpoint"] = None
    with override_settings(PGMIGRATE_ATOMIC=True):
        out = io.StringIO()
        call_command("pgmigrate", "--lock-plan", "--json", stdout=out, stderr=io.StringIO())
    (migration,) = json.loads(out.getvalue())["migrations"]
    pending = [op for op in migration["operations"] if not op["applied"]]
    assert pending
    assert not any("PGMIGRATE_ATOMIC" in op["transaction"] for op in pending), pending
