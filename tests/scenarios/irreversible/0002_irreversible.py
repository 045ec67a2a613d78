from django.db import migrations, models

from tests.scenarios import IRREVERSIBLE


def add_row(apps, schema_editor):
    apps.get_model("tests", "Alpha").objects.create(name="irreversible")


def check(apps, schema_editor):
    if IRREVERSIBLE["fail"]:
        raise RuntimeError("operation 2 fails on purpose")


class Migration(migrations.Migration):
    # Operation 1 commits on its own (as in Django), so that operation 2 can fail after it.
    atomic = False
    dependencies = [("tests", "0001_initial")]
    operations = [
        # No reverse function: the migration cannot be unapplied.
        migrations.RunPython(add_row),
        migrations.RunPython(check, migrations.RunPython.noop),
        migrations.AddField("Alpha", "flag", models.BooleanField(null=True)),
    ]
