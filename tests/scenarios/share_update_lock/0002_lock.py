from django.db import migrations


class Migration(migrations.Migration):
    """Takes SHARE UPDATE EXCLUSIVE, the lock of CREATE INDEX CONCURRENTLY and VACUUM: it
    does not conflict with the ACCESS SHARE of a reader, only with stronger requests."""

    dependencies = [("tests", "0001_initial")]
    operations = [migrations.RunSQL("LOCK TABLE tests_beta IN SHARE UPDATE EXCLUSIVE MODE")]
