from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    """Gamma's name becomes an integer and gets an index, alpha gets an index built
    concurrently; data written and read through the view; a field the materialized view
    uses is removed."""

    atomic = False
    dependencies = [("tests", "0002_views")]
    operations = [
        migrations.AlterField("Gamma", "name", models.IntegerField(default=0)),
        migrations.AddIndex("Gamma", models.Index(fields=["name"], name="gamma_name_idx")),
        AddIndexConcurrently("Alpha", models.Index(fields=["id"], name="alpha_id_idx")),
        migrations.RunSQL(
            "UPDATE tests_alpha_names SET name = 'x' WHERE id < 10", migrations.RunSQL.noop
        ),
        migrations.RunSQL("SELECT count(*) FROM tests_alpha_names", migrations.RunSQL.noop),
        # RemoveField's SQL up to Django 5.2 (6.0 drops CASCADE: the view makes it fail).
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    'ALTER TABLE "tests_beta" DROP COLUMN "name" CASCADE', migrations.RunSQL.noop
                )
            ],
            state_operations=[migrations.RemoveField("Beta", "name")],
        ),
    ]
