"""The cluster's figures, on this machine, with real `vecraft node` processes on loopback.

    python cluster/bench/cluster.py --vecraft target/release/vecraft failover [--runs 5]
    python cluster/bench/cluster.py --vecraft target/release/vecraft rebuild [--rows 100000]
    python cluster/bench/cluster.py --vecraft target/release/vecraft qps [--rows 100000] [--rounds 3]

- failover: 3 nodes, one shard of 3 replicas; a client inserts one row at a time through a
  gateway on another node while the shard's leader is `kill -9`ed. Prints, per run, the time
  from the kill to the next acknowledged write (and the median). The killed node is restarted
  and caught up between runs.
- rebuild: 4 nodes, one shard of 3 replicas holding `--rows` vectors (128-d); a replica's node
  is killed for good (fail-over after 1 s). Prints the time from the kill until the shard has
  3 healthy replicas again (every replica has every row), and that time less the 1 s wait.
- qps: the same `--rows` vectors (a seeded Gaussian mixture) in a single node and in a 3-node
  cluster (`shards = 2, replicas = 3`); kNN queries (k = 10, `--ef`, prepared, vector as a
  parameter) from 1 and 4 connections, on the cluster with strong and with eventual reads,
  rounds interleaved; prints medians and recall@10 against exact search.

Needs: pip install "psycopg[binary]" pgvector numpy
"""
import argparse
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

# Every node of the benchmark cluster is given the same secret (vecraft node needs one).
CLUSTER_SECRET = secrets.token_hex(16)

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--vecraft", required=True, help="the vecraft binary (a release build)")
sub = ap.add_subparsers(dest="what", required=True)
f = sub.add_parser("failover")
f.add_argument("--runs", type=int, default=5)
r = sub.add_parser("rebuild")
r.add_argument("--rows", type=int, default=100_000)
q = sub.add_parser("qps")
q.add_argument("--rows", type=int, default=100_000)
q.add_argument("--queries", type=int, default=1_000)
q.add_argument("--rounds", type=int, default=3)
q.add_argument("--ef", type=int, default=100, help="hnsw.ef_search")
a = ap.parse_args()
DIMS = 128


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port):
    deadline = time.time() + 60
    while True:
        try:
            conn = psycopg.connect(f"host=127.0.0.1 port={port} user=postgres", autocommit=True)
            register_vector(conn)
            return conn
        except psycopg.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def rows(conn, sql):
    return conn.execute(sql).fetchall()


def wait_until(what, condition, timeout_s=300):
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


