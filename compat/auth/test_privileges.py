"""Privileges on tables and schemas, as PostgreSQL checks them: a role reads and writes only
what it was granted or owns, a REVOKE reaches statements prepared before it, only an owner
drops or indexes a table, and CREATE on a schema is needed to make a table in it. Run under
the access rules of `test_login.py` (`--dsn` is the trusted superuser)."""

import urllib.parse

import psycopg
import pytest

PASSWORD = "correct horse"
TABLE = "compat_priv_items"
OWN = "compat_priv_own"
ROLES = ("compat_reader", "compat_writer")


@pytest.fixture(scope="module")
def admin(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        cleanup(conn)
        for role in ROLES:
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, embedding vector(2))")
        conn.execute(f"INSERT INTO {TABLE} VALUES (1, '[1,1]'), (2, '[2,2]')")
        yield conn
        cleanup(conn)


def cleanup(conn):
    conn.execute(f"DROP TABLE IF EXISTS {OWN}")
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    for role in ROLES:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            conn.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
            conn.execute(f"DROP ROLE {role}")


def login(dsn, role):
    url = urllib.parse.urlparse(dsn)
    return psycopg.connect(
        host=url.hostname, port=url.port, user=role, password=PASSWORD, dbname="postgres",
        sslmode="disable", autocommit=True,
    )


def denied(conn, sql):
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        conn.execute(sql)
    return str(refused.value).splitlines()[0]


def test_a_role_reads_and_writes_only_what_it_was_granted(admin, dsn):
    with login(dsn, "compat_reader") as reader, login(dsn, "compat_writer") as writer:
        assert denied(reader, f"SELECT id FROM {TABLE}") == f"permission denied for table {TABLE}"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with reader.cursor().copy(f"COPY {TABLE} TO STDOUT") as copy:
                list(copy)
        admin.execute(f"GRANT SELECT ON {TABLE} TO compat_reader")
        assert reader.execute(f"SELECT id FROM {TABLE} ORDER BY id").fetchall() == [(1,), (2,)]
        assert denied(reader, f"INSERT INTO {TABLE} VALUES (3, '[3,3]')").startswith("permission denied")
        admin.execute(f"GRANT INSERT, UPDATE, DELETE ON TABLE {TABLE} TO compat_writer")
        writer.execute(f"INSERT INTO {TABLE} VALUES (3, '[3,3]')")
        writer.execute(f"UPDATE {TABLE} SET embedding = '[0,0]'")
        # A WHERE reads the table: SELECT is needed too, as in PostgreSQL.
        assert denied(writer, f"DELETE FROM {TABLE} WHERE id = 3") == f"permission denied for table {TABLE}"
        assert denied(writer, f"SELECT count(*) FROM {TABLE}") == f"permission denied for table {TABLE}"


def test_a_revoke_reaches_prepared_statements(admin, dsn):
    admin.execute(f"GRANT SELECT ON {TABLE} TO compat_reader")
    with login(dsn, "compat_reader") as reader:
        query = f"SELECT count(*) FROM {TABLE} WHERE id > %s"
        assert reader.execute(query, (0,), prepare=True).fetchone()[0] >= 2
        admin.execute(f"REVOKE SELECT ON {TABLE} FROM compat_reader")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(query, (0,), prepare=True)


def test_only_an_owner_drops_or_indexes_and_tables_need_create_on_the_schema(admin, dsn):
    with login(dsn, "compat_reader") as reader, login(dsn, "compat_writer") as writer:
        must_own = f"must be owner of table {TABLE}"
        assert denied(writer, f"DROP TABLE {TABLE}") == must_own
        index = f"CREATE INDEX ON {TABLE} USING hnsw (embedding vector_l2_ops)"
        assert denied(writer, index) == must_own
        create = f"CREATE TABLE {OWN} (id bigint PRIMARY KEY, note text)"
        assert denied(writer, create) == "permission denied for schema public"
        admin.execute("GRANT CREATE ON SCHEMA public TO compat_writer")
        writer.execute(create)
        writer.execute(f"INSERT INTO {OWN} VALUES (1, 'mine')")
        assert writer.execute(f"SELECT note FROM {OWN}").fetchall() == [("mine",)]
        assert denied(reader, f"SELECT note FROM {OWN}") == f"permission denied for table {OWN}"
        writer.execute(f"GRANT SELECT ON {OWN} TO compat_reader")
        assert reader.execute(f"SELECT note FROM {OWN}").fetchall() == [("mine",)]
        # Granting needs ownership: with no privilege on the table, an error; with some, the
        # statement passes and grants nothing (PostgreSQL warns).
        assert denied(reader, f"GRANT SELECT ON {TABLE} TO compat_writer") == f"permission denied for table {TABLE}"
        reader.execute(f"GRANT SELECT ON {OWN} TO compat_writer")
        writer.execute(f"DROP TABLE {OWN}")


