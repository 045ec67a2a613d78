from django.db import migrations, models

from tests.scenarios import RENAME_RESUME, rename_resume_check


class Migration(migrations.Migration):
    """With django.contrib.contenttypes installed, Django inserts a RenameContentType after
    the RenameModel when ContentType is there (applied, or made earlier in the plan); the
    last operation fails on demand."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RenameModel("Gamma", "Delta"),
        migrations.AddField(
            "Beta", "flag", models.CharField(max_length=RENAME_RESUME["max_length"], null=True)
        ),
        migrations.RunPython(rename_resume_check, migrations.RunPython.noop),
    ]
