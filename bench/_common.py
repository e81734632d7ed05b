"""Shared by the benchmark scripts: Django set-up on a chosen backend, graphs, timing."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TypedDict

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/gamed_bench"
)


class NoopState(TypedDict, total=False):
    n: int


def build_noop(stages: int = 20, sleep_ms: float = 0.0):
    """A linear graph of `stages` nodes that do nothing (or sleep `sleep_ms`)."""
    from langgraph.graph import END, START, StateGraph

    def make(i: int):
        def node(state: dict) -> dict:
            if sleep_ms:
                time.sleep(sleep_ms / 1000)
            return {"n": state.get("n", 0) + 1}

        node.__name__ = f"stage_{i:02d}"
        return node

    graph = StateGraph(NoopState)
    graph.add_sequence([make(i) for i in range(1, stages + 1)])
    graph.add_edge(START, "stage_01")
    graph.add_edge(f"stage_{stages:02d}", END)
    return graph


def build_noop20():
    return build_noop(20)


def build_noop10():
    return build_noop(10)


def build_noop30():
    return build_noop(30)


def build_work20():
    """20 stages of 20 ms each: stages that do real work, where recording must vanish."""
    return build_noop(20, sleep_ms=20)


def build_sleep10():
    return build_noop(10, sleep_ms=float(os.environ.get("BENCH_STAGE_MS", "100")))


BENCH_GRAPHS = {
    "bench_noop10": "_common:build_noop10",
    "bench_noop20": "_common:build_noop20",
    "bench_noop30": "_common:build_noop30",
    "bench_sleep10": "_common:build_sleep10",
    "bench_work20": "_common:build_work20",
}


def setup_django(backend: str) -> None:
    """Point Django (and so the checkpointer) at a fresh benchmark database, migrated."""
    if backend == "postgres":
        import psycopg

        admin_url, name = POSTGRES_URL.rsplit("/", 1)
        with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = POSTGRES_URL
    else:
        tmp = tempfile.mkdtemp(prefix="gamed-bench-")
        os.environ["GAMED_VAR_DIR"] = tmp
        url = f"sqlite:///{tmp}/bench.sqlite3"
    use_database(url)


def use_database(url: str) -> None:
    """Point Django (and so the checkpointer) at `url`, with the bench graphs, and migrate."""
    os.environ["DATABASE_URL"] = url
    os.environ.pop("CHECKPOINT_DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gamed_console.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.GAMED_GRAPHS.update(BENCH_GRAPHS)
    call_command("migrate", verbosity=0)


def per_backend(script: str, backends: list[str], *args: str) -> list[dict]:
    """Run `script --backend B --json` in a fresh process per backend; collect the results."""
    results = []
    for backend in backends:
        out = subprocess.run(
            [sys.executable, script, "--backend", backend, "--json", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if out.returncode != 0:
            print(f"{backend}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def row(
    metric: str,
    console: float | None,
    reference: float | None = None,
    ratio: float | None = None,
    target: str | None = None,
    met: bool | None = None,
) -> dict:
    """One line of the `make bench` table. `reference` is raw LangGraph measured in the same run
    unless the metric's name says otherwise; None prints as "-"."""
    return {
        "metric": metric,
        "console": console,
        "reference": reference,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def print_rows(rows: Iterable[dict]) -> None:
    """The `--rows` output that bench/run_all.py reads: one JSON object per line."""
    for item in rows:
        print(json.dumps(item))
