import os
import signal

from django.db import migrations, models


def alter_then_interrupt(apps, schema_editor):
    schema_editor.execute("ALTER TABLE tests_alpha ADD COLUMN flag boolean")
    # Ctrl-C arrives after the operation's last statement, while it finishes.
    os.kill(os.getpid(), signal.SIGINT)


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunPython(alter_then_interrupt, migrations.RunPython.noop),
        migrations.AddField("Beta", "flag", models.BooleanField(null=True)),
    ]
