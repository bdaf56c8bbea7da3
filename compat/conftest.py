"""The client-compatibility suite: each test drives a real client against one server, given as
`--dsn`, and `--engine` says which it is (`vecraft` or `postgres`). The suite runs once against
Vecraft and once against PostgreSQL 18 + pgvector 0.8; every assertion must hold on PostgreSQL.

What Vecraft does not do yet is marked `vecraft_gap("why")`: on Vecraft such a test must fail
(strict xfail), so the mark goes the day the gap closes, and the README's table stays true.
"""

import itertools
import os
import pathlib
import subprocess

import pytest


def pytest_addoption(parser):
    parser.addoption("--dsn", required=True, help="postgresql://user@host:port/db of the server")
    parser.addoption("--engine", required=True, choices=["vecraft", "postgres"])


def pytest_configure(config):
    config.addinivalue_line("markers", "vecraft_gap(reason): fails on Vecraft today (strict)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--engine") != "vecraft":
        return
    for item in items:
        gap = item.get_closest_marker("vecraft_gap")
        if gap is not None:
            item.add_marker(pytest.mark.xfail(reason=gap.args[0], strict=True))


@pytest.fixture(scope="session")
def dsn(request):
    return request.config.getoption("--dsn")


@pytest.fixture(scope="session")
def engine(request):
    return request.config.getoption("--engine")


@pytest.fixture(scope="session")
def jdbc_login(tmp_path_factory):
    """Logs in with the PostgreSQL JDBC driver (jdbc/Login.java): `login(url, user, password,
    "name=value", ...)` gives `ok 1` or `sqlstate=…`."""
    jdbc = pathlib.Path(__file__).resolve().parent / "jdbc"
    classes = tmp_path_factory.mktemp("jdbc-login")
    subprocess.run(["javac", "-d", str(classes), str(jdbc / "Login.java")], check=True)

    def login(url, user, password, *properties):
        out = subprocess.run(
            ["java", "-cp", f"/usr/share/java/postgresql.jar:{classes}", "Login", url, user, password, *properties],
            capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()[0]

    return login


_names = itertools.count()


@pytest.fixture
def table(dsn):
    """A table name of this test's own, dropped afterwards (lowercase: legal unquoted)."""
    import psycopg

    name = f"compat_{os.getpid()}_{next(_names)}"
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
