from django.db import migrations

from tests.scenarios import SLOW_FUNCTION as SLOW


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [migrations.RunSQL(SLOW, "DROP FUNCTION tests_slow(text)")]
