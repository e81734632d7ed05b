import os
import sys

from django.core.management.base import BaseCommand, CommandError

from pipeline.management.output import count_option


class Command(BaseCommand):
    help = (
        "Serve the console (admin, API, metrics) with uvicorn, an ASGI server: event streams "
        "hold no thread and no database connection while they wait. SIGTERM stops it."
    )
    requires_system_checks = []  # the server process runs them

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="host:port to serve on")
        parser.add_argument(
            "--workers",
            type=count_option(64),
            default=1,
            help="server processes (default 1); each holds at most GAMED_DB_POOL_SIZE "
            "Postgres connections",
        )

    def handle(self, *args, addr: str, workers: int, **options):
        host, colon, port = addr.rpartition(":")
        if not (colon and port.isdigit() and 0 < int(port) < 65536):
            raise CommandError(f"--addr must be host:port, got {addr!r}")
        # A fresh process: this one read the settings as a command, not as the web server.
        host = host.strip("[]") or "127.0.0.1"
        server = [sys.executable, "-m", "gamed_console.server", "--host", host, "--port", port]
        os.execv(sys.executable, [*server, "--workers", str(workers)])
