"""A worker keeps a bounded number of database connections, whatever its graphs do."""

import pytest
from django.db import connection

from pipeline.models import RunStatus
from pipeline.services import start_run
from tests.conftest import require_postgres

pytestmark = pytest.mark.usefixtures("sync_queue")


def test_nodes_run_in_langgraphs_thread_pool_do_not_leave_connections_open():
    require_postgres()
    # Streaming a graph with subgraphs runs each node in a thread of LangGraph's pool; a node
    # that reads the database opens a connection in it. (A first run opens the connections a
    # worker keeps: the checkpoint pool's and the stage-row writer's.)
    start_run(graph="docs_subgraph", input={})
    before = open_connections()

    runs = [start_run(graph="docs_orm_subgraph", input={}) for _ in range(3)]

    for run in runs:
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert open_connections() == before


def open_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]
