from django.db import migrations, models

#: A table name holding a terminal escape (clear the screen) and a bell.
ESCAPED = "tests_esc\x1b[2J\x07"


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.CreateModel(
            "Escaped", [("id", models.AutoField(primary_key=True))], options={"db_table": ESCAPED}
        ),
        migrations.AddField("Escaped", "name", models.TextField(default="")),
        migrations.RunSQL("LOCK TABLE tests_gamma IN SHARE MODE", migrations.RunSQL.noop),
    ]
