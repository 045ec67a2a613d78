from __future__ import annotations

import atexit
import json
import os
import threading
import time
from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created

#: (thread name, start, end, sql) of every statement, in the order they ended.
STATEMENTS: list[tuple[str, float, float, str]] = []


def _trace(execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
    started = time.time()
    try:
        return execute(sql, params, many, context)
    finally:
        STATEMENTS.append((threading.current_thread().name, started, time.time(), str(sql)))


def _on_connect(sender: Any, connection: Any, **kwargs: Any) -> None:
    if _trace not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _trace)


def _write() -> None:
    with open(os.environ["BENCH_TRACE_FILE"], "w") as file:
        json.dump(STATEMENTS, file)


class TracerConfig(AppConfig):
    name = "bench.tracer"

    def ready(self) -> None:
        connection_created.connect(_on_connect)
        atexit.register(_write)
