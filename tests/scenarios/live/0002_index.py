from django.db import migrations, models

from tests.scenarios.live import SLOW_BUILD


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL(SLOW_BUILD, migrations.RunSQL.noop),
        migrations.AddIndex("Big", models.Index(fields=["name"], name="big_name_idx")),
    ]
