from django.db import migrations, models

from tests.scenarios import RAISED


def decode(apps, schema_editor):
    # A built-in error whose class cannot be combined with CommandError.
    RAISED["error"] = UnicodeDecodeError("utf-8", b"x", 0, 1, "bad")
    raise RAISED["error"]


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.AddField("Alpha", "flag", models.BooleanField(null=True)),
        migrations.RunPython(decode, migrations.RunPython.noop),
    ]
