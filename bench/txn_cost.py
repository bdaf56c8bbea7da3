"""What a transaction costs: a committed single-row transaction and a 1,000-row one, against
the same writes in autocommit, on Vecraft and on PostgreSQL, rounds interleaved.

    python bench/txn_cost.py --vecraft postgresql://postgres@127.0.0.1:55433/postgres \
                             --postgres postgresql://postgres@127.0.0.1:55499/postgres

Shapes (every INSERT is one row of a 128-d vector, through psycopg's extended protocol):
  autocommit x1     one INSERT, committed on its own
  transaction x1    BEGIN; one INSERT; COMMIT
  autocommit x1000  1,000 INSERTs, each committed on its own
  transaction x1000 BEGIN; 1,000 INSERTs; COMMIT
On Vecraft the 1,000-row transaction also runs on a collection of two shards, where COMMIT
takes two phases. Printed: the median over rounds of each shape's time, and ratios.
"""

import argparse
import random
import statistics
import time

import psycopg

DIMS = 128


def vector(rng):
    return "[" + ",".join(f"{rng.random():.5f}" for _ in range(DIMS)) + "]"


class Table:
    def __init__(self, dsn, name, create_suffix=""):
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.name = name
        self.next_id = 0
        self.conn.execute(f"DROP TABLE IF EXISTS {name}")
        self.conn.execute(
            f"CREATE TABLE {name} (id bigint PRIMARY KEY, embedding vector({DIMS})){create_suffix}"
        )
        self.insert = f"INSERT INTO {name} VALUES (%s, %s::vector)"
        self.vectors = [vector(random.Random(i)) for i in range(64)]

    def row(self):
        self.next_id += 1
        return (self.next_id, self.vectors[self.next_id % len(self.vectors)])

    def autocommit(self, n):
        started = time.perf_counter()
        for _ in range(n):
            self.conn.execute(self.insert, self.row())
        return time.perf_counter() - started

    def transaction(self, n):
        started = time.perf_counter()
        self.conn.execute("BEGIN")
        for _ in range(n):
            self.conn.execute(self.insert, self.row())
        self.conn.execute("COMMIT")
        return time.perf_counter() - started


def single(table, shape, repeats):
    """The median time of one `shape(1)` over `repeats` runs."""
    return statistics.median(shape(1) for _ in range(repeats))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vecraft", required=True, help="Vecraft's DSN")
    parser.add_argument("--postgres", required=True, help="PostgreSQL's DSN (pgvector)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--repeats", type=int, default=200, help="single-row runs per round")
    args = parser.parse_args()

    engines = {
        "vecraft": Table(args.vecraft, "txn_cost_one", " WITH (shards = 1)"),
        "postgres": Table(args.postgres, "txn_cost_one"),
        "vecraft 2 shards": Table(args.vecraft, "txn_cost_two", " WITH (shards = 2)"),
    }
    shapes = ["autocommit x1", "transaction x1", "autocommit x1000", "transaction x1000"]
    times = {(e, s): [] for e in engines for s in shapes}
    for round_ in range(args.rounds):
        for engine, table in engines.items():
            runs = {
                "autocommit x1": lambda: single(table, table.autocommit, args.repeats),
                "transaction x1": lambda: single(table, table.transaction, args.repeats),
                "autocommit x1000": lambda: table.autocommit(1000),
                "transaction x1000": lambda: table.transaction(1000),
            }
            for shape in shapes:
                times[(engine, shape)].append(runs[shape]())
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)

    def ms(engine, shape):
        return statistics.median(times[(engine, shape)]) * 1000

    print()
    print("| shape | " + " | ".join(engines) + " | vecraft / postgres |")
    print("|---|" + "---|" * (len(engines) + 1))
    for shape in shapes:
        cells = [f"{ms(e, shape):.2f} ms" for e in engines]
        ratio = ms("vecraft", shape) / ms("postgres", shape)
        print(f"| {shape} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    for engine in engines:
        one = ms(engine, "transaction x1") / ms(engine, "autocommit x1")
        many = ms(engine, "transaction x1000") / ms(engine, "autocommit x1000")
        print(
            f"{engine}: a 1-row transaction costs {one:.2f}x its autocommit INSERT; "
            f"1,000 rows in one transaction {many:.2f}x the same INSERTs in autocommit"
        )
    for table in engines.values():
        table.conn.execute(f"DROP TABLE {table.name}")


if __name__ == "__main__":
    main()
