from django.db import connection, migrations, models

from tests.scenarios import RUNPYTHON_SEEN as SEEN


def add_row(apps, schema_editor):
    SEEN["in_atomic_block"] = schema_editor.connection.in_atomic_block
    apps.get_model("tests", "Alpha").objects.create(name="kept")


def add_row_then_fail(apps, schema_editor):
    apps.get_model("tests", "Alpha").objects.create(name="rolled back")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tests_alpha WHERE name = 'rolled back'")
        SEEN["rows_before_failure"] = cursor.fetchone()[0]
    raise RuntimeError("RunPython failed on purpose")


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.AddField("Alpha", "flag", models.BooleanField(null=True)),
        migrations.RunPython(add_row, migrations.RunPython.noop),
        migrations.RunPython(add_row_then_fail, migrations.RunPython.noop),
        migrations.AddField("Alpha", "note", models.TextField(null=True)),
    ]
