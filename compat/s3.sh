#!/usr/bin/env bash
# Starts and stops a throwaway S3-compatible server (moto's server mode, pinned in
# requirements/s3.txt and installed by compat/setup.sh) for the backup tests.
#
#   compat/s3.sh start DIR PORT   start on 127.0.0.1:PORT (pid and log in DIR), wait until it answers
#   compat/s3.sh stop DIR         stop the server of DIR
#
# It keeps objects in memory and checks no credentials: any access key works.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in
  start)
    dir="$2" port="$3"
    "$here/setup.sh"
    mkdir -p "$dir"
    "$here/.venv-s3/bin/moto_server" -H 127.0.0.1 -p "$port" >"$dir/s3.log" 2>&1 &
    echo $! >"$dir/s3.pid"
    for _ in $(seq 1 300); do
      if "$here/.venv-s3/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
        exit 0
      fi
      if ! kill -0 "$(cat "$dir/s3.pid")" 2>/dev/null; then
        echo "compat/s3.sh: the server exited:" >&2
        cat "$dir/s3.log" >&2
        exit 1
      fi
      sleep 0.1 # pace the polls
    done
    echo "compat/s3.sh: the server did not answer within 30 s" >&2
    exit 1
    ;;
  stop)
    dir="$2"
    if [ -f "$dir/s3.pid" ]; then
      kill "$(cat "$dir/s3.pid")" 2>/dev/null || true
      rm -f "$dir/s3.pid"
    fi
    ;;
  *)
    echo "usage: compat/s3.sh start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
