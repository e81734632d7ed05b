"""One LangGraph checkpoint saver per process: SQLite by default, Postgres in production.

The saver is created lazily and cached per process id: django-q2 forks its workers, and a
connection (or pool) opened before the fork must never be shared by the children. Graphs with
async nodes need LangGraph's async savers: a process that runs one also keeps one async saver,
on its event loop (`pipeline.aio`), over the same tables.

LangGraph (and psycopg's pools) are imported when a saver is first opened: commands that only
read runs never load them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import TYPE_CHECKING

import dj_database_url
from django.conf import settings
from django.db import connections

from pipeline import aio
from pipeline.lib import has_input

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

_lock = threading.Lock()
_savers: dict[tuple[int, str, str], BaseCheckpointSaver] = {}
_closers: dict[tuple[int, str, str], object] = {}


def checkpoint_database() -> dict:
    """Django-style settings of the checkpoint database (defaults to Django's own)."""
    if settings.CHECKPOINT_DATABASE_URL:
        return dj_database_url.parse(settings.CHECKPOINT_DATABASE_URL)
    return connections["default"].settings_dict


# Postgres OPTIONS that Django or psycopg take for themselves; every other option is a libpq
# connection parameter, which the checkpoint connections get too.
NOT_LIBPQ_OPTIONS = {
    "assume_role",
    "isolation_level",
    "pool",
    "server_side_binding",
    "autocommit",
    "context",
    "cursor_factory",
    "prepare_threshold",
    "row_factory",
}


def _key(db: dict) -> str:
    """The checkpoint connections' conninfo: the database's URL with its options (`sslmode`,
    `connect_timeout`, a socket `host`, ...) and TCP keepalives unless the URL sets its own.
    As in Django's backend, the URL's own user, password, host and port win over options."""
    if "sqlite" in db["ENGINE"]:
        return f"sqlite:{db['NAME']}"
    params = {**settings.POSTGRES_KEEPALIVES}
    params.update(
        (name, value)
        for name, value in db.get("OPTIONS", {}).items()
        if name not in NOT_LIBPQ_OPTIONS
    )
    fields = {"dbname": "NAME", "user": "USER", "password": "PASSWORD", "host": "HOST"}
    params.update((name, db[key]) for name, key in fields.items() if db.get(key))
    if db.get("PORT"):
        params["port"] = str(db["PORT"])
    from psycopg.conninfo import make_conninfo

    return make_conninfo(**params)


def is_postgres() -> bool:
    return "postgres" in checkpoint_database()["ENGINE"]


def _pool_options() -> dict:
    from psycopg.rows import dict_row

    return {
        "min_size": 1,
        "max_size": settings.CHECKPOINT_POOL_SIZE,
        "kwargs": {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        "name": "gamed-checkpoints",
    }


SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


def _open(db: dict, key: str) -> tuple[BaseCheckpointSaver, object]:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from psycopg_pool import ConnectionPool

    if "sqlite" in db["ENGINE"]:
        conn = sqlite3.connect(
            db["NAME"], check_same_thread=False, timeout=settings.SQLITE_BUSY_TIMEOUT_SECONDS
        )
        for pragma in SQLITE_PRAGMAS:
            conn.execute(pragma)
        return SqliteSaver(conn), conn
    # A connection broken by a database restart is replaced instead of handed out.
    pool = ConnectionPool(key, **_pool_options(), check=check_idle_connection, open=True)
    return PostgresSaver(pool), pool


async def _open_async(db: dict, key: str) -> tuple[BaseCheckpointSaver, object]:
    import aiosqlite
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from psycopg_pool import AsyncConnectionPool

    if "sqlite" in db["ENGINE"]:
        conn = await aiosqlite.connect(db["NAME"], timeout=settings.SQLITE_BUSY_TIMEOUT_SECONDS)
        for pragma in SQLITE_PRAGMAS:
            await conn.execute(pragma)
        return AsyncSqliteSaver(conn), conn
    pool = AsyncConnectionPool(
        key, **_pool_options(), check=check_idle_connection_async, open=False
    )
    await pool.open()
    return AsyncPostgresSaver(pool), pool


def check_idle_connection(conn) -> None:
    """The pool's check before it hands out a connection, without a round trip per checkpoint.

    An idle connection has nothing to read unless the server wrote to it, which it does when it
    closes the session (a restart, `pg_terminate_backend`): only then is the connection really
    checked, and the pool replaces it if the check fails.
    """
    import psycopg
    from psycopg_pool import ConnectionPool

    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    if has_input(conn.fileno()):
        ConnectionPool.check_connection(conn)


async def check_idle_connection_async(conn) -> None:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    if has_input(conn.fileno()):
        await AsyncConnectionPool.check_connection(conn)


def _saver(mode: str, open_saver) -> BaseCheckpointSaver:
    db = checkpoint_database()
    cache_key = (os.getpid(), _key(db), mode)
    saver = _savers.get(cache_key)
    if saver is not None:
        return saver
    with _lock:
        saver = _savers.get(cache_key)
        if saver is None:
            saver, resource = open_saver(db, cache_key[1])
            _savers[cache_key] = saver
            _closers[cache_key] = resource
    return saver


def get_checkpointer() -> BaseCheckpointSaver:
    return _saver("sync", _open)


def get_async_checkpointer() -> BaseCheckpointSaver:
    """The async saver, on the process's event loop: use it only from that loop."""
    return _saver("async", lambda db, key: aio.run(_open_async(db, key)))


def close_checkpointers() -> None:
    """Close this process's savers (tests and benchmarks switch databases)."""
    with _lock:
        pid = os.getpid()
        for cache_key in [k for k in _savers if k[0] == pid]:
            _savers.pop(cache_key)
            resource = _closers.pop(cache_key)
            if cache_key[2] == "async":
                aio.run(resource.close())
            else:
                resource.close()


def setup_checkpointer() -> None:
    """Create or upgrade the checkpointer's own tables (called by a migration)."""
    get_checkpointer().setup()
