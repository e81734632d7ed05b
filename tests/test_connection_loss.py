"""Connections a worker keeps (Django's, the stage writer's, the checkpoint pool's) may die
between runs, e.g. when Postgres restarts; the next run must not pay for it."""

import time

import psycopg
import pytest
from django.db import close_old_connections, connection

from pipeline.models import RunStatus
from pipeline.services import start_run
from tests.conftest import require_postgres

pytestmark = pytest.mark.usefixtures("sync_queue")
PLANT = {"question": "Label the parts of a plant cell"}


def run_once():
    run = start_run(graph="gamed", input=PLANT)
    run.refresh_from_db()
    return run


def test_next_run_succeeds_after_the_database_dropped_every_other_connection():
    require_postgres()
    assert run_once().status == RunStatus.SUCCEEDED

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 2, "the writer and the checkpoint pool were connected"

    run = run_once()
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.stages.count() == 8


def other_connection() -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"], autocommit=True
    )


def test_a_kept_connection_is_reused_without_a_round_trip_while_the_server_said_nothing():
    # django-q2 closes obsolete connections before every task; with CONN_HEALTH_CHECKS the
    # next query would first send SELECT 1. An idle socket with nothing to read needs none.
    require_postgres()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'last statement before the health check'")
    pid = connection.connection.info.backend_pid

    close_old_connections()
    with connection.cursor():  # a new cursor runs the health check
        pass

    with other_connection() as other:
        (last,) = other.execute(
            "SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchone()
    assert last == "SELECT 'last statement before the health check'"
    assert connection.connection.info.backend_pid == pid


def test_a_kept_connection_the_server_ended_is_replaced_before_the_next_query():
    require_postgres()
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    with other_connection() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, "the backend did not end"
            time.sleep(0.05)

    close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid
