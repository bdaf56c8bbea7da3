#!/usr/bin/env bash
# Backup and restore throughput of a loaded collection, to a local directory and to an
# S3-compatible server (moto's, from compat/s3.sh), beside the time a fresh load + index of the
# same data takes (vecraft-bench's COPY and CREATE INDEX).
#
#   bash bench/backup_bench.sh [ROWSxDIM]       default 1000000x128; release build first:
#                                               cargo build --release -p vecraft -p vecraft-bench
#
# Prints one line per step: bytes, seconds, MB/s. Data and store live under target/backup-bench
# (removed at the start).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shape="${1:-1000000x128}"
work="$here/target/backup-bench"
bin="$here/target/release"
rm -rf "$work"
mkdir -p "$work"
port_of() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
sql_port="$(port_of)" s3_port="$(port_of)"

"$here/compat/s3.sh" start "$work/s3" "$s3_port"
curl -sf -X PUT "http://127.0.0.1:$s3_port/vecraft-backups" >/dev/null
AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
  "$bin/vecraft" serve --listen "127.0.0.1:$sql_port" --http 127.0.0.1:0 --data-dir "$work/data" \
  --backup-store-option "aws_endpoint=http://127.0.0.1:$s3_port" 2>"$work/vecraft.log" &
server=$!
trap 'kill $server 2>/dev/null || true; "$here/compat/s3.sh" stop "$work/s3"' EXIT
dsn="postgresql://postgres@127.0.0.1:$sql_port/postgres"
for _ in $(seq 1 600); do
  grep -q "serving PostgreSQL" "$work/vecraft.log" && break
  sleep 0.1 # pace the polls
done

echo "== fresh load + index ($shape)"
"$bin/vecraft-bench" run --dsn "$dsn" --synthetic "$shape" --cache-dir "$here/target/bench-data" \
  --table docs --ef-search 40 --connections 1 --rounds 1 --load-rounds 1 --max-queries 100 \
  2>&1 | grep -E "COPY|INDEX|load" | head -20

"$here/compat/.venv/bin/python" - "$dsn" "file://$work/store" "s3://vecraft-backups/bench" <<'EOF'
import sys, time
import psycopg

dsn, file_url, s3_url = sys.argv[1:4]
with psycopg.connect(dsn, autocommit=True) as conn:
    def timed(label, sql, size_column):
        started = time.monotonic()
        row = conn.execute(sql).fetchone()
        seconds = time.monotonic() - started
        size = int(row[size_column])
        print(f"{label}: {size / 1e6:.1f} MB in {seconds:.2f} s = {size / 1e6 / seconds:.1f} MB/s ({row})")
    timed("backup to file://", f"BACKUP COLLECTION docs TO '{file_url}'", 3)
    timed("backup to s3://", f"BACKUP COLLECTION docs TO '{s3_url}'", 3)
    timed("restore from file://", f"RESTORE docs FROM '{file_url}' AS from_file", 4)
    timed("restore from s3://", f"RESTORE docs FROM '{s3_url}' AS from_s3", 4)
    timed("restore from file:// into 4 shards", f"RESTORE docs FROM '{file_url}' AS four WITH (shards = 4)", 4)
EOF
