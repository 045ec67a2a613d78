from django.db import migrations


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0002_update_row")]
    operations = [
        migrations.RunSQL(
            "CREATE INDEX CONCURRENTLY tests_alpha_name_idx ON tests_alpha (name)",
            "DROP INDEX CONCURRENTLY tests_alpha_name_idx",
        ),
    ]
