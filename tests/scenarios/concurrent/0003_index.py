from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

SLOW_INDEX = models.Index(
    models.Func(models.F("name"), function="tests_slow", output_field=models.TextField()),
    name="beta_slow_idx",
)


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0002_function")]
    operations = [
        AddIndexConcurrently("Alpha", models.Index(fields=["name"], name="alpha_name_idx")),
        # The usual way to keep the state in step with hand-written SQL.
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex("Beta", SLOW_INDEX)],
            database_operations=[
                migrations.RunSQL(
                    "CREATE INDEX CONCURRENTLY beta_slow_idx ON tests_beta (tests_slow(name))",
                    "DROP INDEX CONCURRENTLY IF EXISTS beta_slow_idx",
                )
            ],
        ),
    ]
