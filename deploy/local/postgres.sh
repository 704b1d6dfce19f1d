#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 with the `test` database and the
# `postgres` user under trust auth: what the test suite and the benchmarks expect.
#
# Installs Debian's PostgreSQL when it is missing, creates a cluster when there is none,
# starts it, and waits for it. Safe to run again: each step checks before it acts.
# Needs root (or sudo) only for the steps that install or configure.
set -euo pipefail

HOST=127.0.0.1
PORT=5432
DB=test

say() { printf 'postgres: %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if pg_isready -q -h "$HOST" -p "$PORT" 2>/dev/null; then
    say "already answering on $HOST:$PORT"
else
    if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        say "not installed; installing Debian's postgresql (apt-get)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    VERSION=$(ls /usr/lib/postgresql | sort -V | tail -1)
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -q "^$VERSION main$"; then
        say "creating cluster $VERSION/main on port $PORT"
        as_root pg_createcluster "$VERSION" main --port "$PORT" >/dev/null
    fi
    CONF_DIR=/etc/postgresql/$VERSION/main
    # Trust on loopback for the test user: the suite connects as postgres with no password.
    if ! grep -q '^# entityflow: trust on loopback' "$CONF_DIR/pg_hba.conf"; then
        say "allowing trust auth on loopback ($CONF_DIR/pg_hba.conf)"
        as_root sed -i '1i # entityflow: trust on loopback\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all postgres trust' "$CONF_DIR/pg_hba.conf"
    fi
    # Worker processes, API stacks and the pools of a parallel test run add up.
    if ! grep -q '^max_connections = 300' "$CONF_DIR/postgresql.conf"; then
        as_root sed -i 's/^max_connections = .*/max_connections = 300/' "$CONF_DIR/postgresql.conf"
    fi
    say "starting cluster $VERSION/main"
    as_root pg_ctlcluster "$VERSION" main start || as_root pg_ctlcluster "$VERSION" main restart
    for _ in $(seq 1 60); do
        pg_isready -q -h "$HOST" -p "$PORT" && break
        sleep 0.5
    done
    pg_isready -q -h "$HOST" -p "$PORT" || {
        say "did not answer on $HOST:$PORT; see /var/log/postgresql/"
        exit 1
    }
fi

if ! psql -h "$HOST" -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    say "creating database $DB"
    psql -h "$HOST" -p "$PORT" -U postgres -qc "CREATE DATABASE $DB"
fi
say "ready: postgresql://postgres@$HOST:$PORT/$DB"
