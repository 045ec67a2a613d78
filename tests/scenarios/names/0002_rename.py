from django.db import migrations, models


class Migration(migrations.Migration):
    """What makemigrations writes for "add a foreign key, then rename it", "set db_table"
    and "create a model, then rename a field": later operations change the names in the
    deferred SQL of earlier ones."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.AddField(
            "Gamma", "author", models.ForeignKey("tests.Alpha", models.CASCADE, null=True)
        ),
        migrations.AlterModelTable("Gamma", "tests_volume"),
        migrations.CreateModel(
            "Book",
            [
                ("id", models.AutoField(primary_key=True)),
                ("author", models.ForeignKey("tests.Alpha", models.CASCADE)),
                ("title", models.CharField(max_length=50, db_index=True)),
            ],
        ),
        migrations.RenameField("Book", "author", "writer"),
        migrations.RenameModel("Book", "Novel"),
        migrations.AddField("Beta", "flag", models.BooleanField(null=True)),
    ]
