from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tests", "0003_concurrent")]
    # A statement that is not an index build: it waits on PgSleep.
    operations = [migrations.RunSQL("SELECT pg_sleep(0.6)", migrations.RunSQL.noop)]
