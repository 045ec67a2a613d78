from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tests", "0004_swallowing")]
    operations = [migrations.AddField("Beta", "late", models.IntegerField(null=True))]
