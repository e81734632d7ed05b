"""Django's Postgres backend, with a cheaper connection health check.

Workers keep their connections (`CONN_MAX_AGE`) and django-q2 closes obsolete ones before every
task, so with `CONN_HEALTH_CHECKS` Django sends `SELECT 1` before each task's first query. An
idle connection has nothing to read unless the server wrote to it, which it does when it ends
the session (a restart, `pg_terminate_backend`): only then is the connection really checked.
"""

from django.db.backends.postgresql import base

from pipeline.lib import has_input


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        if self.connection is None or self.connection.closed:
            return False
        if not has_input(self.connection.fileno()):
            return True
        return super().is_usable()
