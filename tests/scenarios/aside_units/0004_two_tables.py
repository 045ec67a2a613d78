from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tests", "0003_outside")]
    operations = [
        migrations.AddField("Alpha", "first", models.BooleanField(null=True)),
        migrations.AddField("Beta", "second", models.BooleanField(null=True)),
    ]
