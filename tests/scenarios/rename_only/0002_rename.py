from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [migrations.RenameModel("Gamma", "Delta")]
