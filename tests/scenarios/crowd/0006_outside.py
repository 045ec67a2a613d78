from django.db import migrations


class Migration(migrations.Migration):
    """Outside a transaction: each statement of the list is a retry unit of its own."""

    atomic = False
    dependencies = [("tests", "0005_alpha")]
    operations = [
        migrations.RunSQL(
            ["ALTER TABLE tests_beta ADD COLUMN outside boolean"], migrations.RunSQL.noop
        )
    ]
