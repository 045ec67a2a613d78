"""What the PostgreSQL server lacks for the suite, and a stand-in ``uuid-ossp`` extension.

Run in the suite's virtualenv (it has psycopg 3): ``python -m django_suite.server URL
[--stand-in]`` prints a JSON object: the server version, whether ``uuid-ossp`` is available
and whether the stand-in was installed.

postgres_tests' first migration creates ``uuid-ossp`` (only to check that a dashed extension
name is quoted), and the embedded PostgreSQL 18 of tests/pgserver.py is built without it, so
every run would fail while creating the test databases. With ``--stand-in`` (used only on
the throwaway server this harness started) the extension is provided as SQL functions from
a directory of the server's data directory, through PostgreSQL 18's
``extension_control_path``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psycopg
from psycopg import sql

CONTROL = """\
comment = 'stand-in for uuid-ossp (django_suite): uuid_nil() and uuid_generate_v4() in SQL'
default_version = '1.1'
relocatable = true
trusted = true
"""
SCRIPT = """\
CREATE FUNCTION uuid_nil() RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$SELECT '00000000-0000-0000-0000-000000000000'::uuid$$;
CREATE FUNCTION uuid_generate_v4() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE
    AS $$SELECT gen_random_uuid()$$;
"""


def has_uuid_ossp(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'uuid-ossp'")
    return row.fetchone() is not None


def install_stand_in(conn: psycopg.Connection) -> None:
    """Put the stand-in under the data directory and add it to extension_control_path."""
    row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    base = Path(row[0]) / "django_suite_extensions"
    (base / "extension").mkdir(parents=True, exist_ok=True)
    (base / "extension" / "uuid-ossp.control").write_text(CONTROL)
    (base / "extension" / "uuid-ossp--1.1.sql").write_text(SCRIPT)
    for path in (base, base / "extension"):
        path.chmod(0o755)
    path = sql.Literal(f"$system:{base}")
    conn.execute(sql.SQL("ALTER SYSTEM SET extension_control_path = {}").format(path))
    conn.execute("SELECT pg_reload_conf()")


def main(argv: list[str]) -> None:
    url, stand_in = argv[0], "--stand-in" in argv[1:]
    with psycopg.connect(url, autocommit=True) as conn:
        state = {"version": conn.info.server_version, "uuid-ossp": has_uuid_ossp(conn)}
        if stand_in and not state["uuid-ossp"] and conn.info.server_version >= 180000:
            install_stand_in(conn)
            state["stand-in"] = True
    print(json.dumps(state))


if __name__ == "__main__":
    main(sys.argv[1:])
