"""Measuring what a run's LangGraph thread holds in the checkpointer's own tables.

Deleting goes through the saver's `delete_thread`; only the counting (rows and bytes, which
the savers do not report) reads their tables directly.
"""

from dataclasses import dataclass

from pipeline.checkpointer import get_checkpointer, is_postgres

SQLITE_TABLES = {
    "checkpoints": "length(checkpoint) + length(metadata)",
    "writes": "length(value)",
}
POSTGRES_TABLES = {
    "checkpoints": "pg_column_size(checkpoint) + pg_column_size(metadata)",
    "checkpoint_blobs": "coalesce(octet_length(blob), 0)",
    "checkpoint_writes": "octet_length(blob)",
}


@dataclass
class ThreadUsage:
    rows: dict[str, int]
    bytes: int

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def thread_usage(thread_ids: list[str]) -> ThreadUsage:
    """Rows per checkpointer table and bytes stored for the given threads."""
    usage = ThreadUsage(rows={}, bytes=0)
    if not thread_ids:
        return usage
    saver = get_checkpointer()
    if is_postgres():
        with saver.conn.connection() as conn:
            for table, size in POSTGRES_TABLES.items():
                row = conn.execute(
                    f"SELECT count(*) AS n, coalesce(sum({size}), 0) AS b FROM {table} "
                    "WHERE thread_id = ANY(%s)",
                    (thread_ids,),
                ).fetchone()
                usage.rows[table] = row["n"]
                usage.bytes += int(row["b"])
        return usage
    marks = ",".join("?" * len(thread_ids))
    with saver.lock:
        for table, size in SQLITE_TABLES.items():
            n, b = saver.conn.execute(
                f"SELECT count(*), coalesce(sum({size}), 0) FROM {table} "
                f"WHERE thread_id IN ({marks})",
                thread_ids,
            ).fetchone()
            usage.rows[table] = n
            usage.bytes += int(b)
    return usage


def delete_threads(thread_ids: list[str]) -> None:
    saver = get_checkpointer()
    for thread_id in thread_ids:
        saver.delete_thread(thread_id)
