from django.db import migrations

#: One operation (one retry unit) whose ALTER waits only after the unit has worked for a
#: while: redoing that work costs more than stepping aside while blockers exit saves.
LATE_ALTER = ["SELECT pg_sleep(0.3)", "ALTER TABLE tests_beta ADD COLUMN late boolean"]


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [migrations.RunSQL(LATE_ALTER, migrations.RunSQL.noop)]
