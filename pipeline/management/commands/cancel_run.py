from django.core.management.base import BaseCommand, CommandError

from pipeline import services
from pipeline.exceptions import PipelineError
from pipeline.management.output import cli_actor, watch_run
from pipeline.models import Surface
from pipeline.selectors import find_run


class Command(BaseCommand):
    help = (
        "Cancel a run: a pending run never starts; a running run stops at its next stage "
        "boundary and ends cancelled (it can be resumed or retried later)."
    )

    def add_arguments(self, parser):
        parser.add_argument("run_id", help="run id, or a unique prefix of it")
        parser.add_argument("--reason", default="", help="why (recorded in the audit log)")
        parser.add_argument("--wait", action="store_true", help="wait until the run has stopped")
        parser.add_argument("--timeout", type=float, default=600)

    def handle(self, *args, **options):
        try:
            run = services.cancel_run(
                run=find_run(options["run_id"]),
                via=Surface.CLI,
                reason=options["reason"],
                actor_label=cli_actor(),
            )
        except PipelineError as exc:
            raise CommandError(exc.message) from None
        if run.status == "cancelled":
            self.stdout.write(f"Run {run.pk} cancelled.")
        else:
            self.stdout.write(f"Run {run.pk} will stop at its next stage boundary.")
            if options["wait"]:
                watch_run(run, self.stdout, self.style, timeout=options["timeout"])
