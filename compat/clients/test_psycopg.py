"""psycopg 3 with pgvector-python's adapter (`pgvector.psycopg`), as pgvector's README uses it:
numpy arrays in, `pgvector.Vector` out."""

import datetime
import decimal
import threading
import time

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector, SparseVector
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.rows import dict_row


@pytest.fixture
def conn(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        yield conn


def test_vectors_round_trip_as_numpy_arrays(conn, table):
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(3))")
    rows = [(1, np.array([1, 2, 3])), (2, np.array([4, 5, 6])), (3, np.array([1, 1, 1]))]
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} (id, embedding) VALUES (%s, %s)", rows)
    got = conn.execute(
        f"SELECT id, embedding FROM {table} ORDER BY embedding <-> %s LIMIT 2",
        (np.array([1, 1, 2]),),
    ).fetchall()
    assert [r[0] for r in got] == [3, 1]
    assert got[0][1].to_list() == [1.0, 1.0, 1.0]


def test_binary_copy_of_vectors(conn, table):
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(2))")
    with conn.cursor().copy(f"COPY {table} (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "vector"])
        for i in range(100):
            copy.write_row((i, np.array([i, -i])))
    n, top = conn.execute(f"SELECT count(*), max(id) FROM {table}").fetchone()
    assert (n, top) == (100, 99)


def test_halfvec_in_binary_and_text_with_an_hnsw_index(conn, table):
    """pgvector-python's HalfVector: binary and text parameters, binary results, binary COPY,
    a kNN search on a halfvec column's HNSW index; a half's overflow is pgvector's error."""
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding halfvec(3))")
    conn.execute(f"CREATE INDEX ON {table} USING hnsw (embedding halfvec_cosine_ops)")
    conn.execute(
        f"INSERT INTO {table} VALUES (1, %b), (2, %t)", (HalfVector([1, 2, 3]), HalfVector([1.1, 0, 0]))
    )
    with conn.cursor().copy(f"COPY {table} (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "halfvec"])
        copy.write_row((3, HalfVector([0, 0, 65504])))
    rows = conn.execute(
        f"SELECT id, embedding FROM {table} ORDER BY embedding <=> %b LIMIT 3",
        (HalfVector([1, 0, 0]),),
        binary=True,
    ).fetchall()
    assert [r[0] for r in rows] == [2, 1, 3]
    assert rows[0][1].to_list() == [1.099609375, 0.0, 0.0]
    assert rows[2][1].to_list() == [0.0, 0.0, 65504.0]
    with pytest.raises(psycopg.errors.NumericValueOutOfRange, match='"65520" is out of range for type halfvec'):
        conn.execute("SELECT %s::halfvec", ("[65520]",))


def test_sparsevec_in_binary_and_text(conn, table):
    """pgvector-python's SparseVector: binary and text parameters, binary results, binary COPY,
    a search ordered by distance; a wrong dimension is pgvector's error."""
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding sparsevec(5))")
    conn.execute(
        f"INSERT INTO {table} VALUES (1, %b), (2, %t)",
        (SparseVector({0: 1, 4: 2}, 5), SparseVector({1: 3.5}, 5)),
    )
    with conn.cursor().copy(f"COPY {table} (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "sparsevec"])
        copy.write_row((3, SparseVector({2: -1}, 5)))
    rows = conn.execute(
        f"SELECT id, embedding FROM {table} ORDER BY embedding <-> %b",
        (SparseVector({0: 1}, 5),),
        binary=True,
    ).fetchall()
    assert [r[0] for r in rows] == [3, 1, 2]
    assert rows[1][1].indices() == [0, 4] and rows[1][1].values() == [1.0, 2.0]
    assert rows[1][1].dimensions() == 5
    text = conn.execute(f"SELECT embedding::text FROM {table} WHERE id = 2").fetchone()[0]
    assert text == "{2:3.5}/5"
    with pytest.raises(psycopg.errors.DataException, match="expected 5 dimensions, not 4"):
        conn.execute(f"INSERT INTO {table} VALUES (4, %s)", (SparseVector({0: 1}, 4),))


def test_rows_read_by_column_name(conn, table):
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(2))")
    conn.execute(f"INSERT INTO {table} VALUES (1, '[3,4]')")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT id, embedding <-> '[0,0]' AS distance FROM {table}").fetchone()
    assert row == {"id": 1, "distance": 5.0}


