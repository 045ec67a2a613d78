from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tests", "0002_slow")]
    operations = [migrations.RunSQL("SELECT pg_sleep(0.4)", migrations.RunSQL.noop)]
