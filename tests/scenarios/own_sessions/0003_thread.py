"""The migration's own code starts a thread that reads tests_beta in a transaction (a
session of its own) until the test releases it, and alters the table meanwhile. Run again
(after a step out of the lock queue), it finds the thread started."""

import threading

from django.db import connections, migrations, transaction

from tests.scenarios import OWN_SESSIONS as SEEN


def helper(read: threading.Event) -> None:
    try:
        with transaction.atomic():
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT count(*) FROM tests_beta")
                cursor.execute("SELECT pg_backend_pid()")
                SEEN["pid"] = cursor.fetchone()[0]
            read.set()
            SEEN["release"].wait(30)
        SEEN["committed"] = True
    except Exception as exc:  # ended by pgmigrate: the test says so
        SEEN["error"] = exc
        read.set()
    finally:
        connections.close_all()


def alter_beside_a_thread(apps, schema_editor):
    if "thread" not in SEEN:
        read = threading.Event()
        SEEN["thread"] = threading.Thread(target=helper, args=(read,), daemon=True)
        SEEN["thread"].start()
        read.wait(30)
    SEEN["runs"] = SEEN.get("runs", 0) + 1
    schema_editor.execute("ALTER TABLE tests_beta ADD COLUMN own integer")


class Migration(migrations.Migration):
    dependencies = [("tests", "0002_same_thread")]
    operations = [migrations.RunPython(alter_beside_a_thread, migrations.RunPython.noop)]
