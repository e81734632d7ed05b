"""Event streams on the production server (`manage.py serve`: one uvicorn process) on Postgres.

Seeds runs, serves the console, then measures `GET /api/runs` (50 per page) from one client:
first with no stream open, then while N event streams (500) are open on running runs, a few of
which change every second (a worker's writes, so that streams wake and send events). It counts
stream errors (a refused or cut stream) and, from Postgres (`application_name`), the
connections the web process holds, which GAMED_DB_POOL_SIZE bounds; then 100 concurrent clients
send requests while the streams stay open. Target: the p99 with the streams open within 2x of
the p99 without, no error, connections within the pool.

    python bench/event_streams.py [--streams 500] [--requests 1000] [--pool 8] [--quick]
"""

import argparse
import asyncio
import http.client
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from _common import print_rows, row

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "BENCH_STREAMS_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/gamed_streams_bench"
)
APP_NAME = "gamed-bench-web"
P99_RATIO_TARGET = 2.0


def django_env(**extra: str) -> dict[str, str]:
    values = {
        k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CHECKPOINT_DATABASE_URL"}
    }
    values.update(DJANGO_SETTINGS_MODULE="gamed_console.settings", GAMED_LOG_LEVEL="WARNING")
    values.update(extra)
    return values


def seed(streams: int, finished: int) -> tuple[str, list[str]]:
    """A fresh database with `finished` finished runs and `streams` running ones; an API key."""
    admin_url, name = POSTGRES_URL.rsplit("/", 1)
    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ.update(django_env(DATABASE_URL=POSTGRES_URL))
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.utils import timezone

    from observability.models import ApiKey, ApiKeyScope
    from pipeline.models import PipelineRun, RunStatus

    call_command("migrate", verbosity=0)
    owner = User.objects.create_superuser("bench", password=None)
    _, key = ApiKey.objects.create_key(name="bench", owner=owner, scope=ApiKeyScope.WRITE)
    now = timezone.now()

    def run(status: str, subject: str) -> PipelineRun:
        pk = uuid.uuid4()
        return PipelineRun(
            id=pk,
            thread_id=str(pk),
            graph="gamed",
            status=status,
            subject=subject,
            input={"question": subject},
            started_at=now,
        )

    PipelineRun.objects.bulk_create(run(RunStatus.SUCCEEDED, f"q {i}") for i in range(finished))
    running = [run(RunStatus.RUNNING, f"streamed {i}") for i in range(streams)]
    PipelineRun.objects.bulk_create(running)
    return key, [str(r.pk) for r in running]


class Server:
    def __init__(self, pool: int):
        self.port = free_port()
        url = f"{POSTGRES_URL}?application_name={APP_NAME}"
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--addr", f"127.0.0.1:{self.port}"],
            cwd=ROOT,
            env=django_env(DATABASE_URL=url, GAMED_DB_POOL_SIZE=str(pool)),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                http.client.HTTPConnection("127.0.0.1", self.port, timeout=2).connect()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def web_connections() -> int:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        return conn.execute(query, [APP_NAME]).fetchone()[0]


