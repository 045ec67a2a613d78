import gc

from django.db import migrations
from django.db.migrations.state import ProjectState

from tests.scenarios import RUNPYTHON_SEEN


def count_states(apps, schema_editor):
    gc.collect()
    RUNPYTHON_SEEN["states"] = sum(type(o) is ProjectState for o in gc.get_objects())


class Migration(migrations.Migration):
    """Many operations in one transaction (RemoveField deletes data, so the operations after
    the first share its transaction): a RunPython in the middle counts the project states
    alive."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        *(migrations.RemoveField("Big", f"f{number}") for number in range(15)),
        migrations.RunPython(count_states, migrations.RunPython.noop),
        *(migrations.RemoveField("Big", f"f{number}") for number in range(15, 30)),
    ]
