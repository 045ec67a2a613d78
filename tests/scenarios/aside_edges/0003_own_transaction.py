from django.db import migrations


class Migration(migrations.Migration):
    """A RunSQL list that opens and commits a transaction of its own."""

    atomic = False
    dependencies = [("tests", "0002_commit_inside")]
    operations = [
        migrations.RunSQL(
            [
                "BEGIN",
                "INSERT INTO tests_alpha (name) VALUES ('own')",
                "ALTER TABLE tests_beta ADD COLUMN own integer",
                "COMMIT",
            ],
            migrations.RunSQL.noop,
        )
    ]
