"""Is this console able to work? For load balancers and monitors; needs no credentials."""

from datetime import timedelta

from django.db import connection
from django.db.models import Max
from django.http import HttpRequest
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule
from django_q.status import Stat
from ninja import Router, Status

from observability.schemas import HealthOut
from pipeline.checkpointer import get_checkpointer
from pipeline.forking import checkpoint_config

router = Router(tags=["health"])

# A cluster's scheduler runs due schedules every few seconds; one it ran before and that is now
# this overdue means that no cluster is running any more. A task waiting this long means that no
# worker is taking tasks.
SCHEDULE_GRACE = timedelta(minutes=2)
TASK_WAIT_GRACE = timedelta(minutes=2)


def check_database() -> tuple[bool, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return True, connection.vendor


def check_checkpointer() -> tuple[bool, str]:
    saver = get_checkpointer()
    saver.get_tuple(checkpoint_config("__health__"))
    return True, type(saver).__name__


def check_queue() -> tuple[bool, str]:
    now = timezone.now()
    clusters = [s for s in Stat.get_all() if s.status != Conf.STOPPED]
    if clusters:
        workers = sum(len(s.workers) for s in clusters)
        return True, f"{len(clusters)} cluster(s) with {workers} worker(s) reporting"
    # The ORM broker keeps cluster stats in each process's own cache, invisible here: the
    # scheduler (which runs inside every cluster) and the queue's oldest task tell instead.
    # Only schedules a cluster has run count: the ones `migrate` creates are due at once, and a
    # database nobody started a worker on yet would otherwise turn unhealthy two minutes later.
    ran = Schedule.objects.exclude(repeats=0).filter(task__isnull=False)
    overdue = ran.filter(next_run__lt=now - SCHEDULE_GRACE)
    if overdue.exists():
        latest = overdue.aggregate(last=Max("next_run"))["last"]
        return False, f"no worker seen: schedules overdue since {latest:%Y-%m-%d %H:%M:%S} UTC"
    if Conf.ORM:
        stale = OrmQ.objects.filter(lock__lt=now - TASK_WAIT_GRACE).count()
        if stale:
            return False, f"no worker seen: {stale} task(s) waiting over {TASK_WAIT_GRACE}"
    queued = get_broker().queue_size()
    return True, f"no schedule overdue, {queued} task(s) queued"


CHECKS = {"database": check_database, "checkpointer": check_checkpointer, "queue": check_queue}


@router.get("/health", auth=None, response={200: HealthOut, 503: HealthOut})
def health(request: HttpRequest, queue: bool = True):
    """Database, checkpointer and queue (workers seen recently). 200 when all pass, 503
    otherwise. `?queue=false` leaves the queue out (a web node is healthy without workers)."""
    results = {}
    for name, check in CHECKS.items():
        if name == "queue" and not queue:
            continue
        try:
            ok, detail = check()
        except Exception as exc:
            # The exception's type only: messages can carry hosts or user names.
            ok, detail = False, f"failed: {type(exc).__name__}"
        results[name] = {"ok": ok, "detail": detail}
    healthy = all(r["ok"] for r in results.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": results}
    return Status(200 if healthy else 503, body)
