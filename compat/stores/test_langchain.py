"""langchain-postgres, as its tutorial uses it: `PGEngine` + `PGVectorStore` (the v2 API) and
the older `PGVector`, with langchain's deterministic fake embeddings (no model download)."""

import uuid

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

DIMS = 8


def psycopg_url(dsn):
    return dsn.replace("postgresql://", "postgresql+psycopg://")


DOCS = [
    Document(page_content="there are cats in the pond", metadata={"id": 1, "topic": "animals"}),
    Document(page_content="ducks are also found in the pond", metadata={"id": 2, "topic": "animals"}),
    Document(page_content="fresh apples are available at the market", metadata={"id": 3, "topic": "food"}),
]


def test_pgvectorstore_v2(dsn, table):
    from langchain_postgres import PGEngine, PGVectorStore

    engine = PGEngine.from_connection_string(url=psycopg_url(dsn))
    engine.init_vectorstore_table(table_name=table, vector_size=DIMS)
    try:
        store = PGVectorStore.create_sync(
            engine=engine, table_name=table, embedding_service=DeterministicFakeEmbedding(size=DIMS)
        )
        store.add_documents(DOCS, ids=[str(uuid.uuid4()) for _ in DOCS])
        found = store.similarity_search(DOCS[2].page_content, k=1)
        assert [d.page_content for d in found] == [DOCS[2].page_content]
    finally:
        engine.drop_table(table)


def v1_store(dsn, table):
    from langchain_postgres import PGVector

    return PGVector(
        embeddings=DeterministicFakeEmbedding(size=DIMS),
        collection_name=table,
        connection=psycopg_url(dsn),
        use_jsonb=True,
    )


def test_pgvector_v1_with_a_metadata_filter(dsn, table):
    """PGVector's tables (a `VECTOR` column without dimensions), its upsert that keeps each
    row's collection, and its `jsonb_path_match` filter."""
    store = v1_store(dsn, table)
    try:
        store.add_documents(DOCS, ids=[f"{table}-{d.metadata['id']}" for d in DOCS])
        found = store.similarity_search(DOCS[0].page_content, k=1, filter={"topic": {"$eq": "animals"}})
        assert [d.metadata["id"] for d in found] == [1]
        store.add_documents(DOCS[:1], ids=[f"{table}-1"])  # the upsert of an existing id
        found = store.similarity_search(DOCS[2].page_content, k=3)
        assert sorted(d.metadata["id"] for d in found) == [1, 2, 3]
    finally:
        store.delete_collection()


def test_pgvector_v1_delete_collection_deletes_its_embeddings(dsn, table):
    import psycopg

    store = v1_store(dsn, table)
    store.add_documents(DOCS, ids=[f"{table}-{d.metadata['id']}" for d in DOCS])
    store.delete_collection()
    with psycopg.connect(dsn, autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM langchain_pg_embedding WHERE id LIKE %s", (f"{table}-%",)
        ).fetchone()
    assert left == (0,)
