#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL 15 cluster on loopback:
#   bash .ci/with-postgres.sh make test
# Installs the Debian package postgresql-15 when it is missing (as root), creates a cluster
# in a temporary directory owned by an unprivileged user (initdb refuses root), starts it on
# 127.0.0.1 and a free port, exports TEST_POSTGRES_URL for the tests, and stops and deletes
# the cluster when the command ends, whether it passed or failed.
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

if [[ ! -x "$PGBIN/initdb" ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "PostgreSQL 15 is not installed ($PGBIN/initdb missing) and we are not root" >&2
        exit 1
    fi
    echo "installing postgresql-15"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi

if [[ $(id -u) -eq 0 ]]; then
    PGUSER_OS=postgres
    as_pg() { runuser -u "$PGUSER_OS" -- "$@"; }
else
    PGUSER_OS=$(id -un)
    as_pg() { "$@"; }
fi

PGDATA_DIR=$(mktemp -d /tmp/ci-postgres.XXXXXX)
chmod 700 "$PGDATA_DIR"
chown "$PGUSER_OS" "$PGDATA_DIR"
stop_cluster() {
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$PGDATA_DIR"
}
trap stop_cluster EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg "$PGBIN/initdb" -D "$PGDATA_DIR/data" -U postgres --auth=trust -E UTF8 >"$PGDATA_DIR/initdb.log" 2>&1 \
    || { cat "$PGDATA_DIR/initdb.log" >&2; exit 1; }
as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR/data" -l "$PGDATA_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$PGDATA_DIR -c fsync=off" \
    start >/dev/null || { cat "$PGDATA_DIR/server.log" >&2; exit 1; }
export TEST_POSTGRES_URL="postgresql+asyncpg://postgres@127.0.0.1:$PORT/postgres"
echo "PostgreSQL 15 running on 127.0.0.1:$PORT (data in $PGDATA_DIR)"
"$@"
