from django.db import migrations


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0001_initial")]
    operations = [
        # Statement 2 reads what statement 1 left in the session: one transaction.
        migrations.RunSQL(
            [
                "CREATE TEMP TABLE ids AS SELECT id FROM tests_alpha",
                "UPDATE tests_alpha SET name = name || '+' WHERE id IN (SELECT id FROM ids)",
                "ALTER TABLE tests_alpha ADD CONSTRAINT not_bad CHECK (name NOT LIKE 'bad%')",
            ],
            migrations.RunSQL.noop,
        ),
    ]
