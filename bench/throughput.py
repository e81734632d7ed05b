"""Runs per second through real qcluster workers, and queue pick-up latency, on Postgres.

For 1 and 2 worker processes, with the ORM broker and with the Redis broker: N runs of a
10-stage no-op graph are queued while no worker runs, then a qcluster starts and works through
them; throughput counts the runs started after every worker has finished its first one, up to
the end of the last (read from the runs' own timestamps), so neither the producer creating
runs nor the cluster's start-up shares the measured time.

Raw LangGraph runs the same graph with the same saver in the same number of processes, after a
warm-up, twice: with the durability the console runs with (`durability="sync"`: a stage's
checkpoint is saved before the next stage starts, which is what lets a resumed run skip every
stage that finished), which is the reference for the target, and with LangGraph's default
(`"async"`: the save overlaps the next step, and a crash can lose it), shown for comparison.
The three are repeated (--rounds), alternating which goes first, and the table shows the median
of each. Pick-up latency (queued -> first stage started) is measured with idle workers, one run
at a time. Targets: console throughput >= 0.6x raw; Redis pick-up p50 under 50 ms.

    python bench/throughput.py [--runs 200] [--rounds 3] [--rows]
"""

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid

from _common import POSTGRES_URL, ROOT, print_rows, row, setup_django

GRAPHS = json.dumps({"bench_noop10": "bench._common:build_noop10"})
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
RATIO_TARGET = 0.6
PICKUP_TARGET_MS = 50
CONSOLE_DURABILITY = "sync"  # what pipeline.runner streams with


def _raw_worker(count: int, durability: str) -> float:
    """Runs `count` raw invocations after a warm-up; returns the seconds they took."""
    from _common import build_noop
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    url = POSTGRES_URL.replace("postgres://", "postgresql://")
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    with ConnectionPool(url, kwargs=kwargs, min_size=1, max_size=2) as pool:
        graph = build_noop(10).compile(checkpointer=PostgresSaver(pool))
        for i in range(count + 4):
            if i == 4:
                started = time.perf_counter()
            config = {"configurable": {"thread_id": str(uuid.uuid4())}}
            graph.invoke({"n": 0}, config, durability=durability)
        return time.perf_counter() - started


def raw_throughput(processes: int, runs: int, durability: str = CONSOLE_DURABILITY) -> float:
    per = runs // processes
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        elapsed = pool.starmap(_raw_worker, [(per, durability)] * processes)
    return per * processes / max(elapsed)


