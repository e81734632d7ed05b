"""`manage.py check` says what this machine lacks before a worker fails on it."""

import sqlite3

from django.db import connection

from pipeline.checks import sqlite_supports_returning


def test_check_refuses_a_sqlite_without_returning(monkeypatch):
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")

    errors = sqlite_supports_returning()

    if connection.vendor == "sqlite":
        assert [e.id for e in errors] == ["pipeline.E001"]
        assert "SQLite 3.34.1 is too old" in errors[0].msg
    else:  # Postgres does not depend on the SQLite library
        assert errors == []


def test_check_passes_on_this_machine():
    assert sqlite_supports_returning() == []
