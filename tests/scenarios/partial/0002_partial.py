from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.AddField("Alpha", "flag", models.BooleanField(null=True)),
        migrations.AddField("Beta", "flag", models.BooleanField(null=True)),
        migrations.AddField(
            "Gamma", "other", models.ForeignKey("tests.Alpha", models.CASCADE, null=True)
        ),
        migrations.RunSQL("SELECT 1 / 0", migrations.RunSQL.noop),
        migrations.AddField("Alpha", "note", models.TextField(null=True)),
    ]