def start_cluster(workers: int) -> subprocess.Popen:
    """A qcluster in its own process group; the child's environment picks the broker."""
    env = {
        **os.environ,
        "DATABASE_URL": POSTGRES_URL,
        "GAMED_WORKERS": str(workers),
        "GAMED_EXTRA_GRAPHS": GRAPHS,
        "GAMED_CLUSTER_NAME": os.environ["GAMED_CLUSTER_NAME"],
        "GAMED_QUEUE_POLL": "0.2",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_cluster(cluster: subprocess.Popen) -> None:
    """Kill the whole process group and wait until it is gone: a Redis pusher that dies inside
    a blocking pop could otherwise still take a task queued for the next cluster (the Redis
    broker is at-most-once; the reaper would queue that run again only minutes later)."""
    os.killpg(cluster.pid, signal.SIGKILL)
    cluster.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(cluster.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # for Redis to see the dead connections closed


def wait_succeeded(ids: list, timeout: float = 300) -> None:
    """Polls gently: the figures come from the runs' own timestamps, so the poll only has to
    notice the end, and must not take CPU from the workers it measures."""
    from django.db import close_old_connections

    from pipeline.models import PipelineRun

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        close_old_connections()
        if PipelineRun.objects.filter(pk__in=ids, status="succeeded").count() == len(ids):
            return
        time.sleep(0.1)
    raise RuntimeError("runs did not finish")


def queue_runs(count: int) -> list:
    from pipeline.services import start_run

    return [start_run(graph="bench_noop10", input={"n": 0}).pk for _ in range(count)]


def pickup_latencies(workers: int) -> list[float]:
    """Seconds from queued to first stage started, one run at a time, workers idle."""
    from pipeline.models import PipelineRun, StageExecution

    cluster = start_cluster(workers)
    try:
        wait_succeeded(queue_runs(4))  # warm-up
        pickups = []
        for _ in range(20):
            [pk] = queue_runs(1)
            wait_succeeded([pk])
            run = PipelineRun.objects.get(pk=pk)
            first = StageExecution.objects.filter(run=run).order_by("stage_order").first()
            pickups.append((first.started_at - run.queued_at).total_seconds())
    finally:
        stop_cluster(cluster)
    return sorted(pickups)


def console_throughput(workers: int, runs: int) -> float:
    """Runs per second of `workers` workers working through `runs` runs queued beforehand."""
    from pipeline.models import PipelineRun

    ids = queue_runs(runs)
    cluster = start_cluster(workers)
    try:
        wait_succeeded(ids)
    finally:
        stop_cluster(cluster)
    runs = PipelineRun.objects.filter(pk__in=ids).values_list("worker", "started_at", "finished_at")
    first_done: dict[str, object] = {}
    for worker, _started, finished in sorted(runs, key=lambda r: r[1]):
        first_done.setdefault(worker, finished)
    # From the moment every worker has finished its first run (imports, graph compiled), as
    # raw LangGraph is timed after its warm-up; runs started before that are not counted.
    begin = max(first_done.values())
    counted = [finished for _, started, finished in runs if started >= begin]
    return len(counted) / (max(counted) - begin).total_seconds()


def console(broker: str, workers: int, runs: int, rounds: int) -> dict:
    pickups = pickup_latencies(workers)
    measured, raw, raw_default = [], [], []
    for i in range(rounds):
        # Alternate the order, so none always inherits the others' after-effects (autovacuum,
        # a checkpoint of the write-ahead log).
        steps = [
            lambda: measured.append(console_throughput(workers, runs)),
            lambda: raw.append(raw_throughput(workers, runs)),
            lambda: raw_default.append(raw_throughput(workers, runs, "async")),
        ]
        for step in steps if i % 2 == 0 else reversed(steps):
            step()
    ratios = [c / r for c, r in zip(measured, raw, strict=True)]
    default_ratios = [c / r for c, r in zip(measured, raw_default, strict=True)]
    return {
        "broker": broker,
        "workers": workers,
        "runs_per_s": round(statistics.median(measured), 2),
        "raw_runs_per_s": round(statistics.median(raw), 2),
        "ratio": round(statistics.median(ratios), 2),
        "ratios": [round(r, 2) for r in ratios],
        "raw_default_runs_per_s": round(statistics.median(raw_default), 2),
        "default_ratio": round(statistics.median(default_ratios), 2),
        "pickup_p50_ms": round(statistics.median(pickups) * 1000, 1),
        "pickup_p95_ms": round(pickups[int(len(pickups) * 0.95) - 1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--broker", choices=["orm", "redis"])
    parser.add_argument("--workers", type=int)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rows", action="store_true", help="print table rows (for make bench)")
    args = parser.parse_args()
    if args.broker:
        os.environ["GAMED_CLUSTER_NAME"] = f"bench-{uuid.uuid4().hex[:8]}"
        if args.broker == "redis":
            os.environ["REDIS_URL"] = REDIS_URL
        setup_django("postgres")
        print(json.dumps(console(args.broker, args.workers, args.runs, args.rounds)))
        return
    rows = []
    for broker in ("orm", "redis"):
        for workers in (1, 2):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--broker",
                    broker,
                    "--workers",
                    str(workers),
                    "--runs",
                    str(args.runs),
                    "--rounds",
                    str(args.rounds),
                    "--json",
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if out.returncode != 0:
                print(f"{broker}/{workers}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                sys.exit(1)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.rows:
        print_rows(table_rows(rows))
    else:
        print_table(rows, args.runs, args.rounds)


def _where(r: dict) -> str:
    return f"{r['broker']}, {r['workers']} worker{'s' if r['workers'] > 1 else ''}"


def table_rows(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        out.append(
            row(
                f"throughput, runs/s ({_where(r)})",
                r["runs_per_s"],
                r["raw_runs_per_s"],
                r["ratio"],
                f">= {RATIO_TARGET}",
                r["ratio"] >= RATIO_TARGET,
            )
        )
    for r in results:
        out.append(
            row(
                f"throughput, runs/s (ref: raw with async durability, {_where(r)})",
                r["runs_per_s"],
                r["raw_default_runs_per_s"],
                r["default_ratio"],
            )
        )
    for r in results:
        redis = r["broker"] == "redis"
        out.append(
            row(
                f"pick-up p50 ms ({_where(r)})",
                r["pickup_p50_ms"],
                target=f"< {PICKUP_TARGET_MS}" if redis else None,
                met=r["pickup_p50_ms"] < PICKUP_TARGET_MS if redis else None,
            )
        )
        out.append(row(f"pick-up p95 ms ({_where(r)})", r["pickup_p95_ms"]))
    return out


def print_table(rows: list[dict], runs: int, rounds: int) -> None:
    print(f"throughput: 10-stage no-op graph, {runs} runs, Postgres, median of {rounds} rounds")
    print(
        f"{'':<15}{'raw runs/s':>12}{'':<16}{'':<25}{'raw runs/s':>12}\n"
        f"{'broker':<7}{'workers':>8}{'(sync)':>12}{'console runs/s':>16}{'ratio':>7}"
        f"{'  ratio per round':<18}{'(async)':>12}{'ratio':>7}"
        f"{'pick-up p50 ms':>16}{'p95 ms':>8}"
    )
    for r in rows:
        per_round = " ".join(f"{x:.2f}" for x in r["ratios"])
        print(
            f"{r['broker']:<7}{r['workers']:>8}{r['raw_runs_per_s']:>12.1f}{r['runs_per_s']:>16.1f}"
            f"{r['ratio']:>7.2f}  {per_round:<16}{r['raw_default_runs_per_s']:>12.1f}"
            f"{r['default_ratio']:>7.2f}{r['pickup_p50_ms']:>16.1f}{r['pickup_p95_ms']:>8.1f}"
        )
    print(
        "targets: ratio (to raw with the console's durability, sync) >= 0.6; "
        "Redis pick-up p50 < 50 ms"
    )


if __name__ == "__main__":
    main()
