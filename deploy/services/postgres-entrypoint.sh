#!/bin/sh
# The part of the official postgres image's contract that deploy/compose.yaml uses, for an
# image built from Debian packages (deploy/service-images.sh): POSTGRES_USER,
# POSTGRES_PASSWORD and POSTGRES_DB on first start, *.sql in /docker-entrypoint-initdb.d run
# once, data in $PGDATA, password authentication from other hosts.
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data}
BIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
USER=${POSTGRES_USER:-postgres}
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp) && printf '%s\n' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}" > "$pw" && chown postgres "$pw"
  runuser -u postgres -- "$BIN/initdb" -D "$PGDATA" -U "$USER" --pwfile="$pw" -E UTF8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pw"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -w \
    -o "-c listen_addresses='' -c port=5432 -c unix_socket_directories=/run/postgresql" start >/dev/null
  psql() { runuser -u postgres -- "$BIN/psql" -h /run/postgresql -p 5432 -q -v ON_ERROR_STOP=1 -U "$USER" "$@"; }
  [ "${POSTGRES_DB:-$USER}" = postgres ] || psql -d postgres -c "CREATE DATABASE \"${POSTGRES_DB:-$USER}\""
  for f in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$f" ] && psql -d "${POSTGRES_DB:-$USER}" -f "$f"
  done
  runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -w stop >/dev/null
fi
exec runuser -u postgres -- "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' -c port=5432 \
  -c unix_socket_directories=/run/postgresql