def test_cosine_and_inner_product_operators(conn, table):
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(2))")
    conn.execute(f"INSERT INTO {table} VALUES (1, '[1,0]'), (2, '[0,1]')")
    row = conn.execute(
        f"SELECT embedding <=> '[1,0]', embedding <#> '[1,0]' FROM {table} WHERE id = 1"
    ).fetchone()
    assert row == (0.0, -1.0)


def test_an_hnsw_index_is_created_and_used_for_knn(conn, table):
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(2))")
    conn.execute(f"INSERT INTO {table} SELECT i, ARRAY[i, i]::real[]::vector FROM generate_series(1, 50) i")
    conn.execute(f"CREATE INDEX ON {table} USING hnsw (embedding vector_l2_ops)")
    got = conn.execute(f"SELECT id FROM {table} ORDER BY embedding <-> '[10,10]' LIMIT 3").fetchall()
    assert sorted(r[0] for r in got) == [9, 10, 11]


def test_a_parameter_cast_to_vector(conn, table):
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(2))")
    conn.execute(f"INSERT INTO {table} VALUES (1, '[0,0]'), (2, '[5,5]')")
    got = conn.execute(
        f"SELECT id FROM {table} ORDER BY embedding <-> %s::vector LIMIT 1", ("[4,4]",)
    ).fetchone()
    assert got == (2,)


def test_quoted_identifiers_are_case_sensitive(conn, table):
    name = sql.Identifier(table.replace("compat", "Compat"))
    try:
        conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, {} vector(2))").format(name, sql.Identifier("Embedding")))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1, '[1,2]')").format(name))
        got = conn.execute(sql.SQL("SELECT {} FROM {}").format(sql.Identifier("Embedding"), name)).fetchone()
        assert got[0].to_list() == [1.0, 2.0]
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute(f"SELECT * FROM {table.replace('compat', 'Compat')}")
    finally:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))


def test_schema_qualified_names(conn, table):
    conn.execute(f"CREATE TABLE public.{table} (id bigint PRIMARY KEY, embedding vector(2))")
    conn.execute(f"INSERT INTO public.{table} VALUES (1, '[1,2]')")
    assert conn.execute(f"SELECT id FROM {table}").fetchone() == (1,)


def test_result_column_names_are_postgresqls(conn, table):
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(2))")
    cur = conn.execute(f"SELECT 1, count(*), '[1,2]'::vector, max(id) FROM {table}")
    assert [c.name for c in cur.description] == ["?column?", "count", "vector", "max"]


def test_a_missing_table_is_postgresqls_error(conn):
    with pytest.raises(psycopg.errors.UndefinedTable) as caught:
        conn.execute("SELECT * FROM compat_no_such_table")
    diag = caught.value.diag
    assert diag.sqlstate == "42P01"
    assert diag.message_primary == 'relation "compat_no_such_table" does not exist'
    assert diag.statement_position == "15"


def test_vector_casts_to_text(conn):
    assert conn.execute("SELECT '[1,2,3]'::vector::text").fetchone() == ("[1,2,3]",)


def test_nested_transactions_use_savepoints(conn, table):
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(2))")
    with conn.transaction():
        conn.execute(f"INSERT INTO {table} VALUES (1, '[1,2]')")
        with conn.transaction():
            conn.execute(f"INSERT INTO {table} VALUES (2, '[1,2]')")
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)


def test_transaction_status_follows_the_block_and_an_error_aborts_it(dsn):
    """ReadyForQuery's status byte as psycopg reads it: idle, in a block, failed (25P02 for
    every statement until ROLLBACK), idle again; a COMMIT of a failed block rolls it back."""
    from psycopg.pq import TransactionStatus as Status

    with psycopg.connect(dsn) as conn:  # not autocommit: psycopg opens the block itself
        assert conn.info.transaction_status == Status.IDLE
        conn.execute("SELECT 1")
        assert conn.info.transaction_status == Status.INTRANS
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0")
        assert conn.info.transaction_status == Status.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.info.transaction_status == Status.IDLE
        assert conn.execute("SELECT 2").fetchone() == (2,)
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM compat_no_such_table")
        conn.commit()  # the server answers ROLLBACK
        assert conn.info.transaction_status == Status.IDLE


