import os
import signal
import time

from django.db import migrations

from tests.scenarios import RUNPYTHON_SEEN as SEEN

#: A safety net: the loop below must be interrupted long before this.
BUSY_SECONDS = 60


def alter_then_compute(apps, schema_editor):
    schema_editor.execute("ALTER TABLE tests_gamma ADD COLUMN flag boolean")
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the function computes (no queries)
    deadline = time.monotonic() + BUSY_SECONDS
    while time.monotonic() < deadline:
        pass
    SEEN["busy_loop_finished"] = True


class Migration(migrations.Migration):
    dependencies = [("tests", "0002_commit")]
    operations = [migrations.RunPython(alter_then_compute, migrations.RunPython.noop)]
