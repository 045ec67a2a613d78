from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tests", "0002_flag")]
    operations = [migrations.AddField("Alpha", "note", models.TextField(null=True))]
