// node-postgres with pgvector-node, as pgvector-node's README uses them. Run by
// compat/clients/test_node.py: `node vectors.mjs DSN TABLE` prints one JSON object of what it saw.
import pg from 'pg';
import pgvector from 'pgvector/pg';

const [dsn, table] = process.argv.slice(2);
const client = new pg.Client({ connectionString: dsn });
await client.connect();
const seen = {};
try {
  await client.query('CREATE EXTENSION IF NOT EXISTS vector');
  await pgvector.registerTypes(client);
  await client.query(`CREATE TABLE ${table} (id bigint PRIMARY KEY, embedding vector(3))`);
  for (const [id, embedding] of [[1, [1, 2, 3]], [2, [4, 5, 6]], [3, [1, 1, 1]]]) {
    await client.query(`INSERT INTO ${table} (id, embedding) VALUES ($1, $2)`, [id, pgvector.toSql(embedding)]);
  }
  const nearest = await client.query(
    `SELECT id, embedding, embedding <-> $1 AS distance FROM ${table} ORDER BY embedding <-> $1 LIMIT 2`,
    [pgvector.toSql([1, 1, 2])]);
  seen.fields = nearest.fields.map((f) => f.name);
  seen.rows = nearest.rows.map((r) => ({ id: r.id, embedding: r.embedding, distance: r.distance }));
  const named = await client.query({ name: 'count-rows', text: `SELECT count(*) AS n FROM ${table} WHERE id > $1`, values: [1] });
  seen.count = named.rows[0].n;
  try {
    await client.query(`SELECT * FROM ${table}_missing`);
  } catch (e) {
    seen.error = { code: e.code, message: e.message };
  }
  seen.after_error = (await client.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n;
} finally {
  await client.query(`DROP TABLE IF EXISTS ${table}`);
  await client.end();
}
console.log(JSON.stringify(seen));
