"""Migration packages used as the ``tests`` app's migrations (``MIGRATION_MODULES``).

Every scenario's ``0001_initial`` is ``InitialMigration``: tables alpha, beta and gamma.

Django reloads a migrations package when it loads it again, so state shared with tests lives
here rather than in the scenario packages.
"""

from django.db import migrations, models


def _table(name: str) -> migrations.CreateModel:
    return migrations.CreateModel(
        name, [("id", models.AutoField(primary_key=True)), ("name", models.TextField(default=""))]
    )


class InitialMigration(migrations.Migration):
    """The first migration of every scenario: three small tables."""

    initial = True
    operations = [_table("Alpha"), _table("Beta"), _table("Gamma")]


#: What the RunPython functions of the ``runpython`` scenario saw.
RUNPYTHON_SEEN: dict = {}

#: The ``resume`` scenario's checkpoint that fails (1, 2 or 3), or None.
RESUME_FAIL_AT: dict = {"checkpoint": None}

#: The ``fingerprint`` scenario: whether its operation 2 fails, and a field's max_length.
FINGERPRINT: dict = {"fail": False, "max_length": 10}
