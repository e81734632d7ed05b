from django.core.management.base import BaseCommand, CommandError

from pipeline import services
from pipeline.exceptions import PipelineError
from pipeline.management.output import (
    add_json_arguments,
    cli_actor,
    exit_for,
    read_json_argument,
    watch_run,
)


class Command(BaseCommand):
    help = "Queue a run of a registered graph; with --wait, follow it stage by stage."

    def add_arguments(self, parser):
        parser.add_argument("graph", help="registered graph name, e.g. gamed")
        add_json_arguments(parser, "input", "the run's input", required=True)
        add_json_arguments(parser, "context", "the runtime context (the graph's context_schema)")
        parser.add_argument("--reason", default="", help="why this run is started (audited)")
        parser.add_argument("--wait", action="store_true", help="follow the run until it ends")
        parser.add_argument(
            "--timeout", type=float, default=3600, help="seconds to wait with --wait"
        )

    def handle(self, *args, **options):
        data = read_json_argument(options, "input")
        context = read_json_argument(options, "context")
        try:
            run = services.start_run(
                graph=options["graph"],
                input=data,
                context=context,
                actor=cli_actor(),
                reason=options["reason"],
            )
        except PipelineError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Queued run {run.pk} ({run.graph}): {run.subject}")
        if not options["wait"]:
            self.stdout.write(f"  see {run.admin_url}")
            return
        exit_for(watch_run(run, self.stdout, self.style, timeout=options["timeout"]))
