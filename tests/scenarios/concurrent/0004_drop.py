from django.contrib.postgres.operations import RemoveIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0003_index")]
    # Backwards, this builds beta_slow_idx again (CREATE INDEX CONCURRENTLY).
    operations = [RemoveIndexConcurrently("Beta", "beta_slow_idx")]
