"""Putting the benchmark app's table in a known state between runs."""

from __future__ import annotations

from bench import server
from bench.migrate import migrate

TABLE = "bench_row"
ROWS = 10_000


def setup(url: str) -> None:
    """Recreate ``bench_row`` from scratch with migration 0001 (10,000 rows)."""
    server.execute(url, f"DROP TABLE IF EXISTS {TABLE}")
    forget(url, "benchapp")
    migrate("plain", url, "benchapp", "0001_initial")
    server.execute(url, f"VACUUM ANALYZE {TABLE}")


def forget(url: str, app: str, after: str = "") -> None:
    """Delete ``app``'s rows of ``django_migrations`` whose name sorts after ``after``."""
    server.execute(
        url,
        "DO $$ BEGIN IF to_regclass('django_migrations') IS NOT NULL THEN"
        f" DELETE FROM django_migrations WHERE app = '{app}' AND name > '{after}';"
        " END IF; END $$",
    )


def reset_to_0001(url: str) -> None:
    """Undo migration 0002 (the ``note`` column) without running ``migrate``."""
    server.execute(url, f"ALTER TABLE {TABLE} DROP COLUMN IF EXISTS note")
    forget(url, "benchapp", after="0001_initial")


def has_note_column(url: str) -> bool:
    rows = server.execute(
        url,
        "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = 'note'",
        [TABLE],
    )
    return bool(rows)
