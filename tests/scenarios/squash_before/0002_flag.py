from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.AddField("Alpha", "flag", models.BooleanField(null=True)),
        # Fails while tests_alpha holds a row named 'bad...'.
        migrations.RunSQL(
            "ALTER TABLE tests_alpha ADD CONSTRAINT not_bad CHECK (name NOT LIKE 'bad%')",
            "ALTER TABLE tests_alpha DROP CONSTRAINT not_bad",
        ),
    ]
