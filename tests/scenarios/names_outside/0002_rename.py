from django.db import migrations, models


def read_alpha(apps, schema_editor):
    apps.get_model("tests", "Alpha").objects.exists()


class Migration(migrations.Migration):
    """The operations of the ``names`` scenario in an ``atomic = False`` migration, with
    operations that run outside a transaction between the ones whose deferred SQL later
    operations rename: Django still runs all deferred SQL at the end of the migration."""

    atomic = False
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.AddField(
            "Gamma", "author", models.ForeignKey("tests.Alpha", models.CASCADE, null=True)
        ),
        migrations.RunPython(read_alpha, migrations.RunPython.noop),
        migrations.AlterModelTable("Gamma", "tests_volume"),
        migrations.CreateModel(
            "Book",
            [
                ("id", models.AutoField(primary_key=True)),
                ("author", models.ForeignKey("tests.Alpha", models.CASCADE)),
                ("title", models.CharField(max_length=50, db_index=True)),
            ],
        ),
        migrations.RunSQL("SELECT 1", migrations.RunSQL.noop),
        migrations.RenameField("Book", "author", "writer"),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.AlterModelTable("Book", "tests_tome")],
            state_operations=[migrations.AlterModelTable("Book", "tests_tome")],
        ),
        migrations.RenameModel("Book", "Novel"),
    ]
