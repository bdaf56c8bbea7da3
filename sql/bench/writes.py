"""Durable writes over the wire: single-row INSERTs and a binary COPY, on several servers.

    python sql/bench/writes.py --dsn A [--dsn B ...] [--pid PA --pid PB] [--clients 1,8] [--rows 2000] [--copy-rows 100000] [--rounds 3]

For each round and each server in turn (A B A B ...): a fresh table `(id bigint PRIMARY KEY,
embedding vector(128))`; every client connection inserts its share of `--rows` rows one
autocommitted, prepared INSERT at a time (each acknowledged only once durable); then one
connection loads `--copy-rows` rows with `COPY … (FORMAT BINARY)`. Prints, per server, the
medians over rounds: inserted rows per second and median / p99 INSERT latency for each client
count, and the COPY time. With `--pid` (one per `--dsn`, in the same order; Linux), also the
server's CPU time per inserted row: user and system time of the process and its children,
reaped or alive (PostgreSQL's postmaster and its backends; Vecraft's one process), read from
/proc around each INSERT phase (its table's DROP and CREATE included). Servers must be started
alike (PostgreSQL with fsync on).
Needs: bench/.venv (bench/peers/pg_up.sh installs bench/requirements/peers.txt into it)
"""
import argparse
import os
import statistics
import threading
import time

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--dsn", action="append", required=True, help="a server to measure (repeat for more)")
ap.add_argument("--pid", action="append", type=int, default=[],
                help="the process of the --dsn in the same place, for its CPU time per row")
ap.add_argument("--clients", default="1,8", help="concurrent connections, comma-separated")
ap.add_argument("--rows", type=int, default=2_000, help="single-row INSERTs per client count")
ap.add_argument("--copy-rows", type=int, default=100_000)
ap.add_argument("--dims", type=int, default=128)
ap.add_argument("--rounds", type=int, default=3)
a = ap.parse_args()
clients = [int(c) for c in a.clients.split(",")]
if a.pid and len(a.pid) != len(a.dsn):
    ap.error("give one --pid per --dsn, or none")
pids = dict(zip(a.dsn, a.pid))
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """CPU seconds of `pid` and its children: its own, its reaped children's, its live ones'."""
    def times(p, fields):
        with open(f"/proc/{p}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()  # the fields after the command name
        return sum(int(stat[i]) for i in fields)
    # utime, stime, cutime, cstime: fields 14-17 of stat, indices 11-14 once pid and name are cut.
    total = times(pid, (11, 12, 13, 14))
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            for child in f.read().split():
                try:
                    total += times(child, (11, 12, 13, 14))
                except FileNotFoundError:  # ended meanwhile: counted as reaped, or lost
                    pass
    return total * TICK_S

rng = np.random.default_rng(7)
vectors = rng.standard_normal((max(a.rows, a.copy_rows), a.dims)).astype(np.float32)


def connect(dsn):
    conn = psycopg.connect(dsn, autocommit=True)
    register_vector(conn)
    return conn


def fresh_table(dsn):
    with connect(dsn) as conn:
        conn.execute("DROP TABLE IF EXISTS writes_bench")
        conn.execute(f"CREATE TABLE writes_bench (id bigint PRIMARY KEY, embedding vector({a.dims}))")


def inserts(dsn, n_clients):
    """Rows per second and every INSERT's latency (µs), `a.rows` rows over `n_clients`."""
    fresh_table(dsn)
    latencies, errors = [], []
    per_client = a.rows // n_clients

    def client(c):
        try:
            with connect(dsn) as conn:
                mine = []
                for i in range(c * per_client, (c + 1) * per_client):
                    start = time.perf_counter()
                    conn.execute("INSERT INTO writes_bench (id, embedding) VALUES (%s, %s)",
                                 (i, vectors[i]), prepare=True)
                    mine.append((time.perf_counter() - start) * 1e6)
                latencies.extend(mine)
        except Exception as e:  # reported below, so a failed client cannot pass unnoticed
            errors.append(e)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(n_clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    with connect(dsn) as conn:
        count = conn.execute("SELECT count(*) FROM writes_bench").fetchone()[0]
    assert count == per_client * n_clients, (count, per_client * n_clients)
    return count / elapsed, latencies


def copy(dsn):
    fresh_table(dsn)
    with connect(dsn) as conn:
        start = time.perf_counter()
        with conn.cursor().copy("COPY writes_bench (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["int8", "vector"])
            for i in range(a.copy_rows):
                cp.write_row((i, vectors[i]))
        elapsed = time.perf_counter() - start
        assert conn.execute("SELECT count(*) FROM writes_bench").fetchone()[0] == a.copy_rows
        conn.execute("DROP TABLE writes_bench")
    return elapsed


results = {dsn: {"copy": [], **{c: {"rate": [], "p50": [], "p99": [], "cpu": []} for c in clients}}
           for dsn in a.dsn}
for r in range(a.rounds):
    for dsn in a.dsn:
        for c in clients:
            cpu_before = cpu_s(pids[dsn]) if dsn in pids else None
            rate, lat = inserts(dsn, c)
            if cpu_before is not None:
                rows = (a.rows // c) * c
                results[dsn][c]["cpu"].append((cpu_s(pids[dsn]) - cpu_before) / rows * 1e6)
            lat.sort()
            results[dsn][c]["rate"].append(rate)
            results[dsn][c]["p50"].append(lat[len(lat) // 2])
            results[dsn][c]["p99"].append(lat[int(len(lat) * 0.99)])
        results[dsn]["copy"].append(copy(dsn))
        print(f"round {r + 1}/{a.rounds} done on {dsn}", flush=True)

med = statistics.median
for dsn in a.dsn:
    print(f"\n{dsn}")
    for c in clients:
        m = results[dsn][c]
        cpu = f"   server CPU {med(m['cpu']):5.0f} µs/row" if m["cpu"] else ""
        print(f"  INSERT, {c:>2} client(s): {med(m['rate']):8.0f} rows/s   "
              f"p50 {med(m['p50']):7.0f} µs   p99 {med(m['p99']):7.0f} µs{cpu}")
    print(f"  COPY {a.copy_rows} x {a.dims}: {med(results[dsn]['copy']):.2f} s")
