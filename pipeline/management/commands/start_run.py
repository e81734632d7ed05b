from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from pipeline import services
from pipeline.exceptions import PipelineError
from pipeline.lib import load_json
from pipeline.management.output import cli_actor, watch_run
from pipeline.models import RunStatus


class Command(BaseCommand):
    help = "Queue a run of a registered graph; with --wait, follow it stage by stage."

    def add_arguments(self, parser):
        parser.add_argument("graph", help="registered graph name, e.g. gamed")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--input", help="the run's input as a JSON object")
        source.add_argument("--input-file", type=Path, help="a file holding the JSON input")
        parser.add_argument("--reason", default="", help="why this run is started (audited)")
        parser.add_argument("--wait", action="store_true", help="follow the run until it ends")
        parser.add_argument(
            "--timeout", type=float, default=3600, help="seconds to wait with --wait"
        )

    def handle(self, *args, **options):
        data = self._read_input(options)
        try:
            run = services.start_run(
                graph=options["graph"],
                input=data,
                actor=cli_actor(),
                reason=options["reason"],
            )
        except PipelineError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Queued run {run.pk} ({run.graph}): {run.subject}")
        if not options["wait"]:
            self.stdout.write(f"  see {run.admin_url}")
            return
        run = watch_run(run, self.stdout, self.style, timeout=options["timeout"])
        if run.status != RunStatus.SUCCEEDED:
            raise SystemExit(1)

    def _read_input(self, options) -> dict:
        if options["input_file"]:
            try:
                text = options["input_file"].read_text()
            except OSError as exc:
                raise CommandError(f"cannot read --input-file: {exc.strerror}") from None
            where = str(options["input_file"])
        else:
            text, where = options["input"], "--input"
        try:
            return load_json(text)
        except ValueError as exc:
            raise CommandError(f"{where} is {exc}") from None
