"""Checks that the servers the suite needs answer: `python -m tests.services PG_URL [REDIS_URL]`.

In CI (CI=true) a server that does not answer is a failure; elsewhere it is reported and the
tests that need it are skipped.
"""

import os
import sys

import psycopg
import redis


def postgres_ok(url: str) -> str | None:
    try:
        psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=3).close()
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


def redis_ok(url: str) -> str | None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        return str(exc)
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def main(argv: list[str]) -> int:
    quiet = "--quiet" in argv
    urls = [a for a in argv if a != "--quiet"]
    problems = []
    if urls and (error := postgres_ok(urls[0])):
        problems.append(f"Postgres ({urls[0]}): {error}")
    if len(urls) > 1 and (error := redis_ok(urls[1])):
        problems.append(f"Redis ({urls[1]}): {error}")
    for problem in problems:
        if not quiet:
            print(f"not reachable: {problem}", file=sys.stderr)
    if problems and in_ci() and not quiet:
        print("CI=true: a missing server is a failure.", file=sys.stderr)
        return 1
    return 1 if (problems and quiet) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
