from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("demo", "0001_initial")]
    operations = [migrations.AddField("Account", "nickname", models.TextField(null=True))]
