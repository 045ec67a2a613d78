"""The demo's app, a process of its own: CONNECTIONS sessions, each reading demo_account every
10 ms, until stdin closes.

``python -m demo.app URL`` prints one line per query: its start (``time.monotonic()``, the
same clock as the demo's), its duration in seconds, and 1 if it succeeded, 0 if it failed.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import time
from typing import Any

APPLICATION_NAME = "app"
#: Like a few app servers' connections: one of them queries every 2.5 ms on average.
CONNECTIONS = 4
INTERVAL = 0.01


def _driver() -> Any:
    try:
        return importlib.import_module("psycopg")
    except ImportError:
        return importlib.import_module("psycopg2")


def read_table(url: str, driver: Any, stop: threading.Event, output: threading.Lock) -> None:
    """One connection's loop: query, report, pause; reconnect after a failure."""
    conn: Any = None
    while not stop.is_set():
        started = time.monotonic()
        ok = 1
        try:
            if conn is None:
                conn = driver.connect(url, application_name=APPLICATION_NAME)
                conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM demo_account")
                cursor.fetchone()
        except driver.Error:
            ok = 0
            if conn is not None:
                conn.close()
            conn = None
        line = f"{started:.6f} {time.monotonic() - started:.6f} {ok}\n"
        with output:
            sys.stdout.write(line)
            sys.stdout.flush()
        stop.wait(INTERVAL)
    if conn is not None:
        conn.close()


def main() -> None:
    url = sys.argv[1]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the demo, which stops us
    driver = _driver()
    stop = threading.Event()
    output = threading.Lock()
    workers = [
        threading.Thread(target=read_table, args=(url, driver, stop, output))
        for _ in range(CONNECTIONS)
    ]
    for worker in workers:
        worker.start()
        stop.wait(INTERVAL / CONNECTIONS)  # spread their queries over the interval
    sys.stdin.read()  # until the demo closes it
    stop.set()
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
