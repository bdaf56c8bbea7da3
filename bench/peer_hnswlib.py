"""hnswlib on the same vectors as `hnsw_bench`, for a same-run comparison of the storage engine.

    python bench/peer_hnswlib.py BASE.npy QUERIES.npy --metric l2|cosine --m 16 --efc 64 --ef 10,20,40,80

Prints build time, then recall@10 (against exact numpy search) and single-thread QPS per ef, the
median of 3 timed passes over all queries, one query per call (as hnsw_bench measures).
"""
import argparse, time
import numpy as np
import hnswlib

ap = argparse.ArgumentParser()
ap.add_argument("base"); ap.add_argument("queries")
ap.add_argument("--metric", default="l2"); ap.add_argument("--m", type=int, default=16)
ap.add_argument("--efc", type=int, default=64); ap.add_argument("--ef", default="10,20,30,40,80")
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
base = np.load(a.base).astype(np.float32); queries = np.load(a.queries).astype(np.float32)
space = {"l2": "l2", "cosine": "cosine", "inner_product": "ip"}[a.metric]

if space == "cosine":
    bn = base / np.linalg.norm(base, axis=1, keepdims=True); qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(qn @ bn.T), axis=1)[:, :10]
else:
    d = (queries ** 2).sum(1)[:, None] - 2 * queries @ base.T + (base ** 2).sum(1)[None, :]
    truth = np.argsort(d, axis=1)[:, :10]

index = hnswlib.Index(space=space, dim=base.shape[1])
index.init_index(max_elements=len(base), M=a.m, ef_construction=a.efc, random_seed=1)
index.set_num_threads(a.threads)
t = time.perf_counter(); index.add_items(base, np.arange(len(base))); build = time.perf_counter() - t
index.set_num_threads(1)
print(f"hnswlib {len(base)} x {base.shape[1]}, {len(queries)} queries, {a.metric}, M {a.m}, efC {a.efc}: build {build:.2f} s ({a.threads} threads)")
print("| search | ef | recall@10 | QPS (1 thread) | mean µs |\n| --- | --- | --- | --- | --- |")
for ef in [int(x) for x in a.ef.split(",")]:
    index.set_ef(ef)
    for i in range(50):
        index.knn_query(queries[i:i + 1], k=10)
    rates, hits = [], 0
    for _ in range(3):
        hits = 0; t = time.perf_counter()
        for i in range(len(queries)):
            labels, _ = index.knn_query(queries[i:i + 1], k=10)
            hits += len(set(labels[0]) & set(truth[i]))
        rates.append(len(queries) / (time.perf_counter() - t))
    qps = sorted(rates)[1]
    print(f"| hnswlib | {ef} | {hits / (10 * len(queries)):.4f} | {qps:.0f} | {1e6 / qps:.0f} |")