class Cluster:
    """Nodes 1..n, the first three the meta group, every one a gateway and storage node."""

    def __init__(self, n, failover_after_ms=60_000):
        self.dir = tempfile.mkdtemp(prefix="vecraft-bench-")
        self.ports = [(free_port(), free_port(), free_port()) for _ in range(n)]
        self.failover_after_ms = failover_after_ms
        self.procs = [None] * n
        for i in range(1, n + 1):
            self.start(i)
        c = connect(self.sql_port(1))
        wait_until("every node joined", lambda: rows(c, "SELECT count(*) FROM vecraft_nodes")[0][0] == n)

    def meta_peers(self):
        return ",".join(f"{i}=127.0.0.1:{self.ports[i - 1][1]}" for i in range(1, min(3, len(self.ports)) + 1))

    def sql_port(self, i):
        return self.ports[i - 1][0]

    def start(self, i):
        sql, rpc, http = self.ports[i - 1]
        roles = "gateway,meta,storage" if i <= 3 else "gateway,storage"
        self.procs[i - 1] = subprocess.Popen([
            a.vecraft, "node", f"--id={i}", f"--listen=127.0.0.1:{sql}", f"--rpc=127.0.0.1:{rpc}",
            f"--http=127.0.0.1:{http}", f"--data-dir={self.dir}/node-{i}", f"--meta-peers={self.meta_peers()}",
            f"--roles={roles}", f"--failover-after-ms={self.failover_after_ms}",
        ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "VECRAFT_CLUSTER_SECRET": CLUSTER_SECRET})

    def kill(self, i):
        self.procs[i - 1].send_signal(signal.SIGKILL)
        self.procs[i - 1].wait()
        self.procs[i - 1] = None

    def stop(self):
        for p in self.procs:
            if p:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def single_node():
    port, http = free_port(), free_port()
    d = tempfile.mkdtemp(prefix="vecraft-bench-")
    p = subprocess.Popen([a.vecraft, "serve", f"--listen=127.0.0.1:{port}", f"--http=127.0.0.1:{http}",
                          f"--data-dir={d}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, port, d


def leader(conn, collection):
    found = []
    wait_until("a leader", lambda: found.append(rows(conn, f"SELECT leader FROM vecraft_shards WHERE collection = '{collection}'")[0][0]) or found[-1] is not None)
    return found[-1]


def load(conn, table, vectors):
    with conn.cursor().copy(f"COPY {table} (id, embedding) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "vector"])
        for i, v in enumerate(vectors):
            copy.write_row((i, v))


def failover():
    c = Cluster(3)
    try:
        admin = connect(c.sql_port(1))
        admin.execute("CREATE COLLECTION kv (id bigint PRIMARY KEY, embedding vector(4)) WITH (shards = 1, replicas = 3)")
        gaps = []
        next_id = 0
        while len(gaps) < a.runs:
            run = len(gaps)
            victim = leader(admin, "kv")
            gateway = next(i for i in (1, 2, 3) if i != victim)
            conn = connect(c.sql_port(gateway))
            acks, stop = [], threading.Event()

            def writer():
                nonlocal next_id
                while not stop.is_set():
                    began = time.perf_counter()
                    try:
                        conn.execute("INSERT INTO kv VALUES (%s, '[1,2,3,4]')", (next_id,))
                        acks.append((began, time.perf_counter()))
                    except psycopg.Error:
                        pass
                    next_id += 1

            t = threading.Thread(target=writer)
            t.start()
            time.sleep(1.0)
            if leader(conn, "kv") != victim:
                stop.set()
                t.join()
                continue  # leadership moved meanwhile: measure again
            killed_at = time.perf_counter()
            c.kill(victim)
            # The first write sent after the kill and acknowledged (one in flight at the kill
            # may still complete on the old leader's quorum).
            wait_until("a write after the kill", lambda: any(b > killed_at for b, _ in acks), 60)
            stop.set()
            t.join()
            gap = min(e for b, e in acks if b > killed_at) - killed_at
            gaps.append(gap)
            print(f"run {run + 1}: killed leader node {victim}; next acknowledged write after {gap * 1000:.0f} ms", flush=True)
            c.start(victim)
            admin = connect(c.sql_port(gateway))
            wait_until("the node back in step", lambda: all(
                r[0] == r[1] for r in rows(admin, "SELECT r.applied_index, s.applied_index FROM vecraft_replicas r JOIN vecraft_shards s ON r.shard = s.shard AND r.collection = s.collection WHERE r.collection = 'kv'")))
        print(f"kill -9 of the leader to the next acknowledged write: median {statistics.median(gaps) * 1000:.0f} ms over {len(gaps)} runs "
              f"(min {min(gaps) * 1000:.0f}, max {max(gaps) * 1000:.0f})")
    finally:
        c.stop()


def rebuild():
    failover_after_ms = 1_000
    c = Cluster(4, failover_after_ms)
    try:
        conn = connect(c.sql_port(1))
        conn.execute(f"CREATE COLLECTION docs (id bigint PRIMARY KEY, embedding vector({DIMS})) WITH (shards = 1, replicas = 3)")
        vectors = np.random.default_rng(7).standard_normal((a.rows, DIMS)).astype(np.float32)
        started = time.perf_counter()
        load(conn, "docs", vectors)
        loaded = time.perf_counter()
        conn.execute("CHECKPOINT")
        print(f"COPY of {a.rows} x {DIMS} into 3 replicas: {loaded - started:.1f} s; CHECKPOINT (every replica "
              f"seals and builds its graphs): {time.perf_counter() - loaded:.1f} s", flush=True)
        nodes = [int(n) for n in rows(conn, "SELECT nodes FROM vecraft_shards WHERE collection = 'docs'")[0][0].split(",")]
        victim = next(n for n in nodes if n != 1 and n != leader(conn, "docs")) if len(nodes) > 2 else nodes[-1]
        killed_at = time.perf_counter()
        c.kill(victim)

        def healthy():
            shard = rows(conn, "SELECT nodes, rows FROM vecraft_shards WHERE collection = 'docs'")[0]
            placed = [int(n) for n in (shard[0] or "").split(",") if n]
            if len(placed) != 3 or victim in placed:
                return False
            reps = rows(conn, "SELECT node, rows FROM vecraft_replicas WHERE collection = 'docs'")
            return len(reps) == 3 and all(r[1] == a.rows for r in reps)

        wait_until("3 healthy replicas", healthy, 600)
        took = time.perf_counter() - killed_at
        print(f"replica of {a.rows} vectors on node {victim} rebuilt elsewhere: {took:.2f} s after the kill, "
              f"{took - failover_after_ms / 1000:.2f} s after the fail-over wait of {failover_after_ms} ms")
    finally:
        c.stop()


def mixture(n, seed):
    """`n` vectors around 100 seeded centres: neighbourhoods, as real embeddings have."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1).standard_normal((100, DIMS)).astype(np.float32)
    return (centres[rng.integers(0, 100, n)] + 0.5 * rng.standard_normal((n, DIMS))).astype(np.float32)


def qps():
    vectors = mixture(a.rows, 7)
    queries = mixture(a.queries, 8)
    single, single_port, single_dir = single_node()
    c = Cluster(3)
    try:
        for name, port, with_ in [("single node", single_port, ""),
                                  ("3-node cluster", c.sql_port(1), "WITH (shards = 2, replicas = 3)")]:
            conn = connect(port)
            conn.execute(f"CREATE COLLECTION docs (id bigint PRIMARY KEY, embedding vector({DIMS})) {with_}")
            started = time.perf_counter()
            load(conn, "docs", vectors)
            loaded = time.perf_counter()
            conn.execute("CHECKPOINT")
            print(f"{name}: COPY {loaded - started:.1f} s, CHECKPOINT {time.perf_counter() - loaded:.1f} s", flush=True)
        truth_conn = connect(single_port)
        truth_conn.execute("SET vecraft.exact_search = on")
        truth = [set(r[0] for r in truth_conn.execute("SELECT id FROM docs ORDER BY embedding <-> %s LIMIT 10", (q,)).fetchall())
                 for q in queries[:200]]
        servers = [("single node", single_port, "strong"), ("3-node cluster, strong reads", c.sql_port(1), "strong"),
                   ("3-node cluster, eventual reads", c.sql_port(1), "eventual")]
        results = {}
        for _ in range(a.rounds):
            for name, port, level in servers:
                for clients in (1, 4):
                    results.setdefault((name, clients), []).append(run_queries(port, level, queries, clients))
        for name, port, level in servers:
            conn = session(port, level)
            got = [set(r[0] for r in conn.execute("SELECT id FROM docs ORDER BY embedding <-> %s LIMIT 10", (q,)).fetchall())
                   for q in queries[:200]]
            recall = statistics.mean(len(g & t) / 10 for g, t in zip(got, truth))
            for clients in (1, 4):
                qs = statistics.median(results[(name, clients)])
                print(f"{name}, {clients} client(s): {qs:,.0f} queries/s (median of {a.rounds}), "
                      f"recall@10 {recall:.3f} at ef_search {a.ef}")
    finally:
        c.stop()
        single.kill()
        single.wait()
        shutil.rmtree(single_dir, ignore_errors=True)


def session(port, level):
    conn = connect(port)
    conn.execute(f"SET hnsw.ef_search = {a.ef}")
    conn.execute(f"SET vecraft.consistency = {level}")
    return conn


def run_queries(port, level, queries, clients):
    conns = [session(port, level) for _ in range(clients)]
    share = len(queries) // clients

    def worker(k):
        conn = conns[k]
        with conn.cursor() as cur:
            for q in queries[k * share:(k + 1) * share]:
                cur.execute("SELECT id FROM docs ORDER BY embedding <-> %s LIMIT 10", (q,), prepare=True)
                cur.fetchall()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return share * clients / (time.perf_counter() - started)


{"failover": failover, "rebuild": rebuild, "qps": qps}[a.what]()
