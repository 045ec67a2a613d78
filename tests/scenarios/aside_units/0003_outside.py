from django.db import connection, migrations


def alter_in_autocommit(apps, schema_editor):
    """Two statements in autocommit: the second may be cancelled to step aside and is run
    again alone; the first is not repeated."""
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO tests_alpha (name) VALUES ('before')")
        cursor.execute("ALTER TABLE tests_beta ADD COLUMN outside boolean")


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0002_race")]
    operations = [
        migrations.RunPython(alter_in_autocommit, migrations.RunPython.noop),
        migrations.RunSQL(
            [
                "INSERT INTO tests_alpha (name) VALUES ('statement 1')",
                "ALTER TABLE tests_gamma ADD COLUMN counted boolean",
            ],
            migrations.RunSQL.noop,
        ),
    ]
