from django.db import migrations, models


class Migration(migrations.Migration):
    """With django.contrib.contenttypes installed, Django inserts a RenameContentType
    operation after the RenameModel when this migration is in a plan."""

    # As in most projects, the app's state includes contenttypes (RenameContentType uses it).
    dependencies = [("tests", "0001_initial"), ("contenttypes", "0002_remove_content_type_name")]
    operations = [
        migrations.RenameModel("Gamma", "Delta"),
        migrations.AddField("Beta", "flag", models.BooleanField(null=True)),
    ]
