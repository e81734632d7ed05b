from django.core.management.base import BaseCommand, CommandError

from pipeline import services
from pipeline.exceptions import PipelineError
from pipeline.management.output import (
    add_json_arguments,
    cli_actor,
    exit_for,
    read_json_argument,
    watch_run,
    write_questions,
)
from pipeline.selectors import find_run


class Command(BaseCommand):
    help = (
        "Answer a question a waiting run asks (interrupt() in a node). Once every question is "
        "answered the run continues; with --wait, follow it (exit 0 succeeded, 1 failed, "
        "3 waiting again)."
    )

    def add_arguments(self, parser):
        parser.add_argument("run_id", help="run id, or a unique prefix of it")
        add_json_arguments(
            parser, "value", "the answer (any JSON: a quoted string, an object)", required=True
        )
        parser.add_argument("--interrupt", help="the question's interrupt id, when it asks several")
        parser.add_argument("--reason", default="", help="why (recorded in the audit log)")
        parser.add_argument("--wait", action="store_true", help="follow the run until it ends")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait")

    def handle(self, *args, **options):
        value = read_json_argument(options, "value")
        try:
            run = services.answer_run(
                run=find_run(options["run_id"]),
                value=value,
                interrupt_id=options["interrupt"],
                actor=cli_actor(),
                reason=options["reason"],
            )
        except PipelineError as exc:
            raise CommandError(exc.message) from None
        if run.is_waiting:
            self.stdout.write(f"Answered; run {run.pk} still waits for:")
            write_questions(run, self.stdout, self.style)
            if options["wait"]:
                exit_for(run)
            return
        self.stdout.write(f"Answered; run {run.pk} continues.")
        if options["wait"]:
            exit_for(watch_run(run, self.stdout, self.style, timeout=options["timeout"]))
