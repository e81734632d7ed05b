"""django-q2's ORM broker, handing tasks out oldest first.

The stock ORM broker takes ready tasks in no particular order: after a redelivery, a run queued
later can start before one queued earlier. This one takes the oldest ready tasks, and on
Postgres skips the rows another cluster's pusher is taking at the same moment. Everything else
(enqueue, redelivery after `retry` seconds, acknowledgement, queue sizes) is the stock broker's.
Selected with `Q_CLUSTER["broker_class"]` when no `REDIS_URL` is set.
"""

from time import sleep

from django.db import transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ


class OrmBroker(ORM):
    def dequeue(self):
        ready = self.get_connection().filter(key=self.list_key, lock__lt=timezone.now())
        # SQLite locks the whole database for a write transaction: only take one for work.
        if ready.exists():
            with transaction.atomic(using=Conf.ORM):
                tasks = list(
                    ready.select_for_update(skip_locked=True)
                    .order_by("id")
                    .values_list("id", "payload")[: Conf.BULK]
                )
                if tasks:
                    ids = [task_id for task_id, _ in tasks]
                    OrmQ.objects.using(Conf.ORM).filter(pk__in=ids).update(lock=self.timeout(None))
                    return tasks
        # empty queue, spare the cpu
        sleep(Conf.POLL)
