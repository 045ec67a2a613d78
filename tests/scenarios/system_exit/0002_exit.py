import sys

from django.db import migrations, models

from tests.scenarios import SYSTEM_EXIT


def leave(apps, schema_editor):
    if SYSTEM_EXIT["exit"]:
        sys.exit(3)


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.AddField("Alpha", "flag", models.BooleanField(null=True)),
        migrations.RunPython(leave, migrations.RunPython.noop),
    ]
