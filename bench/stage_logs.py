"""What capturing stage logs costs: a 10-stage graph whose stages each log N records.

The same graph runs through the console runner (records captured and stored with their
stage) and through raw LangGraph (records created and handled by logging, not captured), with
N records per stage and with none; the difference of the differences is the capture's cost per
record. Console output handlers are removed in both, so only capture is measured. Target:
capturing adds at most 5 microseconds per record.

    python bench/stage_logs.py [--records 100] [--runs 10] [--backend sqlite|postgres]
        [--rows]
"""

import argparse
import json
import logging
import statistics
import sys
import time
import uuid
from typing import TypedDict

from _common import per_backend, print_rows, row, setup_django

STAGES = 10
TARGET_US = 5.0
log = logging.getLogger("bench.chatty")


class State(TypedDict, total=False):
    n: int
    records: int


def build_chatty():
    from langgraph.graph import END, START, StateGraph

    def make(i: int):
        def node(state: dict) -> dict:
            for j in range(state["records"]):
                log.info("stage %d record %d", i, j, extra={"j": j})
            return {"n": state.get("n", 0) + 1}

        node.__name__ = f"stage_{i:02d}"
        return node

    graph = StateGraph(State)
    graph.add_sequence([make(i) for i in range(1, STAGES + 1)])
    graph.add_edge(START, "stage_01")
    graph.add_edge(f"stage_{STAGES:02d}", END)
    return graph


def measure(backend: str, records: int, runs: int) -> dict:
    setup_django(backend)
    from django.conf import settings

    from pipeline.checkpointer import get_checkpointer
    from pipeline.models import PipelineRun
    from pipeline.runner import execute_run

    settings.GAMED_GRAPHS["bench_chatty"] = "stage_logs:build_chatty"
    settings.GAMED_STAGE_LOG_LIMIT = max(records, 1)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.INFO)
    raw_graph = build_chatty().compile(checkpointer=get_checkpointer())

    def console(n: int) -> float:
        run = PipelineRun.objects.create(graph="bench_chatty", input={"records": n})
        started = time.perf_counter()
        assert execute_run(str(run.pk)) == "succeeded"
        elapsed = time.perf_counter() - started
        assert sum(len(logs) for logs in run.stages.values_list("logs", flat=True)) == n * STAGES
        return elapsed

    def raw(n: int) -> float:
        started = time.perf_counter()
        raw_graph.invoke({"records": n}, {"configurable": {"thread_id": str(uuid.uuid4())}})
        return time.perf_counter() - started

    samples = {key: [] for key in ("console", "console0", "raw", "raw0")}
    for i in range(runs + 2):
        timings = {
            "console": console(records),
            "console0": console(0),
            "raw": raw(records),
            "raw0": raw(0),
        }
        if i >= 2:
            for key, value in timings.items():
                samples[key].append(value)
    med = {key: statistics.median(values) for key, values in samples.items()}
    capture_s = (med["console"] - med["console0"]) - (med["raw"] - med["raw0"])
    per_record_us = max(capture_s, 0) / (records * STAGES) * 1e6
    return {
        "backend": backend,
        "records_per_stage": records,
        "console_ms_per_stage": round(med["console"] / STAGES * 1000, 3),
        "raw_ms_per_stage": round(med["raw"] / STAGES * 1000, 3),
        "ratio": round(med["console"] / med["raw"], 3),
        "capture_us_per_record": round(per_record_us, 2),
        "target_us": TARGET_US,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--backend", choices=["sqlite", "postgres"])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rows", action="store_true", help="print table rows (for make bench)")
    args = parser.parse_args()
    if args.backend:
        result = measure(args.backend, args.records, args.runs)
        print(json.dumps(result) if args.json else result)
        return
    results = per_backend(
        __file__, ["sqlite", "postgres"], "--records", str(args.records), "--runs", str(args.runs)
    )
    if args.rows:
        print_rows(rows(results))
    else:
        print_table(results, args.records, args.runs)
    if len(results) < 2:
        sys.exit(1)


def rows(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        where = f"{r['records_per_stage']} records, {r['backend']}"
        out.append(
            row(
                f"logging stage, ms/stage ({where})",
                r["console_ms_per_stage"],
                r["raw_ms_per_stage"],
                r["ratio"],
            )
        )
        out.append(
            row(
                f"stage log capture, us/record ({r['backend']})",
                r["capture_us_per_record"],
                target=f"<= {r['target_us']}",
                met=r["capture_us_per_record"] <= r["target_us"],
            )
        )
    return out


def print_table(results: list[dict], records: int, runs: int) -> None:
    print(f"stage logs: {STAGES} stages x {records} records, median of {runs}")
    print(
        f"{'backend':<10}{'raw ms/stage':>14}{'console ms/stage':>18}{'ratio':>8}"
        f"{'capture us/record':>19}{'target':>9}"
    )
    for r in results:
        print(
            f"{r['backend']:<10}{r['raw_ms_per_stage']:>14.3f}{r['console_ms_per_stage']:>18.3f}"
            f"{r['ratio']:>8.2f}{r['capture_us_per_record']:>19.2f}{'<= ' + str(TARGET_US):>9}"
        )


if __name__ == "__main__":
    main()
