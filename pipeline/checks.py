"""System checks `manage.py check` (and every command) runs."""

import sqlite3

from django.core.checks import Error, register
from django.db import connections

RETURNING_SQLITE = (3, 35, 0)


@register()
def sqlite_supports_returning(app_configs=None, databases=None, **kwargs) -> list[Error]:
    """A worker claims a run with UPDATE ... RETURNING, which SQLite has since 3.35."""
    if connections["default"].vendor != "sqlite" or sqlite3.sqlite_version_info >= RETURNING_SQLITE:
        return []
    return [
        Error(
            f"SQLite {sqlite3.sqlite_version} is too old: gamed-console needs SQLite 3.35 or "
            "later (workers claim runs with UPDATE ... RETURNING).",
            hint="Use a Python linked against a newer SQLite, or Postgres (DATABASE_URL).",
            id="pipeline.E001",
        )
    ]
