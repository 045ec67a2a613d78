from django.db import migrations

from tests.scenarios import RUNPYTHON_SEEN as SEEN


def add_rows(apps, schema_editor):
    Alpha = apps.get_model("tests", "Alpha")
    Alpha.objects.bulk_create(Alpha(name=f"row {n}") for n in range(100))
    SEEN["in_atomic_block"] = schema_editor.connection.in_atomic_block
    if SEEN.get("fail"):
        raise RuntimeError("add_rows fails on purpose after writing 100 rows")


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        # atomic=False has no effect in an atomic migration (Django runs it in the
        # migration's transaction): pgmigrate gives it the operation's transaction.
        migrations.RunPython(add_rows, migrations.RunPython.noop, atomic=False),
    ]
