from django.db import migrations

# The same function as the ``concurrent`` scenario's: 5 ms per call.
SLOW = """
CREATE FUNCTION tests_slow(value text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM pg_sleep(0.005);  -- a row of a big table
    RETURN value;
END $$
"""


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [migrations.RunSQL(SLOW, "DROP FUNCTION tests_slow(text)")]
