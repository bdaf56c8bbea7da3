"""llama-index's `PGVectorStore`, as its PostgreSQL guide uses it, with nodes that carry their
own embeddings (no model)."""

import asyncio
from urllib.parse import urlparse


def test_add_and_query(dsn, table):
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores import VectorStoreQuery
    from llama_index.vector_stores.postgres import PGVectorStore

    url = urlparse(dsn)
    store = PGVectorStore.from_params(
        database=url.path.lstrip("/"),
        host=url.hostname,
        port=str(url.port),
        user=url.username,
        password="",
        table_name=table,
        embed_dim=3,
    )
    try:
        store.add(
            [
                TextNode(text="cats", id_="a", embedding=[1.0, 0.0, 0.0], metadata={"kind": "animal"}),
                TextNode(text="apples", id_="b", embedding=[0.0, 1.0, 0.0], metadata={"kind": "food"}),
            ]
        )
        result = store.query(VectorStoreQuery(query_embedding=[0.9, 0.1, 0.0], similarity_top_k=1))
        assert [n.node_id for n in result.nodes] == ["a"]
    finally:
        store.clear()
        asyncio.run(store.close())