def latencies(port: int, key: str, requests: int) -> tuple[list[float], int]:
    """`requests` list requests from one client on one keep-alive connection: seconds each,
    and how many failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    samples, errors = [], 0
    for _ in range(requests):
        started = time.perf_counter()
        conn.request("GET", "/api/runs?page_size=50", headers={"X-API-Key": key})
        response = conn.getresponse()
        response.read()
        samples.append(time.perf_counter() - started)
        errors += response.status != 200
    conn.close()
    return samples, errors


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def p99_ms(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] * 1000


# The streams: another process, holding every stream open on one event loop ----------------


async def _hold(port: int, key: str, run_id: str, opened: asyncio.Queue, tally: dict) -> None:
    """One event stream, open until cancelled: counts its events, and it as cut if the server
    ends it (none of the runs ends)."""
    told = False
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = f"GET /api/runs/{run_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}"
        writer.write(f"{request}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 200"):
            await reader.readuntil(b"retry: 2000")
        told = True
        opened.put_nowait(head.startswith(b"HTTP/1.1 200"))
        while chunk := await reader.read(65536):
            tally["events"] += chunk.count(b"\nevent: ")
        tally["cut"] += 1
    except (OSError, asyncio.IncompleteReadError):
        tally["cut"] += 1
        if not told:
            opened.put_nowait(False)


def hold_streams(port: int, key: str, run_ids: list[str], ready, stop, results) -> None:
    """In its own process: opens a stream per run, says how many opened, holds them until
    `stop`, then reports the events received and the streams cut."""

    async def main():
        opened: asyncio.Queue = asyncio.Queue()
        tally = {"events": 0, "cut": 0}
        tasks = [asyncio.create_task(_hold(port, key, rid, opened, tally)) for rid in run_ids]
        ready.put(sum([await opened.get() for _ in run_ids]))
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        results.put(tally)

    asyncio.run(main())


def keep_runs_moving(run_ids: list[str], stop: threading.Event) -> None:
    """What workers write: every 0.1 s one streamed run gets a stage row (started, then ended)."""
    from django.db import connection
    from django.utils import timezone

    from pipeline.models import StageExecution, StageStatus

    orders: dict[str, int] = {}
    while not stop.wait(0.1):
        run_id = random.choice(run_ids)
        orders[run_id] = order = orders.get(run_id, 0) + 1
        stage = StageExecution.objects.create(
            run_id=run_id,
            stage_name="router",
            stage_order=order,
            status=StageStatus.RUNNING,
            started_at=timezone.now(),
        )
        StageExecution.objects.filter(pk=stage.pk).update(
            status=StageStatus.SUCCEEDED, finished_at=timezone.now(), duration_ms=5
        )
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--pool", type=int, default=8, help="GAMED_DB_POOL_SIZE of the server")
    parser.add_argument("--quick", action="store_true", help="200 requests per measurement")
    parser.add_argument("--rows", action="store_true", help="print make bench rows")
    args = parser.parse_args()
    requests = 200 if args.quick else args.requests

    key, run_ids = seed(args.streams, finished=2000)
    server = Server(args.pool)
    try:
        latencies(server.port, key, 50)  # warm up
        before, before_errors = latencies(server.port, key, requests)
        idle_threads = server.threads()

        ready, results = multiprocessing.Queue(), multiprocessing.Queue()
        stop_streams = multiprocessing.Event()
        holder = multiprocessing.Process(
            target=hold_streams,
            args=(server.port, key, run_ids, ready, stop_streams, results),
        )
        holder.start()
        opened = ready.get(timeout=300)
        stop_moving = threading.Event()
        mover = threading.Thread(target=keep_runs_moving, args=(run_ids, stop_moving))
        mover.start()

        cpu_before = server.cpu_seconds()
        time.sleep(10)  # the streams alone, their runs changing
        streams_cpu = (server.cpu_seconds() - cpu_before) / 10
        during, during_errors = latencies(server.port, key, requests)
        stream_threads = server.threads()
        peak = web_connections()
        with ThreadPoolExecutor(max_workers=args.clients) as clients:
            work = [requests // 10 or 1] * args.clients
            crowd = list(clients.map(lambda n: latencies(server.port, key, n), work))
            sampled = [web_connections() for _ in range(3)]
        peak = max(peak, *sampled, web_connections())
        crowd_errors = sum(errors for _, errors in crowd)

        stop_moving.set()
        mover.join()
        stop_streams.set()
        streamed = results.get(timeout=300)
        holder.join()
        ended_early = streamed["cut"] + args.streams - opened
    finally:
        server.stop()

    ratio = p99_ms(during) / p99_ms(before)
    errors = before_errors + during_errors + crowd_errors + ended_early
    if args.rows:
        print_rows(
            [
                row(
                    "api list p99 ms, 1 client, no event streams (uvicorn)",
                    round(p99_ms(before), 1),
                ),
                row(
                    f"api list p99 ms, 1 client, {args.streams} event streams open",
                    round(p99_ms(during), 1),
                    round(p99_ms(before), 1),
                    round(ratio, 2),
                    f"<= {P99_RATIO_TARGET}",
                    ratio <= P99_RATIO_TARGET,
                ),
                row(
                    f"errors, {args.streams} streams + {args.clients} clients",
                    errors,
                    None,
                    None,
                    "0",
                    errors == 0,
                ),
                row(
                    f"web Postgres connections, peak (GAMED_DB_POOL_SIZE={args.pool})",
                    peak,
                    None,
                    None,
                    f"<= {args.pool}",
                    peak <= args.pool,
                ),
            ]
        )
        return
    print(
        f"event streams: {args.streams} open on running runs, one server process "
        f"(uvicorn), Postgres, GAMED_DB_POOL_SIZE={args.pool}, {requests} requests each"
    )
    print(
        f"{'GET /api/runs (50 per page), 1 client':<44} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    )
    for label, samples, failed in [
        ("no stream open", before, before_errors),
        (f"{args.streams} streams open", during, during_errors),
    ]:
        print(f"  {label:<42} {median_ms(samples):8.1f} {p99_ms(samples):8.1f} {failed:7d}")
    print(f"p99 ratio (streams / none): {ratio:.2f} (target <= {P99_RATIO_TARGET})")
    print(
        f"streams opened: {opened} of {args.streams}; events received: {streamed['events']}; "
        f"streams refused or cut: {ended_early}"
    )
    all_crowd = [s for samples, _ in crowd for s in samples]
    print(
        f"{args.clients} concurrent clients beside the streams: {len(all_crowd)} requests, "
        f"p50 {median_ms(all_crowd):.1f} ms, p99 {p99_ms(all_crowd):.1f} ms, "
        f"errors {crowd_errors}"
    )
    print(
        f"web process: {idle_threads} threads idle, {stream_threads} with the streams open; "
        f"Postgres connections at most {peak} (pool {args.pool}); "
        f"{streams_cpu:.0%} of a core for the streams alone (no request)"
    )


if __name__ == "__main__":
    main()
