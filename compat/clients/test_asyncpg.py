"""asyncpg with pgvector-python's adapter (`pgvector.asyncpg`): its codec registration reads
`pg_type` through asyncpg's own introspection query, then every vector crosses in binary."""

import asyncio
import datetime
import decimal

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


def test_schema_types_in_binary(dsn, table):
    """Arrays (asyncpg introspects their types first), numeric, timestamptz, date and
    varchar(n), written and read in binary, and COPY of the same."""
    at = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc)
    row = (1, ["a", "b c", None], at, decimal.Decimal("12.34"), datetime.date(2024, 2, 29),
           "abcd", decimal.Decimal("-0.000123"), [1, 2, None])
    copied = (2, [], at, decimal.Decimal("1"), datetime.date(1999, 12, 31), "x",
              decimal.Decimal("100"), [7])

    async def body(conn):
        await conn.execute(
            f"CREATE TABLE {table} (id int PRIMARY KEY, tags text[], at timestamptz,"
            " price numeric(10,2), day date, code varchar(4), amount numeric, counts bigint[])"
        )
        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", *row)
        await conn.copy_records_to_table(table, records=[copied])
        rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY id")
        found = await conn.fetchval(
            f"SELECT id FROM {table} WHERE at = $1 AND day = $2 AND $3 = ANY(tags)",
            at, datetime.date(2024, 2, 29), "b c",
        )
        try:
            await conn.execute(f"INSERT INTO {table} (id, code) VALUES ($1, $2)", 3, "abcde")
            refused = None
        except asyncpg.PostgresError as e:
            refused = (e.sqlstate, str(e))
        return [tuple(r) for r in rows], found, refused

    rows, found, refused = with_connection(dsn, body)
    assert rows == [row, copied[:3] + (decimal.Decimal("1.00"),) + copied[4:]]
    assert found == 1
    assert refused == ("22001", "value too long for type character varying(4)")
