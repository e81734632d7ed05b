import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web console and one queue worker together; Ctrl-C stops both."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="host:port to serve on")

    def handle(self, *args, **options):
        python = [sys.executable, sys.argv[0]]
        # The server serves admin's CSS and JS itself (the local default); production runs
        # collectstatic behind a proxy instead.
        env = dict(os.environ)
        if not env.get("GAMED_BASE_URL"):
            # Links printed by commands run in other shells, and returned by the API, point here.
            env["GAMED_BASE_URL"] = f"http://{options['addr']}"
            settings.CONSOLE_URL_FILE.write_text(env["GAMED_BASE_URL"] + "\n")
        web_env = {**env, "GAMED_SERVE_STATIC": "true"}
        children = [
            subprocess.Popen([*python, "qcluster"], env=env),
            subprocess.Popen([*python, "serve", "--addr", options["addr"]], env=web_env),
        ]
        self.stdout.write(
            f"Console on http://{options['addr']}/admin/ with a {settings.GAMED_WORKERS}-process "
            "worker. Ctrl-C stops both."
        )
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and all(child.poll() is None for child in children):
                time.sleep(0.2)
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + settings.GAMED_SHUTDOWN_SECONDS + 5
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        failed = [c.args[2] for c in children if c.returncode not in (0, -signal.SIGTERM)]
        if failed and not stopping:
            self.stderr.write(f"{', '.join(failed)} exited unexpectedly; console stopped.")
            sys.exit(1)
