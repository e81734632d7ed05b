from django.core.management.base import BaseCommand

from pipeline import services


class Command(BaseCommand):
    help = (
        "Mark runs whose worker stopped renewing its lease as interrupted, and queue interrupted "
        "runs to resume (GAMED_AUTO_RESUME, up to GAMED_MAX_AUTO_RESUMES times per run); answer "
        "or cancel waiting runs past their answer deadline. The same job runs every minute from "
        "the queue's scheduler."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-resume", action="store_true", help="only mark stale runs interrupted"
        )

    def handle(self, *args, **options):
        touched = services.reap_runs(auto_resume=False if options["no_resume"] else None)
        for run in touched:
            run.refresh_from_db()
            self.stdout.write(f"{run.pk}  {run.status}  {run.error_message}")
        self.stdout.write(f"{len(touched)} run(s) interrupted or queued to resume.")
        expired = services.expire_waiting_runs()
        for run in expired:
            run.refresh_from_db()
            self.stdout.write(f"{run.pk}  {run.status}  (past its answer deadline)")
        if expired:
            self.stdout.write(f"{len(expired)} waiting run(s) past their answer deadline.")
