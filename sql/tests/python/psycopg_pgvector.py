"""psycopg 3 with pgvector-python against a running Vecraft: register_vector, numpy vectors
in (parameters, binary COPY) and out, a kNN query. Exits non-zero on any mismatch.

    python sql/tests/python/psycopg_pgvector.py postgresql://postgres@127.0.0.1:5433/postgres

Needs: pip install "psycopg[binary]" pgvector numpy
"""
import sys

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

dsn = sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5433/postgres"

with psycopg.connect(dsn, autocommit=True) as conn:
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    conn.execute("DROP TABLE IF EXISTS psycopg_items")
    conn.execute("CREATE TABLE psycopg_items (id bigint PRIMARY KEY, embedding vector(3))")
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((200, 3)).astype(np.float32)
    # numpy vectors as parameters (pgvector's binary dumper)...
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO psycopg_items (id, embedding) VALUES (%s, %s)",
            [(i, vectors[i]) for i in range(100)],
        )
    # ...and through binary COPY.
    with conn.cursor().copy(
        "COPY psycopg_items (id, embedding) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "vector"])
        for i in range(100, 200):
            copy.write_row((i, vectors[i]))
    count = conn.execute("SELECT count(*) FROM psycopg_items").fetchone()[0]
    assert count == 200, count

    query = vectors[42] + 0.001
    rows = conn.execute(
        "SELECT id, embedding, embedding <-> %s AS d FROM psycopg_items "
        "ORDER BY embedding <-> %s LIMIT 5",
        (query, query),
    ).fetchall()
    truth = np.argsort(np.linalg.norm(vectors - query, axis=1))[:5]
    assert [r[0] for r in rows] == list(truth), (rows, truth)
    assert np.array_equal(rows[0][1].to_numpy(), vectors[42]), rows[0][1]
    assert abs(rows[0][2] - float(np.linalg.norm(vectors[42] - query))) < 1e-6, rows[0][2]
    # A prepared statement, executed many times with new vectors.
    for i in range(0, 200, 20):
        got = conn.execute(
            "SELECT id FROM psycopg_items ORDER BY embedding <-> %s LIMIT 1",
            (vectors[i],),
            prepare=True,
        ).fetchone()[0]
        assert got == i, (got, i)
    conn.execute("DROP TABLE psycopg_items")
print("psycopg + pgvector: ok")
