"""Makes the README's screenshot: the page of a retry that recovered a failed GamED run.

It starts the console as `make run` does (`manage.py console`, with fault injection) on a fresh
SQLite database in a temporary directory, fails a run at `scene_generator`, retries it from
there, and photographs the retry's page with Debian's Chromium (Playwright never downloads a
browser). Nothing it loads comes from the internet.

    .venv/bin/python docs/screenshots.py [--out docs/img/run-page.png]
"""

import argparse
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
QUESTION = "Label the parts of a plant cell"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict, *args: str, ok=(0,)) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode not in ok:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def wait_for(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    sys.exit(f"{url} did not answer in {timeout:.0f}s")


def photograph(url: str, base: str, password: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_url(f"{base}/admin/")
        page.goto(url)
        page.wait_for_selector("#timeline-module")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=out)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/img/run-page.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gamed-screenshots-") as tmp:
        port = free_port()
        password = secrets.token_urlsafe(12)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DATABASE_URL", "CHECKPOINT_DATABASE_URL", "REDIS_URL", "GAMED_BASE_URL"}
        }
        env.update(
            GAMED_VAR_DIR=tmp,
            GAMED_FAULT_INJECTION="true",
            DJANGO_SUPERUSER_PASSWORD=password,
            PYTHONUNBUFFERED="1",
        )
        manage(env, "migrate", "--no-input")
        manage(env, "createsuperuser", "--no-input", "--username", "admin", "--email", "")
        console = subprocess.Popen(
            [sys.executable, "manage.py", "console", "--addr", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/admin/login/")
            faults = '{"scene_generator": "fail_once"}'
            started = manage(
                env,
                "start_run",
                "gamed",
                "--wait",
                "--input",
                f'{{"question": "{QUESTION}", "faults": {faults}}}',
                ok=(1,),
            )
            failed = re.search(r"Queued run ([0-9a-f-]{36})", started).group(1)
            retried = manage(
                env,
                "retry_run",
                failed,
                "--from-stage",
                "scene_generator",
                "--reason",
                "scene model hiccup",
                "--wait",
            )
            retry = re.search(r"Queued retry ([0-9a-f-]{36})", retried).group(1)
            photograph(
                f"{base}/admin/pipeline/pipelinerun/{retry}/change/", base, password, args.out
            )
        finally:
            os.killpg(console.pid, signal.SIGINT)
            console.wait(timeout=60)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
