"""`make run` serves the console and a worker from one command, and one Ctrl-C stops both."""

import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout}s")


@pytest.mark.worker
def test_make_run_serves_admin_and_processes_a_run(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    env.update(
        GAMED_VAR_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'console.sqlite3'}",
        GAMED_QUEUE_POLL="0.05",
        PYTHONUNBUFFERED="1",
    )
    log = open(tmp_path / "make-run.log", "w")  # noqa: SIM115
    console = subprocess.Popen(
        ["make", "run", f"ADDR=127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/admin/login/") == 200
        assert wait_for_http(f"http://127.0.0.1:{port}/static/admin/css/base.css") == 200
        # /api/docs works offline: Swagger UI's files come from the console, not a CDN.
        swagger = f"http://127.0.0.1:{port}/static/ninja/swagger-ui-bundle.js"
        assert wait_for_http(swagger) == 200
        started = subprocess.run(
            [
                str(ROOT / ".venv/bin/python"),
                "manage.py",
                "start_run",
                "gamed",
                "--input",
                '{"question": "Label the parts of a plant cell"}',
                "--wait",
                "--timeout",
                "60",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        assert "output_renderer" in started.stdout
        assert "succeeded in" in started.stdout
        # A command run in another shell links to where make run serves the console.
        assert f"see http://127.0.0.1:{port}/admin/pipeline/pipelinerun/" in started.stdout

        os.killpg(console.pid, signal.SIGINT)
        console.wait(timeout=30)
    finally:
        if console.poll() is None:
            os.killpg(console.pid, signal.SIGKILL)
            console.wait()
    output = (tmp_path / "make-run.log").read_text()
    assert "Created superuser 'admin' with password:" in output
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=2)
    server = f"gamed_console.server --host 127.0.0.1 --port {port}"
    leftover = subprocess.run(["pgrep", "-f", server], capture_output=True)
    assert leftover.returncode == 1, "the web server still running after Ctrl-C"
