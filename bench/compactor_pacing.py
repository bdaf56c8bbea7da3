#!/usr/bin/env python3
"""Foreground search latency while the compactor works, against the same node idle.

One `vecraft serve` (release build). ROWS x DIM random vectors go in by binary COPY, one
statement per 50,000 rows (the seal threshold, so each becomes a sealed segment with its HNSW
graph), then a CHECKPOINT. Then, from one client running top-10 searches back to back:

  idle   the searches alone, for IDLE_SECONDS;
  busy   half of every segment's rows are deleted (alternate blocks of 1,000 ids), which makes
         the compactor rewrite every segment without its dead rows (a new graph each); the
         searches run until `vecraft_segments` shows no dead row left.

Prints p50/p95/p99 of each phase, the ratio busy/idle of each, and how long the compactor
worked. The deletes themselves are left out of the busy phase's latencies: only the time the
compactor runs counts.

    compat/.venv/bin/python bench/compactor_pacing.py [ROWSxDIM] [IDLE_SECONDS]
                                                      default 400000x128 20

Release build first: cargo build --release -p vecraft. Data lives under
target/compactor-pacing (removed at the start); the node's log is kept there.
"""

import pathlib
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import psycopg

HERE = pathlib.Path(__file__).resolve().parent.parent
SHAPE = sys.argv[1] if len(sys.argv) > 1 else "400000x128"
IDLE_SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
WORK = HERE / "target" / "compactor-pacing"
BIN = HERE / "target" / "release" / "vecraft"
BLOCK_ROWS = 50_000
SEARCH = "SELECT id FROM docs ORDER BY embedding <-> %s::vector LIMIT 10"


def start():
    log = open(WORK / "node.log", "w+")
    proc = subprocess.Popen(
        [BIN, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
         "--data-dir", WORK / "data"],
        stdout=log, stderr=log,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log.seek(0)
        found = re.search(r"serving PostgreSQL on (\S+),", log.read())
        if found:
            return proc, found.group(1)
        time.sleep(0.1)  # pace the polls of the log
    proc.kill()
    sys.exit("the node did not start; see " + str(WORK / "node.log"))


def copy_rows(conn, rows, dims):
    """Random vectors by binary COPY (pgvector's binary vector: dims, unused, float4s)."""
    rng = np.random.default_rng(7)
    row = np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("v_len", ">i4"),
                    ("dims", ">i2"), ("unused", ">i2"), ("v", ">f4", (dims,))])
    for start in range(0, rows, BLOCK_ROWS):
        block = np.zeros(min(BLOCK_ROWS, rows - start), row)
        block["fields"], block["id_len"], block["v_len"] = 2, 8, 4 + 4 * dims
        block["id"] = np.arange(start, start + len(block))
        block["dims"] = dims
        block["v"] = rng.random((len(block), dims), dtype=np.float32)
        with conn.cursor().copy("COPY docs (id, embedding) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(b"PGCOPY\n\xff\r\n\x00" + bytes(8) + block.tobytes() + b"\xff\xff")


def segments(conn):
    """(sealed segments, their rows, their dead rows)."""
    return conn.execute(
        "SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(dead_rows), 0) "
        "FROM vecraft_segments WHERE collection = 'docs' AND state = 'sealed'").fetchone()


def search_until(conn, queries, stop):
    """Latencies (ms) of searches run back to back until stop() says so."""
    latencies = []
    i = 0
    while not stop(i):
        q = queries[i % len(queries)]
        started = time.perf_counter()
        found = conn.execute(SEARCH, (q,), prepare=True).fetchall()
        latencies.append((time.perf_counter() - started) * 1000)
        assert len(found) == 10, found
        i += 1
    return latencies


def percentiles(latencies):
    ms = np.array(latencies)
    return {p: float(np.percentile(ms, p, method="inverted_cdf")) for p in (50, 95, 99)}


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    proc, addr = start()
    try:
        run(addr)
    finally:
        proc.kill()


def run(addr):
    host, port = addr.rsplit(":", 1)
    conn = psycopg.connect(host=host, port=int(port), user="postgres", dbname="postgres",
                           autocommit=True)
    rows, dims = (int(n) for n in SHAPE.split("x"))
    print(f"== load {SHAPE}", flush=True)
    started = time.monotonic()
    conn.execute(f"CREATE COLLECTION docs (id bigint PRIMARY KEY, embedding vector({dims})) "
                 "WITH (m = 16, ef_construction = 64)")
    copy_rows(conn, rows, dims)
    conn.execute("CHECKPOINT")
    print(f"loaded in {time.monotonic() - started:.0f} s; sealed segments, rows, dead rows: "
          f"{segments(conn)}", flush=True)

    rng = np.random.default_rng(11)
    queries = ["[" + ",".join(f"{x:.5f}" for x in v) + "]"
               for v in rng.random((500, dims), dtype=np.float32)]
    search_until(conn, queries, lambda i: i >= 200)  # warm the plan and the pages

    print(f"== idle: searches for {IDLE_SECONDS:.0f} s", flush=True)
    until = time.monotonic() + IDLE_SECONDS
    idle = search_until(conn, queries, lambda i: time.monotonic() > until)

    print("== busy: half of every segment deleted; searches until the compactor is done",
          flush=True)
    writer = psycopg.connect(host=host, port=int(port), user="postgres", dbname="postgres",
                             autocommit=True)
    for first in range(0, rows, 2000):
        writer.execute("DELETE FROM docs WHERE id >= %s AND id < %s", (first, first + 1000))
    began = time.monotonic()
    checks = {"last": 0.0, "dead": 1}

    def compacted(i):
        now = time.monotonic()
        if now - checks["last"] > 0.25:  # look a few times a second, between searches
            checks["last"] = now
            checks["dead"] = writer.execute(
                "SELECT coalesce(sum(dead_rows), 0) FROM vecraft_segments "
                "WHERE collection = 'docs' AND state = 'sealed'").fetchone()[0]
        if now - began > 900:
            sys.exit("the compactor did not finish within 15 minutes")
        return checks["dead"] == 0

    busy = search_until(conn, queries, compacted)
    worked = time.monotonic() - began
    print(f"compactor done in {worked:.1f} s; sealed segments, rows, dead rows: "
          f"{segments(conn)}")

    idle_p, busy_p = percentiles(idle), percentiles(busy)
    print(f"{'phase':<6} {'searches':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for name, lat, p in (("idle", idle, idle_p), ("busy", busy, busy_p)):
        print(f"{name:<6} {len(lat):>9} {p[50]:>8.2f} {p[95]:>8.2f} {p[99]:>8.2f}")
    print("busy/idle: " + ", ".join(f"p{k} {busy_p[k] / idle_p[k]:.2f}x" for k in (50, 95, 99)))


if __name__ == "__main__":
    main()
