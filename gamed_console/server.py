"""`manage.py serve` runs this in a fresh process: uvicorn serving the ASGI app, with the web
process's settings (a bounded pool of database connections) and the console's logging."""

import argparse
import os

import uvicorn

# Open event streams get this long to end when the server stops; their clients reconnect.
STREAMS_CLOSE_SECONDS = 3


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gamed_console.settings")
    os.environ["GAMED_PROCESS"] = "web"
    parser = argparse.ArgumentParser(prog="python -m gamed_console.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    uvicorn.run(
        "gamed_console.asgi:application",
        host=args.host,
        port=args.port,
        workers=args.workers,
        lifespan="off",  # Django has no lifespan events
        log_config=None,  # Django's LOGGING (GAMED_LOG_FORMAT) formats uvicorn's records too
        log_level=os.environ.get("GAMED_LOG_LEVEL", "INFO").lower(),
        timeout_graceful_shutdown=STREAMS_CLOSE_SECONDS,
    )


if __name__ == "__main__":
    main()
