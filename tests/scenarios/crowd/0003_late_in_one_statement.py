from django.db import migrations

#: One statement whose ALTER waits only after the statement has worked for a while (a
#: multi-statement string): the unit is as costly to redo as that work.
LATE_ALTER = "SELECT pg_sleep(0.3); ALTER TABLE tests_beta ADD COLUMN later boolean"


class Migration(migrations.Migration):
    dependencies = [("tests", "0002_late_alter")]
    operations = [migrations.RunSQL(LATE_ALTER, migrations.RunSQL.noop)]
