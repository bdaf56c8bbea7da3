"""SQLAlchemy 2 ORM over psycopg 3 with pgvector's SQLAlchemy type, and `inspect()`: what
langchain-postgres and llama-index's PGVectorStore build on."""

import pytest
from pgvector.sqlalchemy import Vector
from sqlalchemy import BigInteger, Text, create_engine, inspect, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


def engine_for(dsn):
    return create_engine(dsn.replace("postgresql://", "postgresql+psycopg://"))


def model(table):
    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = table
        id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
        embedding = mapped_column(Vector(3))
        tag: Mapped[str] = mapped_column(Text, nullable=True)

    return Base, Item


def test_orm_create_all_insert_and_nearest(dsn, table):
    engine = engine_for(dsn)
    Base, Item = model(table)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Item(id=1, embedding=[1, 2, 3], tag="a"), Item(id=2, embedding=[4, 5, 6], tag="b")])
        session.commit()
        nearest = session.scalars(select(Item).order_by(Item.embedding.l2_distance([4, 4, 4])).limit(1)).first()
        assert (nearest.id, nearest.tag, list(nearest.embedding)) == (2, "b", [4.0, 5.0, 6.0])
        distance = session.scalar(select(Item.embedding.cosine_distance([1, 2, 3])).where(Item.id == 1))
        assert distance == pytest.approx(0.0, abs=1e-6)
    engine.dispose()


def test_unit_of_work_add_flush_fail_rollback_retry(dsn, table):
    """The ORM's unit of work: a flushed row is read back inside the transaction, a failed
    flush rolls the whole transaction back (the earlier row too), and the retry commits."""
    from sqlalchemy.exc import IntegrityError

    engine = engine_for(dsn)
    Base, Item = model(table)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Item(id=1, embedding=[1, 1, 1], tag="first"))
        session.flush()
        assert session.scalar(select(Item.tag).where(Item.id == 1)) == "first"
        session.add(Item(id=1, embedding=[2, 2, 2], tag="duplicate"))
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()
        assert session.scalars(select(Item)).all() == []
        session.add_all([Item(id=1, embedding=[1, 1, 1], tag="retried"), Item(id=2, embedding=[3, 3, 3])])
        session.commit()
    with Session(engine) as session:
        assert [(i.id, i.tag) for i in session.scalars(select(Item).order_by(Item.id))] == [(1, "retried"), (2, None)]
    engine.dispose()


def test_inspect_tables_columns_and_keys(dsn, table):
    engine = engine_for(dsn)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(3), tag text)"))
    inspector = inspect(engine)
    assert table in inspector.get_table_names()
    columns = {c["name"]: c for c in inspector.get_columns(table)}
    assert list(columns) == ["id", "embedding", "tag"]
    assert isinstance(columns["embedding"]["type"], Vector)
    assert inspector.get_pk_constraint(table)["constrained_columns"] == ["id"]
    engine.dispose()


def test_orm_reads_back_the_ids_a_sequence_gave(dsn, table):
    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = table
        id: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # BIGSERIAL
        embedding = mapped_column(Vector(2))
        body: Mapped[str] = mapped_column(Text)

    engine = engine_for(dsn)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        docs = [Doc(embedding=[i, 0], body=f"doc {i}") for i in range(3)]
        # One INSERT … RETURNING for the batch (SQLAlchemy's "insertmanyvalues").
        session.add_all(docs)
        session.commit()
        assert [d.id for d in docs] == [1, 2, 3]
        docs[1].body = "changed"
        session.delete(docs[2])
        session.commit()
        rows = session.execute(select(Doc.id, Doc.body).order_by(Doc.id)).all()
        assert [tuple(r) for r in rows] == [(1, "doc 0"), (2, "changed")]
    column = {c["name"]: c for c in inspect(engine).get_columns(table)}["id"]
    assert column["autoincrement"] is True
    assert column["default"] == f"nextval('{table}_id_seq'::regclass)"
    engine.dispose()


def test_inspect_reads_foreign_keys(dsn, table):
    engine = engine_for(dsn)
    kids = f"{table}_kids"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {table} (id bigint PRIMARY KEY)"))
        conn.execute(
            text(f"CREATE TABLE {kids} (id bigint PRIMARY KEY, parent bigint REFERENCES {table} ON DELETE CASCADE)")
        )
    try:
        [key] = inspect(engine).get_foreign_keys(kids)
        assert key["name"] == f"{kids}_parent_fkey"
        assert (key["constrained_columns"], key["referred_table"], key["referred_columns"]) == (
            ["parent"],
            table,
            ["id"],
        )
        assert key["options"] == {"ondelete": "CASCADE"}
        assert inspect(engine).get_foreign_keys(table) == []
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {kids}"))
        engine.dispose()


def test_inspect_reads_indexes_with_their_operator_class(dsn, table):
    """`get_indexes` (what Alembic's autogenerate compares): an HNSW index with its method and
    operator class; the primary key's index is not listed, as in PostgreSQL."""
    engine = engine_for(dsn)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(3), tag text)"))
        conn.execute(text(f"CREATE INDEX ON {table} USING hnsw (embedding vector_cosine_ops)"))
    [index] = inspect(engine).get_indexes(table)
    assert index["name"] == f"{table}_embedding_idx"
    assert (index["unique"], index["column_names"]) == (False, ["embedding"])
    assert index["dialect_options"]["postgresql_using"] == "hnsw"
    assert index["dialect_options"]["postgresql_ops"] == {"embedding": "vector_cosine_ops"}
    engine.dispose()
