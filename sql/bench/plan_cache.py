"""What a kept plan saves per kNN query, over the wire, on a running Vecraft.

    python sql/bench/plan_cache.py [--dsn URL] [--rows 20000] [--dims 128] [--queries 2000] [--rounds 5]

Loads a seeded Gaussian-mixture table (binary COPY), builds the index, then runs the same
prepared `SELECT id FROM t ORDER BY embedding <-> $1 LIMIT 10` from one psycopg connection with
`SET vecraft.plan_cache = off` and `on`, rounds interleaved (off, on, off, on, ...), and prints
the median per-query latency of each, their difference, and a `SELECT 1` round trip for scale.
The client's own cost is the same in both, so the difference is what planning costs.
Needs: bench/.venv (bench/peers/pg_up.sh installs bench/requirements/peers.txt into it)
"""
import argparse
import statistics
import time

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5433/postgres")
ap.add_argument("--rows", type=int, default=20_000)
ap.add_argument("--dims", type=int, default=128)
ap.add_argument("--queries", type=int, default=2_000)
ap.add_argument("--rounds", type=int, default=5)
a = ap.parse_args()

rng = np.random.default_rng(42)
centres = rng.standard_normal((100, a.dims)).astype(np.float32)
data = (centres[rng.integers(0, 100, a.rows + a.queries)]
        + 0.3 * rng.standard_normal((a.rows + a.queries, a.dims))).astype(np.float32)
base, queries = data[:a.rows], data[a.rows:]

with psycopg.connect(a.dsn, autocommit=True) as conn:
    register_vector(conn)
    conn.execute("DROP TABLE IF EXISTS plan_cache_bench")
    conn.execute(f"CREATE TABLE plan_cache_bench (id bigint PRIMARY KEY, embedding vector({a.dims}))")
    with conn.cursor().copy("COPY plan_cache_bench (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as cp:
        cp.set_types(["int8", "vector"])
        for i, v in enumerate(base):
            cp.write_row((i, v))
    conn.execute("CREATE INDEX ON plan_cache_bench USING hnsw (embedding vector_l2_ops)")
    costs = {"on": [], "off": [], "select1": []}
    for r in range(a.rounds + 1):  # round 0 warms up (and builds the kept plan)
        for setting in ("off", "on"):  # ends "on": SELECT 1 below runs as clients run it
            conn.execute(f"SET vecraft.plan_cache = {setting}")
            start = time.perf_counter()
            for q in queries:
                rows = conn.execute("SELECT id FROM plan_cache_bench ORDER BY embedding <-> %s LIMIT 10",
                                    (q,), prepare=True).fetchall()
                assert len(rows) == 10
            if r:
                costs[setting].append((time.perf_counter() - start) * 1e6 / len(queries))
        start = time.perf_counter()
        for _ in range(len(queries)):
            conn.execute("SELECT 1", prepare=True).fetchall()
        if r:
            costs["select1"].append((time.perf_counter() - start) * 1e6 / len(queries))
    conn.execute("DROP TABLE plan_cache_bench")

on, off, s1 = (statistics.median(costs[k]) for k in ("on", "off", "select1"))
print(f"{a.rows} rows x {a.dims} dims, {a.queries} queries x {a.rounds} rounds, 1 connection, prepared")
print(f"kept plan (vecraft.plan_cache = on): {on:8.1f} us per kNN query (median of rounds)")
print(f"planned every time (off):            {off:8.1f} us per kNN query")
print(f"saved by the kept plan:              {off - on:8.1f} us per query ({off / on:.2f}x)")
print(f"SELECT 1 round trip:                 {s1:8.1f} us")