def test_a_failed_savepoint_block_rolls_back_and_the_transaction_goes_on(conn, dsn, table):
    """psycopg's nested `transaction()` that fails: ROLLBACK TO its savepoint brings the
    block back (INTRANS, not INERROR), and the outer transaction commits what the savepoint
    did not take back."""
    from psycopg.pq import TransactionStatus as Status

    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(2))")
    with psycopg.connect(dsn) as mine:  # not autocommit: the savepoint is inside a block
        mine.execute(f"INSERT INTO {table} VALUES (1, '[1,1]')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            with mine.transaction():
                mine.execute(f"INSERT INTO {table} VALUES (2, '[2,2]')")
                mine.execute(f"INSERT INTO {table} VALUES (1, '[3,3]')")
        assert mine.info.transaction_status == Status.INTRANS
        mine.execute(f"INSERT INTO {table} VALUES (3, '[3,3]')")
        mine.commit()
    assert conn.execute(f"SELECT id FROM {table} ORDER BY id").fetchall() == [(1,), (3,)]


def test_idle_in_transaction_timeout_ends_the_session_and_its_block(conn, dsn, table):
    """`idle_in_transaction_session_timeout`: a session idle inside a block past it is ended
    (25P03) and the block's writes are gone; outside a block the setting does not apply."""
    import select

    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(2))")
    with psycopg.connect(dsn, autocommit=True) as idle:
        idle.execute("SET idle_in_transaction_session_timeout = '300ms'")
        show = idle.execute("SHOW idle_in_transaction_session_timeout").fetchone()
        assert show == ("300ms",)
        # Idle outside a block for twice the timeout: the server sends nothing.
        assert select.select([idle.fileno()], [], [], 0.6)[0] == []
        assert idle.execute("SELECT 1").fetchone() == (1,)
        idle.execute("BEGIN")
        idle.execute(f"INSERT INTO {table} VALUES (1, '[1,1]')")
        # The server ends the session: its socket becomes readable (the FATAL, then EOF).
        readable, _, _ = select.select([idle.fileno()], [], [], 30)
        assert readable, "the session was not ended within 30 s"
        with pytest.raises(psycopg.Error) as ended:
            idle.execute("SELECT 1")
        assert ended.value.sqlstate in (None, "25P03"), ended.value
        assert idle.closed or idle.broken
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_a_transaction_is_its_own_until_commit(conn, dsn, table):
    """Writes in a transaction (INSERT, UPDATE, DELETE, COPY) are seen by its own scans and
    kNN searches, by no other session until COMMIT, and are gone after ROLLBACK; a savepoint
    takes back only what followed it."""
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(2), tag text)")
    conn.execute(f"INSERT INTO {table} VALUES (1, '[0,0]', 'old')")
    count = f"SELECT count(*) FROM {table}"
    with psycopg.connect(dsn) as mine:
        register_vector(mine)
        mine.execute(f"INSERT INTO {table} VALUES (2, '[1,1]', 'new')")
        mine.execute(f"UPDATE {table} SET tag = 'changed' WHERE id = 1")
        with mine.cursor().copy(f"COPY {table} (id, embedding, tag) FROM STDIN") as copy:
            copy.write_row((3, "[9,9]", "copied"))
        nearest = mine.execute(f"SELECT id FROM {table} ORDER BY embedding <-> '[1,1]' LIMIT 1")
        assert nearest.fetchone() == (2,)
        assert mine.execute(count).fetchone() == (3,)
        assert conn.execute(count).fetchone() == (1,)
        assert conn.execute(f"SELECT tag FROM {table}").fetchone() == ("old",)
        mine.rollback()
        assert mine.execute(count).fetchone() == (1,)
        mine.execute(f"DELETE FROM {table} WHERE id = 1")
        mine.execute("SAVEPOINT s")
        mine.execute(f"INSERT INTO {table} VALUES (4, '[4,4]', 'later')")
        mine.execute("ROLLBACK TO SAVEPOINT s")
        mine.execute(f"INSERT INTO {table} VALUES (5, '[5,5]', 'kept')")
        assert conn.execute(count).fetchone() == (1,)
        mine.commit()
    assert conn.execute(f"SELECT id, tag FROM {table} ORDER BY id").fetchall() == [(5, "kept")]


