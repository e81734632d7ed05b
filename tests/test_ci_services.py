"""`make test` treats a missing Postgres or Redis as a failure in CI and as a skip elsewhere."""

import os
import subprocess
import sys

from tests.conftest import ROOT

UNREACHABLE_PG = "postgres://postgres@127.0.0.1:1/gamed"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def check(*urls: str, ci: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "true" if ci else ""}
    return subprocess.run(
        [sys.executable, "-m", "tests.services", *urls],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_missing_postgres_fails_the_check_in_ci():
    result = check(UNREACHABLE_PG, ci=True)
    assert result.returncode == 1
    assert "Postgres" in result.stderr and "CI=true" in result.stderr


def test_missing_redis_fails_the_check_in_ci():
    pg = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gamed")
    result = check(pg if pg.startswith("postgres") else UNREACHABLE_PG, UNREACHABLE_REDIS, ci=True)
    assert result.returncode == 1
    assert "Redis" in result.stderr


def test_missing_postgres_only_warns_outside_ci():
    result = check(UNREACHABLE_PG, ci=False)
    assert result.returncode == 0
    assert "not reachable" in result.stderr
