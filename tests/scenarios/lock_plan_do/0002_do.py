from django.db import migrations, models

from tests.scenarios import LOCK_PLAN_DO


class Migration(migrations.Migration):
    """A DO block, then an index built on beta without CONCURRENTLY (Django's SQL names beta
    unqualified): the plan reads the block to tell whether beta's name still resolves."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL(f"DO $$ BEGIN {LOCK_PLAN_DO['block']} END $$", migrations.RunSQL.noop),
        migrations.AddIndex("Beta", models.Index(fields=["name"], name="beta_name_idx")),
    ]
