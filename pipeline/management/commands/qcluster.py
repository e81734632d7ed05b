from django_q.management.commands import qcluster

from pipeline import shutdown


class Command(qcluster.Command):
    help = (
        "Start a django-q2 cluster of GAMED_WORKERS workers. SIGTERM or SIGINT, to it or to its "
        "process group, stops it within GAMED_SHUTDOWN_SECONDS: runs in progress end "
        "interrupted and are queued to resume on another worker."
    )

    def handle(self, *args, **options):
        shutdown.hold_termination()
        try:
            super().handle(*args, **options)
        finally:
            shutdown.stop_cluster_on_termination()
