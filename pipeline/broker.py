"""django-q2's ORM broker, handing out and acknowledging each task in one statement.

The stock ORM broker finds ready tasks with one query and locks each with a second (an UPDATE
that does nothing when another cluster locked it first), takes them in no particular order,
and deletes an acknowledged task through a queryset and Django's deletion collector. Every run
pays for that twice in the pusher and once in the monitor. This broker hands out the oldest
ready tasks in one UPDATE ... RETURNING that skips rows another cluster is locking right now
(Postgres; SQLite locks the whole database for the statement), so tasks go out in the order
they were queued, and deletes by primary key in one statement. Everything else
(enqueue, redelivery after `retry` seconds, queue sizes) is the stock broker's. Selected with
`Q_CLUSTER["broker_class"]` when no `REDIS_URL` is set.
"""

import functools
from time import sleep

from django.db import connections
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ


@functools.cache
def _statements(alias: str) -> tuple[str, str]:
    """The hand-out (parameters: key, now, how many, locked until) and the acknowledgement.
    The ready tasks are chosen once, in a materialized CTE: a
    subquery in the UPDATE's WHERE could be run again and hand out more than asked for."""
    conn = connections[alias]
    quote = conn.ops.quote_name
    table = quote(OrmQ._meta.db_table)
    pk, key, lock, payload = (
        quote(OrmQ._meta.get_field(name).column) for name in ("id", "key", "lock", "payload")
    )
    skip_locked = (
        " FOR UPDATE SKIP LOCKED" if conn.features.has_select_for_update_skip_locked else ""
    )
    dequeue = (
        f"WITH ready AS MATERIALIZED (SELECT {pk} FROM {table} WHERE {key} = %s AND {lock} < %s "
        f"ORDER BY {pk} LIMIT %s{skip_locked}) "
        f"UPDATE {table} SET {lock} = %s WHERE {pk} IN (SELECT {pk} FROM ready) "
        f"RETURNING {pk}, {payload}"
    )
    delete = f"DELETE FROM {table} WHERE {pk} = %s"
    return dequeue, delete


class OrmBroker(ORM):
    def dequeue(self):
        queue = self.get_connection()  # as the stock broker: drops an unusable connection
        conn = connections[Conf.ORM]
        now = timezone.now()
        # SQLite locks the whole database for an UPDATE: only write when there is work.
        if conn.vendor != "sqlite" or queue.filter(key=self.list_key, lock__lt=now).exists():
            lock = OrmQ._meta.get_field("lock")
            params = [
                self.list_key,
                lock.get_db_prep_value(now, conn),
                Conf.BULK,
                lock.get_db_prep_value(self.timeout(None), conn),
            ]
            with conn.cursor() as cursor:
                cursor.execute(_statements(conn.alias)[0], params)
                tasks = cursor.fetchall()
            if tasks:
                return sorted(tasks)  # RETURNING gives no order; oldest first
        # empty queue, spare the cpu
        sleep(Conf.POLL)

    def delete(self, task_id):
        self.get_connection()
        conn = connections[Conf.ORM]
        with conn.cursor() as cursor:
            cursor.execute(_statements(conn.alias)[1], [task_id])
