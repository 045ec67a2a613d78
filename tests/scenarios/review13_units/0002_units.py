from django.db import migrations, models


class Migration(migrations.Migration):
    """A model whose deferred SQL (the many-to-many table's keys and indexes) the next
    operation renames; a field removed (data undoing cannot bring back), then an index."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.CreateModel(
            "Tagged",
            [
                ("id", models.AutoField(primary_key=True)),
                ("alphas", models.ManyToManyField("tests.Alpha")),
            ],
        ),
        migrations.RenameModel("Tagged", "Labelled"),
        migrations.RemoveField("Beta", "name"),
        migrations.AddIndex("Gamma", models.Index(fields=["name"], name="gamma_name_idx")),
    ]
