import django
from django.db import migrations, models

from tests.scenarios import lock_plan_python

if django.VERSION >= (5, 0):
    from django.contrib.postgres.functions import RandomUUID

    # A volatile default: PostgreSQL fills every row, rewriting the table.
    ADD_TOKEN = migrations.AddField("Alpha", "token", models.UUIDField(db_default=RandomUUID()))
else:  # no db_default before Django 5.0: the same statement in SQL
    ADD_TOKEN = migrations.RunSQL(
        "ALTER TABLE tests_alpha ADD COLUMN token uuid DEFAULT gen_random_uuid() NOT NULL",
        "ALTER TABLE tests_alpha DROP COLUMN token",
    )


class Migration(migrations.Migration):
    """A new model with a foreign key, a rewrite, an index build, Python code, SQL, a check
    constraint on a table with rows, a code block (then search_path set again)."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.CreateModel(
            "Delta",
            [
                ("id", models.AutoField(primary_key=True)),
                ("alpha", models.ForeignKey("tests.Alpha", models.CASCADE)),
            ],
        ),
        ADD_TOKEN,
        migrations.AddIndex("Beta", models.Index(fields=["name"], name="beta_name_idx")),
        migrations.RunPython(lock_plan_python, migrations.RunPython.noop),
        migrations.RunSQL("UPDATE tests_gamma SET name = name", migrations.RunSQL.noop),
        migrations.RunSQL(
            "ALTER TABLE tests_beta ADD CONSTRAINT beta_id_positive CHECK (id > 0)",
            "ALTER TABLE tests_beta DROP CONSTRAINT beta_id_positive",
        ),
        migrations.RunSQL("DO $$ BEGIN PERFORM 1; END $$", migrations.RunSQL.noop),
        # The code block may have set search_path: the names after it resolve again.
        migrations.RunSQL("RESET search_path", migrations.RunSQL.noop),
    ]
