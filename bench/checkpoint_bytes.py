"""Checkpoint bytes stored per stage by the GamED pipeline, on SQLite and on Postgres.

Runs the GamED pipeline inline for a few questions (one of them takes two blueprint drafts),
then adds up what the runs' threads wrote to the checkpointer's tables (serialized checkpoints
and their metadata, channel values, pending writes; keys and indexes not counted) and divides
it by the number of stages the runs executed. A capacity figure for retention planning: it has
no raw reference and no target.

    python bench/checkpoint_bytes.py [--repeat 1] [--backend sqlite|postgres] [--rows]
"""

import argparse
import json
import sys

from _common import per_backend, print_rows, row, setup_django

QUESTIONS = [
    "Label the parts of a plant cell",
    "Label the bones of the human skeleton",
    "Put the stages of the water cycle in order",
    "Sort these into solids, liquids and gases",
    "Which planet is the largest?",
]

# Payload columns of each checkpointer table, summed per thread.
SQLITE_SIZES = {
    "checkpoints": "SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) AS bytes "
    "FROM checkpoints WHERE thread_id IN ({ids})",
    "writes": "SELECT COALESCE(SUM(LENGTH(value)), 0) AS bytes FROM writes "
    "WHERE thread_id IN ({ids})",
}
POSTGRES_SIZES = {
    "checkpoints": "SELECT COALESCE(SUM(pg_column_size(checkpoint) + pg_column_size(metadata)), "
    "0) AS bytes FROM checkpoints WHERE thread_id = ANY(%s)",
    "checkpoint_blobs": "SELECT COALESCE(SUM(pg_column_size(blob)), 0) AS bytes "
    "FROM checkpoint_blobs WHERE thread_id = ANY(%s)",
    "checkpoint_writes": "SELECT COALESCE(SUM(pg_column_size(blob)), 0) AS bytes "
    "FROM checkpoint_writes WHERE thread_id = ANY(%s)",
}


def stored_bytes(thread_ids: list[str]) -> dict[str, int]:
    """Bytes the given threads occupy in each checkpointer table."""
    from pipeline.checkpointer import get_checkpointer, is_postgres

    saver = get_checkpointer()
    sizes = {}
    if is_postgres():
        with saver.conn.connection() as conn:
            for table, sql in POSTGRES_SIZES.items():
                sizes[table] = int(conn.execute(sql, (thread_ids,)).fetchone()["bytes"])
        return sizes
    placeholders = ", ".join("?" * len(thread_ids))
    with saver.lock:
        for table, sql in SQLITE_SIZES.items():
            cursor = saver.conn.execute(sql.format(ids=placeholders), thread_ids)
            sizes[table] = int(cursor.fetchone()[0])
    return sizes


def measure(backend: str, repeat: int) -> dict:
    setup_django(backend)
    from django_q.conf import Conf

    from pipeline.models import StageExecution, StageStatus
    from pipeline.services import start_run

    Conf.SYNC = True  # the queued task runs inline
    runs = []
    for _ in range(repeat):
        for question in QUESTIONS:
            run = start_run(graph="gamed", input={"question": question})
            run.refresh_from_db()
            assert run.status == "succeeded", run.error_message
            runs.append(run)
    stages = StageExecution.objects.filter(run__in=runs).exclude(status=StageStatus.REUSED).count()
    sizes = stored_bytes([run.thread_id for run in runs])
    total = sum(sizes.values())
    return {
        "backend": backend,
        "runs": len(runs),
        "stages": stages,
        "bytes": sizes,
        "total_bytes": total,
        "bytes_per_stage": round(total / stages),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per question")
    parser.add_argument("--backend", choices=["sqlite", "postgres"])
    parser.add_argument("--json", action="store_true", help="print one JSON line per backend")
    parser.add_argument("--rows", action="store_true", help="print table rows (for make bench)")
    args = parser.parse_args()
    if args.backend:
        result = measure(args.backend, args.repeat)
        print(json.dumps(result) if args.json else result)
        return
    results = per_backend(__file__, ["sqlite", "postgres"], "--repeat", str(args.repeat))
    if args.rows:
        print_rows(
            row(f"checkpoint bytes/stage, GamED ({r['backend']})", r["bytes_per_stage"])
            for r in results
        )
    else:
        print_table(results)
    if len(results) < 2:
        sys.exit(1)


def print_table(results: list[dict]) -> None:
    print(
        "checkpoint bytes per stage: GamED pipeline (payload bytes; keys and indexes not counted)"
    )
    print(f"{'backend':<10}{'runs':>6}{'stages':>8}  {'bytes by table':<66}{'bytes/stage':>12}")
    for r in results:
        tables = ", ".join(f"{table} {n}" for table, n in r["bytes"].items())
        print(
            f"{r['backend']:<10}{r['runs']:>6}{r['stages']:>8}  {tables:<66}"
            f"{r['bytes_per_stage']:>12}"
        )


if __name__ == "__main__":
    main()
