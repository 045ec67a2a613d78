from django.db import migrations, models

from tests.scenarios import FINGERPRINT


def check(apps, schema_editor):
    if FINGERPRINT["fail"]:
        raise RuntimeError("operation 2 fails on purpose")


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        # An edit that does not change the description ("Add field flag to alpha").
        migrations.AddField(
            "Alpha", "flag", models.CharField(max_length=FINGERPRINT["max_length"], null=True)
        ),
        migrations.RunPython(check, migrations.RunPython.noop),
    ]
