from django.db import migrations, models


class Migration(migrations.Migration):
    """``SET search_path`` in a RunSQL: the operations after it (Django's SQL names tables
    unqualified) act on the schema it puts first, where a table of the same name is; a table
    only ``public`` has is found there."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL("SET search_path = tests_other, public", migrations.RunSQL.noop),
        migrations.AddField("Alpha", "extra", models.IntegerField(null=True)),
        migrations.RunSQL(
            "CREATE INDEX tests_beta_name ON tests_beta (name)", migrations.RunSQL.noop
        ),
    ]
