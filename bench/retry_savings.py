"""What a retry from the last stage saves, against running the whole pipeline again.

A 10-stage graph whose stages each sleep D ms runs once through the console (queued inline);
it is then retried from its last stage. Prints the full-run time, the retry time and their
ratio (target <= 0.15), next to a raw LangGraph `invoke` of the same graph for reference.

    python bench/retry_savings.py [--stage-ms 100] [--repeat 5] [--backend sqlite|postgres]
        [--rows]
"""

import argparse
import json
import os
import statistics
import sys
import time
import uuid

from _common import per_backend, print_rows, row, setup_django

TARGET = 0.15


def measure(backend: str, repeat: int) -> dict:
    setup_django(backend)
    from django_q.conf import Conf

    from pipeline.checkpointer import get_checkpointer
    from pipeline.graphs import state_graph
    from pipeline.services import retry_run, start_run

    Conf.SYNC = True  # the queued task runs inline: only the pipeline is measured
    raw_graph = state_graph("bench_sleep10").compile(checkpointer=get_checkpointer())
    full, retry, raw = [], [], []
    for _ in range(repeat):
        started = time.perf_counter()
        run = start_run(graph="bench_sleep10", input={"n": 0})
        full.append(time.perf_counter() - started)
        run.refresh_from_db()
        assert run.status == "succeeded", run.error_message

        started = time.perf_counter()
        again = retry_run(run=run, from_stage="stage_10")
        retry.append(time.perf_counter() - started)
        again.refresh_from_db()
        assert again.status == "succeeded" and again.resume_mode == "checkpoint"
        assert again.stages.filter(status="reused").count() == 9

        started = time.perf_counter()
        raw_graph.invoke({"n": 0}, {"configurable": {"thread_id": str(uuid.uuid4())}})
        raw.append(time.perf_counter() - started)
    full_s, retry_s = statistics.median(full), statistics.median(retry)
    return {
        "backend": backend,
        "stage_ms": float(os.environ.get("BENCH_STAGE_MS", "100")),
        "full_run_s": round(full_s, 4),
        "retry_last_stage_s": round(retry_s, 4),
        "raw_full_run_s": round(statistics.median(raw), 4),
        "ratio": round(retry_s / full_s, 3),
        "target": TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage-ms", type=float, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backend", choices=["sqlite", "postgres"])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rows", action="store_true", help="print table rows (for make bench)")
    args = parser.parse_args()
    os.environ["BENCH_STAGE_MS"] = str(args.stage_ms)
    if args.backend:
        result = measure(args.backend, args.repeat)
        print(json.dumps(result) if args.json else result)
        return
    results = per_backend(
        __file__,
        ["sqlite", "postgres"],
        "--repeat",
        str(args.repeat),
        "--stage-ms",
        str(args.stage_ms),
    )
    if args.rows:
        print_rows(rows(results, args.stage_ms))
    else:
        print_table(results, args.stage_ms, args.repeat)
    if len(results) < 2:
        sys.exit(1)


def rows(results: list[dict], stage_ms: float) -> list[dict]:
    out = []
    for r in results:
        full_vs_raw = round(r["full_run_s"] / r["raw_full_run_s"], 3)
        out.append(
            row(
                f"full run, s, 10 x {stage_ms:g} ms ({r['backend']})",
                r["full_run_s"],
                r["raw_full_run_s"],
                full_vs_raw,
            )
        )
        out.append(
            row(
                f"retry from last stage, s (ref: console full run, {r['backend']})",
                r["retry_last_stage_s"],
                r["full_run_s"],
                r["ratio"],
                f"<= {r['target']}",
                r["ratio"] <= r["target"],
            )
        )
    return out


def print_table(results: list[dict], stage_ms: float, repeat: int) -> None:
    print(f"retry savings: 10 stages x {stage_ms:g} ms, median of {repeat}")
    header = f"{'backend':<10}{'raw full s':>11}{'full run s':>12}{'retry s':>10}"
    print(f"{header}{'ratio':>8}{'target':>9}")
    for r in results:
        print(
            f"{r['backend']:<10}{r['raw_full_run_s']:>11.3f}{r['full_run_s']:>12.3f}"
            f"{r['retry_last_stage_s']:>10.3f}{r['ratio']:>8.3f}{'<= ' + str(r['target']):>9}"
        )


if __name__ == "__main__":
    main()
