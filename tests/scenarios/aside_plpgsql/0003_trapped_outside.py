from django.db import migrations

#: As 0002's, on tests_gamma, by SQLSTATE, in an ``atomic = False`` migration (statement by
#: statement, each with its progress count).
TRAPPED = """
DO $$
BEGIN
    ALTER TABLE tests_gamma ADD COLUMN trapped boolean;
EXCEPTION WHEN SQLSTATE '57014' THEN
    RAISE WARNING 'the ALTER was cancelled';
END $$
"""


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0002_trapped")]
    operations = [migrations.RunSQL(TRAPPED, migrations.RunSQL.noop)]
