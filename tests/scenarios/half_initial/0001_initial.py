from django.db import migrations, models

from tests.scenarios import HALF_INITIAL


def add_row(apps, schema_editor):
    apps.get_model("tests", "Delta").objects.create(name="from RunPython")
    if HALF_INITIAL["fail"]:
        raise RuntimeError("the RunPython of 0001 fails on purpose")


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel(
            "Delta",
            [("id", models.AutoField(primary_key=True)), ("name", models.TextField())],
        ),
        migrations.RunPython(add_row, migrations.RunPython.noop),
        migrations.AddIndex("Delta", models.Index(fields=["name"], name="delta_name_idx")),
    ]
