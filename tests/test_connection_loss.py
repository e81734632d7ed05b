"""Connections a worker keeps (Django's, the stage writer's, the checkpoint pool's) may die
between runs, e.g. when Postgres restarts; the next run must not pay for it."""

import time

import psycopg
import pytest
from django.db import close_old_connections, connection

from pipeline.checkpointer import close_checkpointers, get_checkpointer
from pipeline.models import RunStatus
from pipeline.services import start_run
from tests.conftest import database_url, require_postgres

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


def keepalive_settings(conn) -> dict[str, str]:
    parameters = conn.info.get_parameters()
    return {name: parameters.get(name) for name in ("keepalives_idle", "keepalives_interval")}


def test_django_and_checkpoint_connections_use_tcp_keepalives():
    # Without keepalives a peer that vanished silently (a dropped NAT entry, a failover) leaves
    # the idle socket looking healthy for the kernel's default two hours.
    require_postgres()
    connection.ensure_connection()
    expected = {"keepalives_idle": "30", "keepalives_interval": "10"}
    assert keepalive_settings(connection.connection) == expected

    with get_checkpointer().conn.connection() as conn:
        assert keepalive_settings(conn) == expected


def url_with_host_in_path() -> str:
    return database_url()


def url_with_host_in_query() -> str:
    # How a Unix socket or Cloud SQL path is often given: `postgres://user@/db?host=/path`.
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    return f"postgres://{auth}@/{db['NAME']}?host={host}&port={port}"


@pytest.mark.parametrize("base_url", [url_with_host_in_path, url_with_host_in_query])
def test_checkpoint_database_url_options_reach_the_checkpoint_connections(settings, base_url):
    require_postgres()
    url = base_url()
    settings.CHECKPOINT_DATABASE_URL = (
        f"{url}{'&' if '?' in url else '?'}application_name=gamed-checkpoints&keepalives_idle=45"
        "&server_side_binding=true"  # Django's option, not libpq's: not passed on
    )
    try:
        with get_checkpointer().conn.connection() as conn:
            parameters = conn.info.get_parameters()
            assert parameters["application_name"] == "gamed-checkpoints"
            assert parameters["keepalives_idle"] == "45"
            assert parameters["keepalives_interval"] == "10"
    finally:
        close_checkpointers()
