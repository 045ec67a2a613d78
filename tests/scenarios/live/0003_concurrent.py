from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

from tests.scenarios.live import SLOW_BUILD


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0002_index")]
    operations = [
        migrations.RunSQL(SLOW_BUILD, migrations.RunSQL.noop),
        AddIndexConcurrently("Big", models.Index(fields=["name"], name="big_name_cidx")),
    ]
