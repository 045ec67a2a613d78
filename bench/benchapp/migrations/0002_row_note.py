from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("benchapp", "0001_initial")]
    operations = [
        migrations.AddField("row", "note", models.CharField(max_length=100, null=True)),
    ]
