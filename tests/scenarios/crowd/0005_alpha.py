from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tests", "0004_python_then_alter")]
    operations = [migrations.AddField("Alpha", "crowded", models.BooleanField(null=True))]
