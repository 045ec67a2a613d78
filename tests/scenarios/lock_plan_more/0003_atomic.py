from django.db import migrations, models


class Migration(migrations.Migration):
    """A new model whose foreign key is deferred to the end of the migration, after an
    operation without SQL (with ``PGMIGRATE_ATOMIC``, one transaction)."""

    dependencies = [("tests", "0002_statements")]
    operations = [
        migrations.CreateModel(
            "Zeta",
            [
                ("id", models.AutoField(primary_key=True)),
                ("alpha", models.ForeignKey("tests.Alpha", models.CASCADE)),
            ],
        ),
        migrations.AlterModelOptions("Zeta", {"verbose_name": "zeta"}),
    ]
