from django.db import migrations


class Migration(migrations.Migration):
    """A statement list whose reverse undoes all of it: unapplying it when only its first
    statement began would strip a '+' that it never added (and drop an index it never built)."""

    atomic = False
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL(
            [
                "CREATE INDEX CONCURRENTLY alpha_name_idx ON tests_alpha (name)",
                "UPDATE tests_alpha SET name = name || '+'",
            ],
            [
                "UPDATE tests_alpha SET name = left(name, -1)",
                "DROP INDEX CONCURRENTLY alpha_name_idx",
            ],
        )
    ]
