from django.db import migrations

#: An ALTER in a DO block whose handler traps a cancel: a cancel sent to step aside ends in
#: the handler, and the statement succeeds without its ALTER.
TRAPPED = """
DO $$
BEGIN
    ALTER TABLE tests_beta ADD COLUMN trapped boolean;
EXCEPTION WHEN query_canceled THEN
    RAISE WARNING 'the ALTER was cancelled';
END $$
"""


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [migrations.RunSQL(TRAPPED, migrations.RunSQL.noop)]
