"""Per-stage cost of the console runner against raw LangGraph, with the same saver.

Two 20-stage graphs, one of no-op stages (the worst case: nothing but recording) and one whose
stages take 20 ms each (stages that do real work), each run N times through
`pipeline.runner.execute_run` (claim, stream with stage and checkpoint recording, final state)
and N times through `graph.invoke(..., durability="sync")` on the same checkpointer,
interleaved. Prints per-stage cost and the ratio. Targets: console / raw <= 1.5 on no-op
stages, <= 1.03 on 20 ms stages, on both backends.

    python bench/stage_overhead.py [--runs 30] [--backend sqlite|postgres] [--rows]
"""

import argparse
import json
import sys
import time
import uuid

from _common import median_ms, per_backend, print_rows, row, setup_django

STAGES = 20
GRAPHS = {"bench_noop20": ("no-op", 1.5), "bench_work20": ("20 ms", 1.03)}


def measure(backend: str, runs: int) -> list[dict]:
    setup_django(backend)
    return [measure_graph(backend, graph, runs) for graph in GRAPHS]


def measure_graph(backend: str, graph: str, runs: int) -> dict:
    from pipeline.checkpointer import get_checkpointer
    from pipeline.graphs import state_graph
    from pipeline.models import PipelineRun
    from pipeline.runner import execute_run

    raw_graph = state_graph(graph).compile(checkpointer=get_checkpointer())
    console, raw = [], []
    for i in range(runs + 3):
        run = PipelineRun.objects.create(graph=graph, input={"n": 0})
        started = time.perf_counter()
        status = execute_run(str(run.pk))
        console_s = time.perf_counter() - started
        assert status == "succeeded", status

        config = {"configurable": {"thread_id": str(uuid.uuid4())}}
        started = time.perf_counter()
        raw_graph.invoke({"n": 0}, config, durability="sync")
        raw_s = time.perf_counter() - started
        if i >= 3:  # warm-up
            console.append(console_s / STAGES)
            raw.append(raw_s / STAGES)
    console_ms, raw_ms = median_ms(console), median_ms(raw)
    kind, target = GRAPHS[graph]
    return {
        "backend": backend,
        "stages": kind,
        "runs": runs,
        "console_ms_per_stage": round(console_ms, 3),
        "raw_ms_per_stage": round(raw_ms, 3),
        "ratio": round(console_ms / raw_ms, 3),
        "target": target,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--backend", choices=["sqlite", "postgres"])
    parser.add_argument("--json", action="store_true", help="print one JSON line per backend")
    parser.add_argument("--rows", action="store_true", help="print table rows (for make bench)")
    args = parser.parse_args()
    if args.backend:
        results = measure(args.backend, args.runs)
        print(json.dumps(results) if args.json else results)
        return
    results = [
        r
        for rs in per_backend(__file__, ["sqlite", "postgres"], "--runs", str(args.runs))
        for r in rs
    ]
    if args.rows:
        print_rows(
            row(
                f"stage overhead, {r['stages']} stages, ms/stage ({r['backend']})",
                r["console_ms_per_stage"],
                r["raw_ms_per_stage"],
                r["ratio"],
                f"<= {r['target']}",
                r["ratio"] <= r["target"],
            )
            for r in results
        )
    else:
        print_table(results, args.runs)
    if len(results) < 2 * len(GRAPHS):
        sys.exit(1)


def print_table(results: list[dict], runs: int) -> None:
    print(f"stage overhead: {STAGES}-stage graphs, median of {runs} runs each")
    print(
        f"{'backend':<10}{'stages':<8}{'raw ms/stage':>14}{'console ms/stage':>18}"
        f"{'ratio':>8}{'target':>10}"
    )
    for r in results:
        print(
            f"{r['backend']:<10}{r['stages']:<8}{r['raw_ms_per_stage']:>14.3f}"
            f"{r['console_ms_per_stage']:>18.3f}{r['ratio']:>8.2f}{'<= ' + str(r['target']):>10}"
        )


if __name__ == "__main__":
    main()
