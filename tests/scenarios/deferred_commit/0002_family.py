from django.db import migrations, models


def add_child(apps, schema_editor):
    # Its parent comes in the next operation: the foreign key (DEFERRABLE INITIALLY
    # DEFERRED) is checked when the transaction commits.
    apps.get_model("tests", "Child").objects.create(parent_id=7)


def add_parent(apps, schema_editor):
    apps.get_model("tests", "Parent").objects.create(id=7)


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.CreateModel("Parent", [("id", models.AutoField(primary_key=True))]),
        migrations.CreateModel(
            "Child",
            [
                ("id", models.AutoField(primary_key=True)),
                ("parent", models.ForeignKey("tests.Parent", models.CASCADE)),
            ],
        ),
        migrations.RunPython(add_child, migrations.RunPython.noop),
        migrations.RunPython(add_parent, migrations.RunPython.noop),
    ]
