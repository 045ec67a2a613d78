from django.db import DatabaseError, migrations, transaction


def add_column_or_note(apps, schema_editor):
    """Code that catches database errors and goes on (it must not swallow pgmigrate's
    cancel of a statement that stepped out of the lock queue)."""
    Alpha = apps.get_model("tests", "Alpha")
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("ALTER TABLE tests_beta ADD COLUMN swallowed integer")
    except DatabaseError:
        Alpha.objects.create(name="skipped")
    Alpha.objects.create(name="after")


class Migration(migrations.Migration):
    dependencies = [("tests", "0003_own_transaction")]
    operations = [migrations.RunPython(add_column_or_note, migrations.RunPython.noop)]
