"""A migration that stays idle, outside a transaction, between two of its operations: its
RunPython says so on stdout and waits until the file named by ``$PGMIGRATE_TEST_GO_FILE``
exists (tests kill ``migrate`` meanwhile, or create the file)."""

import os
import time
from pathlib import Path

from django.db import migrations, models

#: What the RunPython prints once it waits.
WAITING = "idle_wait: waiting"
#: A safety net: the test ends the wait long before this.
WAIT_SECONDS = 60.0


def wait_for_go(apps, schema_editor):
    go = Path(os.environ["PGMIGRATE_TEST_GO_FILE"])
    print(WAITING, flush=True)
    deadline = time.monotonic() + WAIT_SECONDS
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.AddField("Alpha", "flag", models.BooleanField(null=True)),
        migrations.RunPython(wait_for_go, migrations.RunPython.noop),
        migrations.AddField("Beta", "flag", models.BooleanField(null=True)),
    ]
