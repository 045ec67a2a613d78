from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [migrations.AddField("Alpha", "price", models.FloatField(null=True))]
