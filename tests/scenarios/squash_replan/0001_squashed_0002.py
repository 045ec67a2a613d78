from django.db import migrations, models

from tests.scenarios import InitialMigration


class Migration(migrations.Migration):
    """0001 and 0002 squashed: Django plans with it when none or all of them are applied,
    with them when some are."""

    initial = True
    replaces = [("tests", "0001_initial"), ("tests", "0002_flag")]
    operations = [
        *InitialMigration.operations,
        migrations.AddField("Beta", "flag", models.BooleanField(null=True)),
    ]