def test_explain_is_one_query_plan_column(conn, table):
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(2))")
    cur = conn.execute(f"EXPLAIN SELECT id FROM {table} ORDER BY embedding <-> '[1,1]' LIMIT 1")
    assert [c.name for c in cur.description] == ["QUERY PLAN"]
    assert len(cur.fetchall()) >= 1


def test_integer_literals_are_int4(conn):
    cur = conn.execute("SELECT 1, 2147483648, -7 AS n")
    assert [c.type_code for c in cur.description] == [23, 20, 23]
    assert cur.fetchone() == (1, 2147483648, -7)


@pytest.mark.parametrize("binary", [False, True])
def test_schema_types_round_trip(conn, table, binary):
    """Python's list, Decimal, datetime and date through psycopg's dumpers and loaders, in
    text and in binary."""
    at = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc)
    conn.execute(
        f"CREATE TABLE {table} (id int PRIMARY KEY, tags text[], at timestamptz,"
        " price numeric(10,2), day date, code varchar(8))"
    )
    row = (1, ["x y", "z", None], at, decimal.Decimal("3.5"), datetime.date(2020, 2, 29), "ab")
    with conn.cursor(binary=binary) as cur:
        placeholders = ", ".join(["%b" if binary else "%s"] * len(row))
        cur.execute(f"INSERT INTO {table} VALUES ({placeholders})", row)
        cur.execute(f"SELECT id, tags, at, price, day, code FROM {table}")
        read = cur.fetchone()
    assert read == row[:3] + (decimal.Decimal("3.50"),) + row[4:]
    assert read[3].as_tuple().exponent == -2  # numeric(10,2) keeps its scale


def test_search_path_from_the_connection_options(dsn, table):
    """libpq's `options=-c search_path=…`: tables are created in, copied into and read from
    the first schema on the path."""
    schema = f"{table}_s"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        with psycopg.connect(dsn, autocommit=True, options=f"-c search_path={schema},public") as conn:
            assert conn.execute("SELECT current_schema()").fetchone() == (schema,)
            conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
            with conn.cursor().copy("COPY docs (id, body) FROM STDIN") as copy:
                copy.write_row((1, "copied"))
            assert conn.execute("SELECT body FROM docs").fetchall() == [("copied",)]
            assert conn.execute(f"SELECT count(*) FROM {schema}.docs").fetchone() == (1,)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def test_advisory_locks_exclude_other_sessions(dsn):
    """Session-level advisory locks, as migration tools take them: a held key makes another
    session's try fail and its lock wait until the key is released, and a session's locks
    end with it."""
    key = 770_001
    with psycopg.connect(dsn, autocommit=True) as a, psycopg.connect(dsn, autocommit=True) as b:
        assert a.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (True,)
        assert b.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (False,)
        granted = []
        waiter = threading.Thread(
            target=lambda: granted.append(b.execute("SELECT pg_advisory_lock(%s)", (key,)).fetchone())
        )
        waiter.start()
        assert a.execute("SELECT pg_advisory_unlock(%s)", (key,)).fetchone() == (True,)
        waiter.join(timeout=10)
        assert not waiter.is_alive() and len(granted) == 1, "granted once the key was free"
        assert a.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (False,)
        assert a.execute("SELECT pg_advisory_unlock(%s)", (key,)).fetchone() == (False,)
    with psycopg.connect(dsn, autocommit=True) as c:
        # b's session ended, and its lock with it (once the server has seen it close).
        deadline = time.monotonic() + 10
        while c.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() != (True,):
            assert time.monotonic() < deadline, "the lock outlived its session"
        c.execute("SELECT pg_advisory_unlock_all()")