def test_grants_on_all_tables_and_what_depends_on_a_role(admin, dsn):
    admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO compat_reader")
    with login(dsn, "compat_reader") as reader:
        assert reader.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0] >= 2
    with pytest.raises(psycopg.errors.DependentObjectsStillExist) as held:
        admin.execute("DROP ROLE compat_reader")
    assert str(held.value).splitlines()[0] == (
        'role "compat_reader" cannot be dropped because some objects depend on it'
    )
    with pytest.raises(psycopg.errors.UndefinedObject) as nobody:
        admin.execute(f"GRANT SELECT ON {TABLE} TO compat_nobody")
    assert str(nobody.value).splitlines()[0] == 'role "compat_nobody" does not exist'
    admin.execute("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM compat_reader, compat_writer")


def test_has_privilege_functions_answer_from_the_same_grants(admin, dsn):
    """What tools ask before they list or open a table (pgAdmin, Metabase's sync)."""
    admin.execute(f"REVOKE ALL ON {TABLE} FROM compat_reader, compat_writer")
    admin.execute(f"GRANT SELECT ON {TABLE} TO compat_reader")

    def ask(sql, *params):
        return admin.execute(sql, params).fetchone()

    reader = "'compat_reader'"
    assert ask(
        f"SELECT has_table_privilege({reader}, '{TABLE}', 'SELECT'),"
        f" has_table_privilege({reader}, 'public.{TABLE}', 'insert, UPDATE'),"
        f" has_table_privilege({reader}, '{TABLE}', 'SELECT WITH GRANT OPTION'),"
        f" has_table_privilege('{TABLE}', 'DELETE, TRUNCATE')"
    ) == (True, False, False, True)
    assert ask(
        f"SELECT has_any_column_privilege({reader}, '{TABLE}', 'SELECT'),"
        f" has_column_privilege({reader}, '{TABLE}', 'embedding', 'SELECT'),"
        f" has_column_privilege({reader}, '{TABLE}', 'id', 'UPDATE')"
    ) == (True, True, False)
    assert ask(
        f"SELECT has_table_privilege({reader}, 'pg_class', 'SELECT'),"
        f" has_table_privilege({reader}, 'pg_catalog.pg_class', 'INSERT'),"
        f" has_schema_privilege({reader}, 'public', 'CREATE'),"
        f" has_schema_privilege({reader}, 'public', 'USAGE'),"
        f" has_database_privilege({reader}, 'postgres', 'CONNECT'),"
        f" has_database_privilege({reader}, 'postgres', 'CREATE')"
    ) == (True, False, False, True, True, False)
    # By OID, as catalog queries ask it row by row; NULL in, NULL out.
    by_oid = (
        "SELECT has_table_privilege(%s, c.oid, 'SELECT') FROM pg_class c WHERE c.relname = %s"
    )
    assert ask(by_oid, "compat_reader", TABLE) == (True,)
    assert ask(by_oid, "compat_writer", TABLE) == (False,)
    assert ask(f"SELECT has_table_privilege({reader}, NULL, 'SELECT')") == (None,)
    # The session's own role, and a REVOKE seen at once.
    with login(dsn, "compat_reader") as conn:
        own = f"SELECT has_table_privilege('{TABLE}', 'SELECT')"
        assert conn.execute(own).fetchone() == (True,)
        admin.execute(f"REVOKE SELECT ON {TABLE} FROM compat_reader")
        assert conn.execute(own).fetchone() == (False,)

    def error(sql):
        with pytest.raises(psycopg.Error) as failed:
            admin.execute(sql)
        return failed.value.sqlstate, str(failed.value).splitlines()[0]

    assert error("SELECT has_table_privilege('compat_no_table', 'SELECT')") == (
        "42P01", 'relation "compat_no_table" does not exist')
    assert error(f"SELECT has_table_privilege('compat_nobody', '{TABLE}', 'SELECT')") == (
        "42704", 'role "compat_nobody" does not exist')
    assert error(f"SELECT has_table_privilege('{TABLE}', 'Fly')") == (
        "22023", 'unrecognized privilege type: "Fly"')
    assert error(f"SELECT has_column_privilege('{TABLE}', 'nope', 'SELECT')") == (
        "42703", f'column "nope" of relation "{TABLE}" does not exist')
    assert error("SELECT has_schema_privilege('compat_no_schema', 'USAGE')") == (
        "3F000", 'schema "compat_no_schema" does not exist')
    assert error("SELECT has_database_privilege('compat_no_db', 'CONNECT')") == (
        "3D000", 'database "compat_no_db" does not exist')
