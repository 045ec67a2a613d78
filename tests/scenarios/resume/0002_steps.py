from django.db import migrations, models

from tests.scenarios import RESUME_FAIL_AT


def checkpoint(number):
    def check(apps, schema_editor):
        if RESUME_FAIL_AT["checkpoint"] == number:
            raise RuntimeError(f"checkpoint {number} fails on purpose")

    return migrations.RunPython(check, migrations.RunPython.noop)


def add_row(apps, schema_editor):
    apps.get_model("tests", "Alpha").objects.create(name="added once")


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        checkpoint(1),
        migrations.AddField("Alpha", "flag", models.BooleanField(null=True)),
        migrations.RunPython(add_row, migrations.RunPython.noop),
        checkpoint(2),
        migrations.AddField("Beta", "flag", models.BooleanField(null=True)),
        checkpoint(3),
    ]
