#!/usr/bin/env bash
# Throwaway Debian PostgreSQL 15 servers for the tests (used by .ci/run and noxfile.py).
#
# Run it:
#   bash .ci/pg15.sh install     install postgresql-15 with apt if it is missing (root only)
#   bash .ci/pg15.sh start       start a server on 127.0.0.1 and a free port; prints
#                                PG15_DIR=<dir> and PG15_URL=<url> on stdout
#   bash .ci/pg15.sh stop DIR    stop the server living in DIR and remove DIR
# or source it and call pg15_install, pg15_start (sets PG15_DIR and PG15_URL) and pg15_stop.
#
# As root, the server runs as the `postgres` OS user (PostgreSQL refuses to run as root);
# as anyone else, as that user. PG15_BIN overrides where the server binaries are.

PG15_BIN="${PG15_BIN:-/usr/lib/postgresql/15/bin}"
PG15_DIR=""
PG15_URL=""

# Run a PostgreSQL binary as the server's OS user, from its directory (the postgres user may
# not be allowed into the current one).
_pg15_as_owner() {
    local dir=$1
    shift
    if ((EUID == 0)); then
        (cd "$dir" && runuser -u postgres -- "$@")
    else
        (cd "$dir" && "$@")
    fi
}

_pg15_free_port() {
    local python
    python="$(command -v python3 || command -v python)"
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg15_installed() {
    [[ -x $PG15_BIN/pg_ctl && -x $PG15_BIN/initdb ]]
}

# Install Debian's postgresql-15 unless it is there already.
pg15_install() {
    pg15_installed && return 0
    if ((EUID != 0)); then
        echo "pg15: $PG15_BIN/pg_ctl is missing and installing postgresql-15 needs root" >&2
        return 1
    fi
    echo "pg15: installing postgresql-15 with apt" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >&2
}

# Start a throwaway server; set PG15_DIR and PG15_URL. Tries a few ports in case another
# process takes the free port between the check and the start.
pg15_start() {
    if ! pg15_installed; then
        echo "pg15: no PostgreSQL 15 in $PG15_BIN: run 'bash .ci/pg15.sh install' as root," \
            "or set PG15_URL to a server of yours" >&2
        return 1
    fi
    local dir data port attempt
    dir="$(mktemp -d "${TMPDIR:-/tmp}/pgmigrate-pg15-XXXXXX")" || return 1
    data="$dir/data"
    if ((EUID == 0)); then
        chown postgres: "$dir" || return 1
    fi
    if ! _pg15_as_owner "$dir" "$PG15_BIN/initdb" -D "$data" -U postgres --auth=trust \
        --encoding=UTF8 --no-sync --no-instructions >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        return 1
    fi
    cp "$data/postgresql.conf" "$dir/postgresql.conf.orig"
    for attempt in 1 2 3; do
        port="$(_pg15_free_port)"
        {
            cat "$dir/postgresql.conf.orig"
            cat <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
max_prepared_transactions = 10
wal_level = logical
EOF
        } >"$data/postgresql.conf"
        if _pg15_as_owner "$dir" "$PG15_BIN/pg_ctl" -D "$data" -l "$dir/server.log" -w \
            start >/dev/null; then
            PG15_DIR="$dir"
            PG15_URL="postgres://postgres@127.0.0.1:$port/postgres"
            echo "pg15: PostgreSQL 15 running in $dir: $PG15_URL" >&2
            return 0
        fi
        echo "pg15: start on port $port failed (attempt $attempt):" >&2
        tail -n 5 "$dir/server.log" >&2
    done
    rm -rf "$dir"
    return 1
}

# Stop the server in DIR (default: the one pg15_start started) and remove DIR.
pg15_stop() {
    local dir="${1:-$PG15_DIR}"
    [[ -n $dir && -d $dir ]] || return 0
    if [[ -f $dir/data/postmaster.pid ]]; then
        _pg15_as_owner "$dir" "$PG15_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop \
            >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    if [[ $dir == "$PG15_DIR" ]]; then
        PG15_DIR=""
        PG15_URL=""
    fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    case "${1:-}" in
        install) pg15_install ;;
        start)
            pg15_start
            printf 'PG15_DIR=%s\nPG15_URL=%s\n' "$PG15_DIR" "$PG15_URL"
            ;;
        stop)
            [[ $# -eq 2 ]] || { echo "usage: $0 stop DIR" >&2; exit 2; }
            pg15_stop "$2"
            ;;
        *)
            echo "usage: $0 install | start | stop DIR" >&2
            exit 2
            ;;
    esac
fi
