import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django_q.conf import Conf

from pipeline.checkpointer import close_checkpointers
from pipeline.models import PipelineRun, RunStatus
from pipeline.runner import RowWriter
from tests import ledger, services
from tests.console import OPERATOR_PERMS, VIEW_PERMS, login, staff_user

ROOT = Path(__file__).resolve().parent.parent
EXTRA_GRAPHS = {
    "test_chain": "tests.graphs:build_chain",
    "fanout": "tests.graphs:build_fanout",
    "chatty": "tests.graphs:build_chatty",
    "docs_async": "tests.docs_graphs:build_async",
    "docs_subgraph": "tests.docs_graphs:build_subgraph",
    "docs_send": "tests.docs_graphs:build_send",
    "docs_flaky": "tests.docs_graphs:build_flaky",
    "docs_context": "tests.docs_graphs:build_context",
    "docs_chat": "tests.docs_graphs:build_chat",
    "docs_big": "tests.docs_graphs:build_big",
    "docs_billing": "tests.docs_graphs:build_billing",
    "docs_approval": "tests.docs_graphs:build_approval",
    "docs_parallel_review": "tests.docs_graphs:build_parallel_review",
    "docs_deadline": "tests.docs_graphs:build_approval_with_deadline",
    "docs_bad_default": "tests.docs_graphs:build_approval_with_unstorable_default",
    "docs_orm_subgraph": "tests.docs_graphs:build_orm_subgraph",
    "sleepy": "tests.graphs:build_sleepy",
    "model_react": "tests.model_graphs:build_react",
    "model_streaming": "tests.model_graphs:build_streaming",
}
TEST_GRAPHS = json.dumps(EXTRA_GRAPHS)
settings.GAMED_GRAPHS = {**settings.GAMED_GRAPHS, **EXTRA_GRAPHS}
# Tests make stages fail on purpose and count what ran (pipeline/graphs/faults.py).
settings.GAMED_FAULT_INJECTION = True
# Workers started by tests renew leases and notice cancellation quickly, and die fast.
DURABLE = {
    "GAMED_LEASE_SECONDS": "3",
    "GAMED_HEARTBEAT_SECONDS": "0.5",
    "GAMED_CANCEL_POLL_SECONDS": "0.2",
    "GAMED_REQUEUE_AFTER_SECONDS": "2",
}


def database_url() -> str:
    """URL of the database the tests use (the test database), for child processes."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CHECKPOINT_DATABASE_URL"}}
    env.update(
        DATABASE_URL=database_url(),
        DJANGO_SETTINGS_MODULE="gamed_console.settings",
        GAMED_EXTRA_GRAPHS=TEST_GRAPHS,
        GAMED_FAULT_INJECTION="true",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def manage(
    *args: str, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session", autouse=True)
def _close_checkpointers(django_db_setup, django_db_blocker):
    """The saver's pool holds connections to the test database; close it before it is dropped."""
    yield
    close_checkpointers()
    RowWriter.for_process().close_connection()


class Ledger:
    """The test graphs' own record of what ran (`tests.ledger`), and the switch that breaks a
    node until it is fixed; worker processes started afterwards share both files."""

    def __init__(self, tmp_path: Path, monkeypatch):
        self.path = tmp_path / "ledger.txt"
        self.fail_file = tmp_path / "broken.txt"
        monkeypatch.setenv(ledger.LEDGER_ENV, str(self.path))
        monkeypatch.setenv(ledger.FAIL_ENV, str(self.fail_file))

    def break_(self, *nodes: str) -> None:
        self.fail_file.write_text("\n".join(nodes))

    def fix(self) -> None:
        self.fail_file.unlink(missing_ok=True)

    def executions(self, *runs: PipelineRun):
        return ledger.executions(self.path, *(run.thread_id for run in runs))


@pytest.fixture
def operator(db):
    """A staff user with the operator's permissions (tests.console.OPERATOR_PERMS)."""
    return staff_user("operator", *OPERATOR_PERMS)


@pytest.fixture
def operator_client(operator):
    return login(operator)


@pytest.fixture
def viewer_client(db):
    """A staff user who may only view runs, logged in."""
    return login(staff_user("viewer", *VIEW_PERMS))


@pytest.fixture
def metrics_token(settings) -> str:
    """/metrics answers the bearer token `tests.helpers.scrape` sends."""
    from tests.helpers import METRICS_TOKEN

    settings.GAMED_METRICS_TOKEN = METRICS_TOKEN
    return METRICS_TOKEN


@pytest.fixture
def node_ledger(tmp_path, monkeypatch) -> Ledger:
    return Ledger(tmp_path, monkeypatch)


@pytest.fixture
def sync_queue(monkeypatch, transactional_db):
    """Tasks run inline in the test process (django-q2 reads `sync` once, so patch Conf)."""
    monkeypatch.setattr(Conf, "SYNC", True)


class Workers:
    """Real `manage.py qcluster` processes, each in its own process group."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []

    def start(self, **env: str) -> subprocess.Popen:
        log = open(self.tmp_path / f"qcluster-{len(self.procs)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=child_env(**{"GAMED_WORKERS": "2", "GAMED_QUEUE_POLL": "0.05", **DURABLE, **env}),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        # A graceful qcluster stop takes many seconds; tests need no grace.
        for proc in self.procs:
            self.kill(proc)

    def logs(self) -> str:
        return "\n".join(
            p.read_text()[-3000:] for p in sorted(self.tmp_path.glob("qcluster-*.log"))
        )


@pytest.fixture
def workers(transactional_db, tmp_path):
    handle = Workers(tmp_path)
    yield handle
    handle.stop_all()


def wait_for_runs(
    runs,
    *,
    timeout: float = 90,
    statuses=(RunStatus.SUCCEEDED, RunStatus.FAILED),
    workers: Workers | None = None,
) -> list[PipelineRun]:
    ids = [r.pk for r in runs]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(PipelineRun.objects.filter(pk__in=ids))
        if len(found) == len(ids) and all(r.status in statuses for r in found):
            return sorted(found, key=lambda r: ids.index(r.pk))
        time.sleep(0.2)
    states = {str(r.pk)[:8]: r.status for r in PipelineRun.objects.filter(pk__in=ids)}
    logs = workers.logs() if workers else ""
    raise AssertionError(f"runs did not reach {statuses} in {timeout}s: {states}\n{logs}")


def require_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("runs on the Postgres pass of `make test`")


def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    if error := services.redis_ok(url):
        if services.in_ci():
            pytest.fail(f"Redis is required in CI: {error}")
        pytest.skip(f"Redis not reachable: {error}")
    return url
