"""The demo's app, a process of its own: reads demo_account every 10 ms until stdin closes.

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


def _driver() -> Any:
    try:
        return importlib.import_module("psycopg")
    except ImportError:
        return importlib.import_module("psycopg2")


def main() -> None:
    url = sys.argv[1]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the demo, which stops us
    driver = _driver()
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
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
            conn = None  # reconnect on the next query
        print(f"{started:.6f} {time.monotonic() - started:.6f} {ok}", flush=True)
        stop.wait(0.01)
    if conn is not None:
        conn.close()


if __name__ == "__main__":
    main()
