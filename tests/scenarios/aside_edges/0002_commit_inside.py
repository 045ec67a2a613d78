from django.db import migrations


class Migration(migrations.Migration):
    """One RunSQL string that commits part of its work itself."""

    atomic = False
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL(
            "INSERT INTO tests_alpha (name) VALUES ('backfill'); COMMIT;"
            " ALTER TABLE tests_beta ADD COLUMN committed integer;",
            migrations.RunSQL.noop,
        )
    ]
