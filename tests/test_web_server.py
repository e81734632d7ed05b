"""The console as it is served (`manage.py serve`: uvicorn, the ASGI app): event streams hold no
thread and no database connection while they wait, the web process's Postgres connections
stay within GAMED_DB_POOL_SIZE whatever the load, and oversized bodies are refused unread."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path
from urllib.request import Request, urlopen

import pytest
from django.db import connection

from pipeline.models import PipelineRun, RunStatus
from pipeline.services import start_run
from tests.api.conftest import integration_key, recorded_run
from tests.api.test_api_events import parse
from tests.conftest import ROOT, child_env, require_postgres, wait_for_runs
from tests.test_durability import wait_until
from tests.test_make_run import free_port, wait_for_http

POOL_SIZE = 4


class Server:
    def __init__(self, tmp_path: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = f"gamed-web-{uuid.uuid4().hex[:8]}"  # how Postgres tells its connections
        database = child_env()["DATABASE_URL"]
        if database.startswith("postgres"):
            database += f"?application_name={self.name}"
        self.log = tmp_path / "server.log"
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--addr", f"127.0.0.1:{self.port}"],
            cwd=ROOT,
            env=child_env(DATABASE_URL=database, GAMED_DB_POOL_SIZE=str(POOL_SIZE), **env),
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        wait_for_http(f"{self.url}/admin/login/")

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def connections(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [self.name]
            )
            return cursor.fetchone()[0]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


@pytest.fixture
def server(transactional_db, tmp_path):
    # Requests queue for the pool as long as it takes: these tests are about the bound.
    served = Server(tmp_path, GAMED_DB_POOL_TIMEOUT="120")
    yield served
    served.stop()


@pytest.fixture
def key(transactional_db) -> str:
    return integration_key()


def open_stream(server: Server, key: str, run_id, last_event_id: str = "") -> HTTPResponse:
    """An event stream left open, once its first line has arrived."""
    headers = {"X-API-Key": key, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
    conn = HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("GET", f"/api/runs/{run_id}/events", headers=headers)
    response = conn.getresponse()
    assert response.status == 200
    assert response.readline() == b"retry: 2000\n" and response.readline() == b"\n"
    return response


def events_until_closed(response: HTTPResponse) -> list[dict]:
    return [e for e in parse(response.read().decode()) if "id" in e]


def get(server: Server, path: str, key: str) -> tuple[int, bytes]:
    with urlopen(Request(server.url + path, headers={"X-API-Key": key}), timeout=60) as response:
        return response.status, response.read()


def test_open_event_streams_hold_no_thread_and_no_connection(server, key):
    runs = [recorded_run(status=RunStatus.PENDING) for _ in range(40)]
    # Warm up: a stream and a few requests, so the server has made the threads it keeps.
    for sock in [open_stream(server, key, run.pk) for run in runs[:POOL_SIZE]]:
        sock.close()
    assert get(server, "/api/runs", key)[0] == 200
    idle = server.threads()

    streams = [open_stream(server, key, run.pk) for run in runs]

    # At most the few threads streams read with (once the threads that answered the requests
    # have exited); a stream holding a thread would keep 40 more.
    wait_until(lambda: server.threads() <= idle + POOL_SIZE // 2 + 1, 30, "threads to settle")
    assert get(server, "/api/runs?page_size=100", key)[0] == 200
    if connection.vendor == "postgresql":
        assert server.connections() <= POOL_SIZE
    for sock in streams:
        sock.close()


def test_a_hundred_concurrent_clients_share_a_bounded_number_of_connections(server, key):
    require_postgres()
    for _ in range(20):
        recorded_run(("input_enhancer", "succeeded"), ("router", "failed"))
    peak = 0
    loaded = threading.Event()

    def sample():
        nonlocal peak
        try:
            while not loaded.is_set():
                peak = max(peak, server.connections())
                time.sleep(0.05)
        finally:
            connection.close()  # this thread's own connection to the test database

    sampler = threading.Thread(target=sample)
    sampler.start()
    with ThreadPoolExecutor(max_workers=100) as clients:
        statuses = list(clients.map(lambda _: get(server, "/api/runs", key)[0], range(300)))
    loaded.set()
    sampler.join()

    assert statuses == [200] * 300
    assert 0 < peak <= POOL_SIZE
    assert server.connections() <= POOL_SIZE


@pytest.mark.worker
def test_a_served_stream_follows_a_run_on_a_real_worker_and_resumes_where_it_left(
    server, key, workers
):
    workers.start()
    run = start_run(
        graph="gamed",
        input={"question": "Label the parts of a plant cell", "faults": {"router": "sleep:1"}},
    )

    everything = events_until_closed(open_stream(server, key, run.pk))
    wait_for_runs([run], workers=workers)
    rest = events_until_closed(open_stream(server, key, run.pk, everything[5]["id"]))

    kinds = [e["event"] for e in everything]
    assert kinds[0] == "run.started" and kinds[-1] == "run.ended"
    assert kinds.count("stage.started") == kinds.count("stage.finished") == 8
    assert rest == everything[6:]


def test_a_body_over_the_limit_is_refused_before_it_is_read(server, key):
    runs_before = PipelineRun.objects.count()
    for path, content_type in [("/api/runs", "application/json"), ("/admin/login/", "text/plain")]:
        conn = HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.putrequest("POST", path)
        for header, value in [
            ("X-API-Key", key),
            ("Content-Type", "application/json"),
            ("Content-Length", str(3 * 1024 * 1024)),  # the body itself is never sent
        ]:
            conn.putheader(header, value)
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
        conn.close()

        assert response.status == 413
        assert response.getheader("Content-Type").startswith(content_type)
        if path.startswith("/api/"):
            assert json.loads(body)["code"] == "request_too_large"
    assert PipelineRun.objects.count() == runs_before
