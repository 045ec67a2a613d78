from django.db import migrations


class Migration(migrations.Migration):
    """VACUUM FULL cannot run in a transaction (so pgmigrate runs it alone, and never
    cancels it to step aside), and it waits for ACCESS EXCLUSIVE, which the app queues for."""

    atomic = False
    dependencies = [("tests", "0001_initial")]
    operations = [migrations.RunSQL("VACUUM FULL tests_beta", migrations.RunSQL.noop)]
