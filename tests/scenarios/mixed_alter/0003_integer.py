from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0002_code")]
    operations = [
        # RunSQL mixed with an operation whose statements depend on the database (AlterField
        # introspects the indexes it drops): it runs as Django runs it.
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AlterField("Code", "code", models.IntegerField())],
            database_operations=[
                migrations.RunSQL("SELECT 1", migrations.RunSQL.noop),
                migrations.AlterField("Code", "code", models.IntegerField()),
            ],
        ),
    ]
