from django.core.management.base import BaseCommand, CommandError

from pipeline import services
from pipeline.exceptions import PipelineError
from pipeline.lib import load_json
from pipeline.management.output import cli_actor, watch_run
from pipeline.models import RunStatus
from pipeline.selectors import find_run


class Command(BaseCommand):
    help = (
        "Retry a finished run from a stage: a new run resumes from the checkpoint taken just "
        "before it, so only that stage and what follows execute."
    )

    def add_arguments(self, parser):
        parser.add_argument("run_id", help="run id, or a unique prefix of it")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--from-stage", help="stage name (its latest execution in the run)")
        target.add_argument(
            "--stage-execution", type=int, help="a stage execution id (e.g. a loop's 2nd pass)"
        )
        parser.add_argument("--patch", help="JSON object set on the state before the stage runs")
        parser.add_argument("--reason", default="", help="why (recorded with the retry)")
        parser.add_argument("--dry-run", action="store_true", help="show the plan, create nothing")
        parser.add_argument("--wait", action="store_true", help="follow the new run until it ends")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait")

    def handle(self, *args, **options):
        patch = None
        if options["patch"]:
            try:
                patch = load_json(options["patch"])
            except ValueError as exc:
                raise CommandError(f"--patch is {exc}") from None
        target = {
            "from_stage": options["from_stage"],
            "stage_execution_id": options["stage_execution"],
            "state_patch": patch,
        }
        try:
            run = find_run(options["run_id"])
            if options["dry_run"]:
                self._print_plan(services.plan_retry(run=run, **target))
                return
            retry = services.retry_run(
                run=run,
                actor=cli_actor(),
                reason=options["reason"],
                **target,
            )
        except PipelineError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"Queued retry {retry.pk} of run {run.pk} from {retry.retry_from_stage} "
            f"({retry.get_resume_mode_display()}, depth {retry.retry_depth})"
        )
        if retry.resume_note:
            self.stdout.write(self.style.WARNING(f"  {retry.resume_note}"))
        if not options["wait"]:
            self.stdout.write(f"  see {retry.admin_url}")
            return
        retry = watch_run(retry, self.stdout, self.style, timeout=options["timeout"])
        if retry.status != RunStatus.SUCCEEDED:
            raise SystemExit(1)

    def _print_plan(self, plan: services.RetryPlan) -> None:
        data = plan.to_dict()
        self.stdout.write(f"Retry of run {data['run_id']} from {data['from_stage']} (dry run)")
        self.stdout.write(f"  resume mode:  {plan.resume_mode.label}")
        self.stdout.write(f"  checkpoint:   {data['checkpoint_id'] or '-'}")
        reused = ", ".join(s["stage"] for s in data["reused_stages"]) or "none"
        self.stdout.write(f"  reused:       {reused}")
        self.stdout.write(f"  will run:     {', '.join(data['will_run'])}")
        self.stdout.write(f"  retry depth:  {data['retry_depth']}")
        for key, change in data["state_diff"].items():
            self.stdout.write(f"  patch {key}: {change['before']!r} -> {change['after']!r}")
        for note in data["notes"]:
            self.stdout.write(self.style.WARNING(f"  {note}"))
        self.stdout.write("Nothing was created.")
