"""node-postgres (`pg`) with pgvector-node: `registerTypes` finds `vector` in `pg_type`, then
vectors come back as arrays; named prepared statements; an error leaves the client usable."""

import json
import pathlib
import subprocess

import pytest

NODE_DIR = pathlib.Path(__file__).resolve().parent.parent / "node"


def run_node(dsn, table):
    out = subprocess.run(
        ["node", "vectors.mjs", dsn, table], cwd=NODE_DIR, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_node_postgres_with_pgvector(dsn, table):
    seen = run_node(dsn, table)
    assert seen["fields"] == ["id", "embedding", "distance"]
    assert [r["id"] for r in seen["rows"]] == ["3", "1"]  # bigint arrives as a string
    assert seen["rows"][0]["embedding"] == [1, 1, 1]
    assert seen["rows"][0]["distance"] == pytest.approx(1.0)
    assert seen["count"] == "2"
    assert seen["error"] == {"code": "42P01", "message": f'relation "{table}_missing" does not exist'}
    assert seen["after_error"] == 3  # int4 arrives as a number
