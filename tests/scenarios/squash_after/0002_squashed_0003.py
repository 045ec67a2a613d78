from django.db import migrations, models


class Migration(migrations.Migration):
    replaces = [("tests", "0002_flag"), ("tests", "0003_note")]
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.AddField("Alpha", "flag", models.BooleanField(null=True)),
        migrations.RunSQL(
            "ALTER TABLE tests_alpha ADD CONSTRAINT not_bad CHECK (name NOT LIKE 'bad%')",
            "ALTER TABLE tests_alpha DROP CONSTRAINT not_bad",
        ),
        migrations.AddField("Beta", "note", models.TextField(null=True)),
    ]
