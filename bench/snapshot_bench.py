#!/usr/bin/env python3
"""Peak memory of installing a shard's snapshot on a new replica.

Four `vecraft node` processes on loopback (meta group on nodes 1-3); `vecraft-bench` loads a
collection (one shard, three replicas, HNSW index) through node 1, then a checkpoint purges the
shard's log. A replica that is not the leader is killed for good; after --failover-after-ms the
shard gets a new replica on the spare node, which can only catch up by the leader's snapshot.
Before the kill, the peak resident memory (VmHWM) of the spare node and of the leader is reset
(/proc/PID/clear_refs); once the new replica holds every row, the script prints each one's
peak and how far it rose, the transfer's time and rate, and the new replica's resident memory
once installed (what holding the replica costs, beside what the transfer cost).

    compat/.venv/bin/python bench/snapshot_bench.py [ROWSxDIM]     default 1000000x128

Release build first: cargo build --release -p vecraft -p vecraft-bench. Data lives under
target/snapshot-bench (removed at the start); node logs are kept there.
"""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import psycopg

HERE = pathlib.Path(__file__).resolve().parent.parent
SHAPE = sys.argv[1] if len(sys.argv) > 1 else "1000000x128"
WORK = HERE / "target" / "snapshot-bench"
BIN = HERE / "target" / "release"
SECRET = "snapshot-bench-cluster-secret-0123456789"
NODES = 4
FAILOVER_AFTER_MS = 5000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RPC = [free_port() for _ in range(NODES)]
SQL = [free_port() for _ in range(NODES)]
META = ",".join(f"{i + 1}=127.0.0.1:{RPC[i]}" for i in range(3))
procs = {}


def start(node):
    log = open(WORK / f"node{node}.log", "w")
    roles = "gateway,meta,storage" if node <= 3 else "gateway,storage"
    procs[node] = subprocess.Popen(
        [
            BIN / "vecraft", "node", f"--id={node}",
            f"--listen=127.0.0.1:{SQL[node - 1]}", f"--rpc=127.0.0.1:{RPC[node - 1]}",
            "--http=127.0.0.1:0", f"--data-dir={WORK / f'n{node}'}", f"--meta-peers={META}",
            f"--roles={roles}", f"--failover-after-ms={FAILOVER_AFTER_MS}",
            f"--cluster-secret={SECRET}",
        ],
        stdout=log, stderr=log,
    )


def dsn(node):
    return f"postgresql://postgres@127.0.0.1:{SQL[node - 1]}/postgres"


def wait_until(what, condition, timeout_s):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.2)  # pace the polls


def connects(node):
    try:
        psycopg.connect(dsn(node), connect_timeout=1).close()
        return True
    except psycopg.Error:
        return False


def succeeds(statement):
    """Whether `statement` ran; a cluster still electing or moving a replica answers 57P03."""
    try:
        statement()
        return True
    except psycopg.Error as e:
        print(f"  {e.sqlstate} {str(e).splitlines()[0]}; again", flush=True)
        return False


