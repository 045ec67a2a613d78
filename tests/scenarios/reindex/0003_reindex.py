from django.db import migrations


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0002_index")]
    operations = [
        migrations.RunSQL("REINDEX INDEX CONCURRENTLY alpha_name_idx", migrations.RunSQL.noop),
    ]
