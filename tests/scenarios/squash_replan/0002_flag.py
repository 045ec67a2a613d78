from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [migrations.AddField("Beta", "flag", models.BooleanField(null=True))]