def test_a_vector_column_without_dimensions(conn, table):
    """pgvector's `vector` without dimensions: rows of different lengths, read back through
    the adapter (the column is described as `vector`), and searched."""
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, embedding vector)")
    conn.execute(
        f"INSERT INTO {table} VALUES (%s, %s), (%s, %s)",
        (1, np.array([1, 2, 3]), 2, np.array([4, 5])),
    )
    rows = conn.execute(f"SELECT id, embedding FROM {table} ORDER BY id").fetchall()
    assert [(i, e.to_list()) for i, e in rows] == [(1, [1.0, 2.0, 3.0]), (2, [4.0, 5.0])]
    nearest = conn.execute(
        f"SELECT id FROM {table} WHERE id = 1 ORDER BY embedding <-> %s LIMIT 1", (np.array([1, 2, 2]),)
    ).fetchone()
    assert nearest == (1,)


def test_foreign_keys_check_writes_and_cascade_deletes(conn, table):
    """`REFERENCES … ON DELETE CASCADE` (langchain's embeddings → collection) and the default
    `NO ACTION`: a write, COPY included, must find its parent; a DELETE of a referenced row is
    refused with PostgreSQL's DETAIL, or takes the referencing rows with it."""
    kids, pins = f"{table}_kids", f"{table}_pins"
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text)")
    try:
        conn.execute(
            f"CREATE TABLE {kids} (id bigint PRIMARY KEY, "
            f"parent_id bigint REFERENCES {table} (id) ON DELETE CASCADE, embedding vector(2))"
        )
        conn.execute(f"CREATE TABLE {pins} (id bigint PRIMARY KEY, parent_id bigint REFERENCES {table})")
        conn.execute(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        with conn.cursor().copy(f"COPY {kids} (id, parent_id, embedding) FROM STDIN") as copy:
            for row in [(10, 1, "[1,1]"), (11, 2, "[2,2]"), (12, 2, "[3,3]"), (13, None, "[4,4]")]:
                copy.write_row(row)
        with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
            with conn.cursor().copy(f"COPY {kids} (id, parent_id) FROM STDIN") as copy:
                copy.write_row((14, 9))
        assert refused.value.diag.message_primary == (
            f'insert or update on table "{kids}" violates foreign key constraint "{kids}_parent_id_fkey"'
        )
        assert refused.value.diag.message_detail == f'Key (parent_id)=(9) is not present in table "{table}".'
        conn.execute(f"INSERT INTO {pins} VALUES (1, 1)")
        with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
            conn.execute(f"DELETE FROM {table} WHERE id <= 2")
        assert refused.value.diag.message_detail == f'Key (id)=(1) is still referenced from table "{pins}".'
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (3,), "nothing deleted"
        assert conn.execute(f"DELETE FROM {table} WHERE id = 2").rowcount == 1
        left = conn.execute(f"SELECT id FROM {kids} ORDER BY id").fetchall()
        assert left == [(10,), (13,)], "the rows referencing 2 went with it"
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {pins}, {kids}")


def test_a_python_list_cast_to_vector(dsn, table):
    """Without pgvector's adapter psycopg sends a list of floats as `float8[]`; `%s::vector`
    reads it with pgvector's checks, in a kNN query and an INSERT alike."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, embedding vector(3))")
        conn.execute(f"INSERT INTO {table} VALUES (1, %s::vector), (2, %s::vector)", ([1.0, 2.0, 3.0], [4.0, 5.0, 6.5]))
        nearest = conn.execute(
            f"SELECT id, embedding::text FROM {table} ORDER BY embedding <-> %s::vector LIMIT 1", ([4.0, 4.0, 6.0],)
        ).fetchone()
        assert nearest == (2, "[4,5,6.5]")
        with pytest.raises(psycopg.errors.DataException, match="expected 3 dimensions, not 2"):
            conn.execute(f"INSERT INTO {table} VALUES (3, %s::vector(3))", ([1.0, 2.0],))
        with pytest.raises(psycopg.errors.NullValueNotAllowed, match="array must not contain nulls"):
            conn.execute("SELECT %s::vector", ([1.0, None],))
