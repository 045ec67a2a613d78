from django.db import migrations


class Migration(migrations.Migration):
    """A data migration that updates one row of tests_gamma (id 1): it waits for the row's
    lock when another transaction holds it, and for the row's tuple lock when a session
    queued for the row holds that."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL(
            "UPDATE tests_gamma SET name = 'migrated' WHERE id = 1", migrations.RunSQL.noop
        ),
    ]
