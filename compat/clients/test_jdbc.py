"""The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java, compiled against with javac):
`DatabaseMetaData` as BI tools call it, `ResultSetMetaData`, a prepared `?::vector`, and a
transaction with autocommit off."""

import pathlib
import shutil
import subprocess

import pytest

JDBC_DIR = pathlib.Path(__file__).resolve().parent.parent / "jdbc"
JAR = "/usr/share/java/postgresql.jar"


@pytest.fixture(scope="session")
def classes(tmp_path_factory):
    out = tmp_path_factory.mktemp("jdbc")
    subprocess.run(["javac", "-d", str(out), str(JDBC_DIR / "Metadata.java")], check=True)
    return out


def run_java(classes, dsn, table):
    url = "jdbc:" + dsn.replace("postgresql://postgres@", "postgresql://")
    out = subprocess.run(
        ["java", "-cp", f"{JAR}:{classes}", "Metadata", url, table],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


def test_database_metadata(classes, dsn, table):
    seen = run_java(classes, dsn, table)
    assert seen["product"] == "PostgreSQL"
    assert seen["tables"] == f"[{table}]"
    assert seen["columns"] == "[id, embedding, tag]"
    assert seen["column_types"] == "[int8, vector, text]"
    assert seen["primary_key"] == "[id]"
    assert seen["has_vector_type"] == "true"
    assert seen["result_columns"] == "[id:int8, tag:text, distance:float8]"
    assert seen["nearest"] == "2/b"
    assert (seen["count_in_transaction"], seen["count_after_rollback"], seen["count_after_commit"]) == ("3", "2", "3")
