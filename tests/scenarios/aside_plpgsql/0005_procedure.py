from django.db import migrations

PROCEDURE = """
CREATE PROCEDURE tests_batch() LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tests_alpha (name) VALUES ('procedure batch');
    COMMIT;
    ALTER TABLE tests_gamma ADD COLUMN from_procedure boolean;
END $$
"""


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0004_commits")]
    operations = [
        migrations.RunSQL(PROCEDURE, "DROP PROCEDURE tests_batch()"),
        migrations.RunSQL("CALL tests_batch()", migrations.RunSQL.noop),
    ]
