"""Render time of the admin runs list and run pages on Postgres with 100,000 runs.

Seeds the database with bench/seed_runs.py unless it already holds that seed (with --quick:
10,000 runs, in its own database), then renders each page in this process with Django's test
Client as a logged-in superuser, a few times to warm up and then N times: the runs list, the
runs list filtered by status=failed, the page of a retried run with about ten stages and the
page of a 30-stage run. Prints p50/p95 ms and the queries each page makes.
Target (the operator console issue): under 300 ms each.

    python bench/admin_pages.py [--quick] [--runs 100000] [--requests 30] [--database-url URL]
                                [--rows]
"""

import argparse
import json
import os
import time

from _common import print_rows, row
from seed_runs import QUICK_RUNS, QUICK_SEED_URL, RUNS, SEED_URL, ensure_seeded

TARGET_MS = 300
WARM_UP = 3


def pages() -> list[tuple[str, str]]:
    """(label, path) of each page measured."""
    from django.urls import reverse

    from pipeline.models import PipelineRun
    from pipeline.selectors import console_runs

    retries = console_runs().filter(parent_run__isnull=False).order_by("-created_at")
    retry = retries.filter(stage_count__gte=10).first() or retries.first()
    longest = PipelineRun.objects.get(graph="bench_noop30")
    runs_list = reverse("admin:pipeline_pipelinerun_changelist")
    return [
        ("runs list", runs_list),
        ("runs list, status=failed", f"{runs_list}?status__exact=failed"),
        (f"run page, {retry.stage_count} stages (a retry)", retry.admin_path),
        ("run page, 30 stages", longest.admin_path),
    ]


def measure(client, path: str, requests: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from pipeline.selectors import percentile

    def get() -> None:
        response = client.get(path)
        if response.status_code != 200:
            raise SystemExit(f"GET {path}: {response.status_code}")

    for _ in range(WARM_UP):
        get()
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        get()
        samples.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as queries:
        get()
    slowest = max(queries.captured_queries, key=lambda query: float(query["time"]))
    samples.sort()
    return {
        "p50_ms": round(percentile(samples, 0.5), 1),
        "p95_ms": round(percentile(samples, 0.95), 1),
        "queries": len(queries),
        "slowest_query_ms": round(float(slowest["time"]) * 1000, 1),
        "slowest_query": slowest["sql"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS:,} runs, 10 requests")
    parser.add_argument("--runs", type=int, help=f"runs seeded (default {RUNS:,})")
    parser.add_argument("--requests", type=int, help="timed requests per page (default 30)")
    parser.add_argument("--database-url", help=f"default {SEED_URL} ({QUICK_SEED_URL} if quick)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--rows", action="store_true", help="print table rows (for make bench)")
    args = parser.parse_args()
    requests = args.requests or (10 if args.quick else 30)
    url = args.database_url or (QUICK_SEED_URL if args.quick else SEED_URL)
    # In-process requests come from "testserver"; DEBUG would record every query.
    os.environ.update(ALLOWED_HOSTS="testserver", DEBUG="false")
    seed = ensure_seeded(url, runs=args.runs or (QUICK_RUNS if args.quick else RUNS))

    from django.contrib.auth import get_user_model
    from django.test import Client

    admin = get_user_model().objects.filter(username="bench-admin").first()
    admin = admin or get_user_model().objects.create_superuser("bench-admin")
    client = Client()
    client.force_login(admin)
    results = [
        {"page": label, "path": path, **measure(client, path, requests)} for label, path in pages()
    ]
    runs = f"{seed['runs']:,} runs"
    if args.rows:
        print_rows(
            row(
                f"admin {r['page']}, p50 ms ({runs})",
                r["p50_ms"],
                target=f"< {TARGET_MS}",
                met=r["p50_ms"] < TARGET_MS,
            )
            for r in results
        )
    elif args.json:
        print(json.dumps({"seed": seed, "requests": requests, "pages": results}))
    else:
        print_table(results, seed, requests)


def print_table(results: list[dict], seed: dict, requests: int) -> None:
    print(
        f"admin pages: {seed['runs']:,} runs, {seed['stage_rows']:,} stage rows (postgres), "
        f"{requests} requests each after {WARM_UP} to warm up"
    )
    width = max(len(r["page"]) for r in results) + 2
    print(
        f"{'page':<{width}}{'p50 ms':>8}{'p95 ms':>8}{'queries':>9}{'slowest q ms':>14}"
        f"{'target':>9}"
    )
    for r in results:
        print(
            f"{r['page']:<{width}}{r['p50_ms']:>8.1f}{r['p95_ms']:>8.1f}{r['queries']:>9}"
            f"{r['slowest_query_ms']:>14.1f}{f'< {TARGET_MS}':>9}"
        )
    for r in results:
        sql = r["slowest_query"]
        columns, rest = sql[: sql.find(" FROM ")], sql[sql.find(" FROM ") :]
        if len(columns) > 80:
            columns = columns[:60] + " ..."
        print(f"\nslowest query of {r['page']}:\n  {columns}{rest[:400]}")


if __name__ == "__main__":
    main()
