from django.db import migrations, models

from tests.scenarios import InitialMigration


class Migration(migrations.Migration):
    initial = True
    operations = [
        *InitialMigration.operations,
        # Filled by the test (tests/test_live_progress.py): an index on it builds for seconds.
        migrations.CreateModel(
            "Big",
            [("id", models.AutoField(primary_key=True)), ("name", models.TextField())],
        ),
    ]
