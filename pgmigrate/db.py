"""Typed shorthands for Django's database API."""

from __future__ import annotations

import contextlib
from typing import Any, cast

from django.db import transaction

#: ``pg_stat_activity.state`` of a backend that is running a statement.
RUNNING_STATES = ("active", "fastpath function call")


def in_server_transaction(connection: Any) -> bool:
    """Whether the server has a transaction open on Django ``connection`` (one its code began
    with ``BEGIN``, say, while Django sees autocommit): the driver's transaction status is
    not idle (psycopg 3 ``info.transaction_status``, psycopg2 ``get_transaction_status()``;
    0 is idle in both). ``connection`` is connected (asked from an execute wrapper, which
    runs with a cursor open)."""
    driver = connection.connection
    info = getattr(driver, "info", None)
    status = info.transaction_status if info is not None else driver.get_transaction_status()
    return int(status) != 0


def atomic(using: str) -> contextlib.AbstractContextManager[Any]:
    """``django.db.transaction.atomic(using)`` (typed as a context manager)."""
    return cast(contextlib.AbstractContextManager[Any], transaction.atomic(using))
