"""The pgmigrate demo: a session blocks a table, ``migrate`` alters it anyway.

Starts a throwaway PostgreSQL (unless ``$DATABASE_URL`` is set), creates a table of 10,000
accounts, opens a session that sits idle in a transaction after reading that table (a
forgotten report), keeps an "app" reading the table every 10 ms, then runs ``manage.py
migrate`` to add a column. pgmigrate finds the blocking session and terminates it; the app
stalls for a few milliseconds instead of until the report ends.
"""

from __future__ import annotations

import os
import threading
import time

WIDTH = 78


def say(text: str = "") -> None:
    print(text, flush=True)


class App(threading.Thread):
    """Reads the accounts table every 10 ms and records each query's latency."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.latencies: list[tuple[float, float]] = []  # (start, seconds)
        self.failures = 0
        self.stop = threading.Event()
        self.warm = threading.Event()

    def run(self) -> None:
        from django.db import connection

        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT count(*) FROM demo_account")
            except Exception:
                self.failures += 1
            self.latencies.append((started, time.monotonic() - started))
            if len(self.latencies) >= 3:
                self.warm.set()
            self.stop.wait(0.01)
        connection.close()


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    say("=" * WIDTH)
    say("pgmigrate demo: migrate a table that another session is blocking")
    say("=" * WIDTH)
    call_command("migrate", "demo", "zero", verbosity=0)
    call_command("migrate", verbosity=0)
    call_command("migrate", "demo", "0001", verbosity=0)

    report = connections.create_connection("default")
    report.settings_dict = {
        **report.settings_dict,
        "OPTIONS": {**report.settings_dict["OPTIONS"], "application_name": "forgotten-report"},
    }
    report.set_autocommit(False)
    with report.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), count(*) FROM demo_account")
        report_pid, count = cursor.fetchone()
    say(f"\n1. Session pid {report_pid} read {count} rows of demo_account and stays idle in")
    say("   its transaction: it holds a lock that ALTER TABLE must wait for.")

    app = App()
    app.start()
    app.warm.wait(10)
    say("2. The app reads demo_account every 10 ms.")
    say("3. python manage.py migrate demo   (adds a column to demo_account)\n")
    started = time.monotonic()
    call_command("migrate", "demo")
    elapsed = time.monotonic() - started
    app.stop.wait(0.05)  # let the app's queued queries finish
    app.stop.set()
    app.join()
    during = [seconds for start, seconds in app.latencies if start >= started - 0.01]

    try:
        with report.cursor() as cursor:
            cursor.execute("SELECT 1")
        report_state = "still alive (unexpected!)"
    except Exception as exc:
        report_state = f"gone ({type(exc).__name__})"
    from django.db import connection

    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, "demo_account")
    columns = [column.name for column in description]
    say("\nResult")
    say(f"  migrate took               {elapsed * 1000:.0f} ms")
    say(f"  the blocking session is    {report_state}")
    say(f"  demo_account columns       {', '.join(columns)}")
    say(f"  app queries during migrate {len(during)}, failed: {app.failures}")
    say(f"  app's slowest query        {max(during) * 1000:.1f} ms")
    say("\nWithout pgmigrate, migrate (and every app query behind it) would wait until the")
    say("report's transaction ended.")
    call_command("migrate", "demo", "zero", verbosity=0)
    connections.close_all()


if __name__ == "__main__":
    main()