def status(pid):
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def copy_rows(conn, rows, dims):
    """Random vectors by binary COPY (pgvector's binary vector: dims, unused, float4s), one
    statement per 50,000 rows. A statement that fails (a write timed out while three replicas
    build graphs on two cores) is undone and sent again; returns how many were."""
    rng = np.random.default_rng(7)
    row = np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("v_len", ">i4"),
                    ("dims", ">i2"), ("unused", ">i2"), ("v", ">f4", (dims,))])
    retried = 0
    for start in range(0, rows, 50_000):
        block = np.zeros(min(50_000, rows - start), row)
        block["fields"], block["id_len"], block["v_len"] = 2, 8, 4 + 4 * dims
        block["id"] = np.arange(start, start + len(block))
        block["dims"] = dims
        block["v"] = rng.random((len(block), dims), dtype=np.float32)
        for attempt in range(5):
            try:
                with conn.cursor().copy(
                        "COPY docs (id, embedding) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(b"PGCOPY\n\xff\r\n\x00" + bytes(8) + block.tobytes() + b"\xff\xff")
                break
            except psycopg.Error as e:
                print(f"rows {start}..: {e.sqlstate} {str(e).splitlines()[0]}; again", flush=True)
                retried += 1
                undo = lambda: conn.execute("DELETE FROM docs WHERE id >= %s", (start,))
                wait_until(f"rows from {start} to be undone", lambda: succeeds(undo), 300)
        else:
            sys.exit("COPY kept failing")
    return retried


def mb(size_bytes):
    return f"{size_bytes / 1e6:.1f} MB"


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    for node in range(1, NODES + 1):
        start(node)
    try:
        run()
    finally:
        for proc in procs.values():
            proc.kill()


def run():
    for node in range(1, NODES + 1):
        wait_until(f"node {node} to serve", lambda: connects(node), 60)
    conn = psycopg.connect(dsn(1), autocommit=True)
    wait_until("every node to join",
               lambda: conn.execute("SELECT count(*) FROM vecraft_nodes").fetchone()[0] == NODES, 60)

    rows, dims = (int(n) for n in SHAPE.split("x"))
    print(f"== load {SHAPE} through node 1 (one shard, three replicas)", flush=True)
    started = time.monotonic()
    conn.execute(f"CREATE COLLECTION docs (id bigint PRIMARY KEY, embedding vector({dims})) "
                 "WITH (m = 16, ef_construction = 64)")
    retried = copy_rows(conn, rows, dims)
    conn.execute("CHECKPOINT")
    print(f"loaded and checkpointed in {time.monotonic() - started:.0f} s "
          f"({retried} statements sent again)", flush=True)
    replicas = conn.execute(
        "SELECT node, leader, rows FROM vecraft_replicas WHERE collection = 'docs'").fetchall()
    holders = {r[0] for r in replicas}
    leader = replicas[0][1]
    spare = next(n for n in range(1, NODES + 1) if n not in holders)
    victim = next(n for n in sorted(holders) if n not in (leader, 1))
    print(f"replicas on {sorted(holders)}, leader {leader}, spare {spare}, killing {victim}")

    watched = {"spare": procs[spare].pid, "leader": procs[leader].pid}
    before = {}
    for name, pid in watched.items():
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident size
        before[name] = status(pid)
    sampled = {name: 0 for name in watched}
    done = threading.Event()

    def sample():  # the anonymous part of the peak, which VmHWM does not tell apart
        while not done.is_set():
            for name, pid in watched.items():
                sampled[name] = max(sampled[name], status(pid)["RssAnon"])
            done.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    procs[victim].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()

    def installed():
        found = conn.execute(
            "SELECT rows FROM vecraft_replicas WHERE collection = 'docs' AND node = %s",
            (spare,)).fetchall()
        return bool(found) and found[0][0] == rows

    wait_until("the new replica to hold every row", installed, 900)
    seconds = time.monotonic() - killed_at
    done.set()
    sampler.join()
    size_bytes = sum(f.stat().st_size for f in (WORK / f"n{spare}").rglob("*") if f.is_file())
    print(f"new replica on node {spare}: {rows} rows, {mb(size_bytes)} on disk, "
          f"{seconds:.1f} s after the kill (failover after {FAILOVER_AFTER_MS / 1000:.0f} s), "
          f"{size_bytes / 1e6 / max(seconds - FAILOVER_AFTER_MS / 1000, 0.001):.0f} MB/s after it")
    for name, pid in watched.items():
        after = status(pid)
        print(f"{name} (pid {pid}): resident {mb(before[name]['VmRSS'])} before, "
              f"peak {mb(after['VmHWM'])} (+{mb(after['VmHWM'] - before[name]['VmRSS'])}), "
              f"anonymous {mb(before[name]['RssAnon'])} before, sampled peak "
              f"{mb(sampled[name])} (+{mb(sampled[name] - before[name]['RssAnon'])}), "
              f"now resident {mb(after['VmRSS'])}, anonymous {mb(after['RssAnon'])}")


if __name__ == "__main__":
    main()
