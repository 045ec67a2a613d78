from django.db import migrations


class Migration(migrations.Migration):
    """The same switch of ``search_path`` outside a transaction: each operation runs on its
    own, and its progress is recorded while the search path names the other schema."""

    atomic = False
    dependencies = [("tests", "0002_elsewhere")]
    operations = [
        migrations.RunSQL("SET search_path = tests_sp", "RESET search_path"),
        migrations.RunSQL(
            "ALTER TABLE tests_sp_t ADD COLUMN third integer",
            "ALTER TABLE tests_sp_t DROP COLUMN third",
        ),
        migrations.RunSQL("RESET search_path", "SET search_path = tests_sp"),
    ]
