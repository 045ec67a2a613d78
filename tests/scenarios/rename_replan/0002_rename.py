from django.db import migrations


class Migration(migrations.Migration):
    """With django.contrib.contenttypes installed, Django inserts a RenameContentType after
    the RenameModel when this migration is in a plan."""

    dependencies = [("tests", "0001_initial")]
    operations = [migrations.RenameModel("Gamma", "Delta")]
