"""Typed shorthands for Django's database API."""

from __future__ import annotations

import contextlib
from typing import Any, cast

from django.db import transaction


def atomic(using: str) -> contextlib.AbstractContextManager[Any]:
    """``django.db.transaction.atomic(using)`` (typed as a context manager)."""
    return cast(contextlib.AbstractContextManager[Any], transaction.atomic(using))
