import os
import signal

from django.db import migrations, models, transaction

from tests.scenarios import RUNPYTHON_SEEN as SEEN


def alter_then_interrupt_at_commit(apps, schema_editor):
    schema_editor.execute("ALTER TABLE tests_alpha ADD COLUMN flag boolean")
    if SEEN.get("interrupt_at_commit"):
        # Ctrl-C arrives the moment the operation's transaction has committed.
        transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGINT))


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunPython(alter_then_interrupt_at_commit, migrations.RunPython.noop),
        migrations.AddField("Beta", "flag", models.BooleanField(null=True)),
    ]
