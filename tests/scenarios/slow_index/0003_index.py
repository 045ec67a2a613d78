from django.db import migrations


class Migration(migrations.Migration):
    """The ``concurrent`` scenario's beta_slow_idx, built without CONCURRENTLY: the control
    that shows the statement timeout cuts this build when it is not exempt."""

    atomic = False
    dependencies = [("tests", "0002_function")]
    operations = [
        migrations.RunSQL(
            "CREATE INDEX beta_slow_idx ON tests_beta (tests_slow(name))",
            "DROP INDEX IF EXISTS beta_slow_idx",
        ),
    ]
