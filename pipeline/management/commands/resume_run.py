from django.core.management.base import BaseCommand, CommandError

from pipeline import services
from pipeline.exceptions import PipelineError
from pipeline.management.output import cli_actor, watch_run
from pipeline.models import Surface
from pipeline.selectors import find_run


class Command(BaseCommand):
    help = (
        "Resume an interrupted or cancelled run on its own thread from its latest checkpoint: "
        "completed stages never run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("run_id", help="run id, or a unique prefix of it")
        parser.add_argument("--reason", default="", help="why (recorded in the audit log)")
        parser.add_argument("--wait", action="store_true", help="follow the run until it ends")
        parser.add_argument("--timeout", type=float, default=3600)

    def handle(self, *args, **options):
        try:
            run = services.resume_run(
                run=find_run(options["run_id"]),
                via=Surface.CLI,
                reason=options["reason"],
                actor_label=cli_actor(),
            )
        except PipelineError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Queued run {run.pk} to resume.")
        if options["wait"]:
            run = watch_run(run, self.stdout, self.style, timeout=options["timeout"])
            if run.status != "succeeded":
                raise SystemExit(1)
