"""asyncpg with pgvector-python's adapter (`pgvector.asyncpg`): its codec registration reads
`pg_type` through asyncpg's own introspection query, then every vector crosses in binary."""

import asyncio

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector


def with_connection(dsn, body):
    """Runs `body(conn)` on a connection with pgvector's codecs registered; its result."""

    async def go():
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await register_vector(conn)
            return await body(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def test_vectors_in_and_out_in_binary(dsn, table):
    async def body(conn):
        await conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(3))")
        await conn.executemany(
            f"INSERT INTO {table} (id, embedding) VALUES ($1, $2)",
            [(1, np.array([1, 2, 3])), (2, np.array([4, 5, 6]))],
        )
        rows = await conn.fetch(
            f"SELECT id, embedding FROM {table} ORDER BY embedding <-> $1 LIMIT 1",
            np.array([4, 4, 4]),
        )
        return [(r["id"], r["embedding"].to_list()) for r in rows]

    assert with_connection(dsn, body) == [(2, [4.0, 5.0, 6.0])]


def test_copy_records_to_table(dsn, table):
    async def body(conn):
        await conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(2))")
        await conn.copy_records_to_table(
            table, records=[(i, np.array([i, i])) for i in range(10)], columns=["id", "embedding"]
        )
        return await conn.fetchval(f"SELECT count(*) FROM {table}")

    assert with_connection(dsn, body) == 10


def test_prepared_statement_columns_by_name(dsn, table):
    async def body(conn):
        await conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(2))")
        await conn.execute(f"INSERT INTO {table} VALUES (1, '[3,4]')")
        stmt = await conn.prepare(f"SELECT id, embedding <-> $1 AS distance FROM {table}")
        row = await stmt.fetchrow(np.array([0, 0]))
        return [a.name for a in stmt.get_attributes()], dict(row)

    names, row = with_connection(dsn, body)
    assert names == ["id", "distance"]
    assert row == {"id": 1, "distance": 5.0}
