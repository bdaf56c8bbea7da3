"""Supabase's `vecs`, as its quickstart uses it: a collection of (id, vector, metadata)
records, an index, and a query with a metadata filter."""

import vecs


def test_quickstart(dsn, table):
    client = vecs.create_client(dsn)
    try:
        docs = client.get_or_create_collection(name=table, dimension=3)
        docs.upsert(
            records=[
                ("vec0", [0.1, 0.2, 0.3], {"year": 1973}),
                ("vec1", [0.7, 0.8, 0.9], {"year": 2012}),
            ]
        )
        docs.create_index()
        assert docs.query(data=[0.4, 0.5, 0.6], limit=1) == ["vec1"]
        assert docs.query(data=[0.4, 0.5, 0.6], limit=1, filters={"year": {"$eq": 1973}}) == ["vec0"]
        client.delete_collection(table)
    finally:
        client.disconnect()
