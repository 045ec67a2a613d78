from django.db import migrations

#: What the operation's code did, outside the database (a test reads it).
CALLS: list[str] = []


def note_then_alter(apps, schema_editor):
    CALLS.append("called")
    schema_editor.execute("ALTER TABLE tests_beta ADD COLUMN noted boolean")


class Migration(migrations.Migration):
    dependencies = [("tests", "0003_late_in_one_statement")]
    operations = [migrations.RunPython(note_then_alter, migrations.RunPython.noop)]
