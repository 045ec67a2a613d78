from django.db import migrations

from tests.scenarios import search_path_check


class Migration(migrations.Migration):
    """Alters a table of another schema by switching ``search_path`` to it and back, as
    Django runs it in one transaction (``tests_sp`` is made by the test); its third
    operation fails on demand."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL("SET search_path = tests_sp", "RESET search_path"),
        migrations.RunSQL(
            "ALTER TABLE tests_sp_t ADD COLUMN extra integer",
            "ALTER TABLE tests_sp_t DROP COLUMN extra",
        ),
        migrations.RunPython(search_path_check, migrations.RunPython.noop),
        migrations.RunSQL(
            "ALTER TABLE tests_sp_t ADD COLUMN more integer",
            "ALTER TABLE tests_sp_t DROP COLUMN more",
        ),
        migrations.RunSQL("RESET search_path", "SET search_path = tests_sp"),
    ]
