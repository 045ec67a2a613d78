from django.db import migrations, models

from tests.scenarios import EDIT_LATER


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.AddField("Alpha", "flag", models.BooleanField(null=True)),
        # Edited by the tests (its SQL or its hints) while it is not applied.
        migrations.RunSQL(EDIT_LATER["sql"], migrations.RunSQL.noop, hints=EDIT_LATER["hints"]),
    ]
