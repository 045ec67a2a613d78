from django.db import migrations, models


class Migration(migrations.Migration):
    """With django.contrib.contenttypes installed, Django inserts a RenameContentType
    operation after the RenameModel when this migration is in a plan."""

    # No dependency on contenttypes, whose models RenameContentType uses: Django's state of
    # the applied migrations has them anyway.
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RenameModel("Gamma", "Delta"),
        migrations.AddField("Beta", "flag", models.BooleanField(null=True)),
    ]
