import json

from django.core.management.base import CommandError

from pipeline.exceptions import PipelineError
from pipeline.lib import format_duration, format_ms
from pipeline.management.output import ReadCommand, table
from pipeline.selectors import find_run, nested, run_totals


class Command(ReadCommand):
    help = "Show one run: its stages, durations, errors, checkpoint ids and model use."

    def add_arguments(self, parser):
        parser.add_argument("run_id", help="run id, or a unique prefix of it")
        parser.add_argument("--tracebacks", action="store_true", help="print full tracebacks")
        parser.add_argument("--output", action="store_true", help="print the run's final state")

    def handle(self, *args, **options):
        try:
            run = find_run(options["run_id"])
        except PipelineError as exc:
            raise CommandError(exc.message) from None
        fields = [
            ("run", str(run.pk)),
            ("graph", run.graph),
            ("status", run.status),
            ("subject", run.subject),
            ("created", run.created_at.isoformat(timespec="seconds")),
            ("duration", format_duration(run.duration)),
            ("requested", f"{run.requested_via} by {run.requested_by or '-'}"),
            ("thread", run.thread_id),
            ("worker", run.worker or "-"),
        ]
        if run.parent_run_id:
            fields += [
                ("retry of", f"{run.parent_run_id} from {run.retry_from_stage}"),
                ("retry depth", str(run.retry_depth)),
                ("resume mode", run.get_resume_mode_display()),
            ]
        stages = nested(list(run.stages.order_by("stage_order")))
        totals = run_totals(run, stages)
        if totals.reports_usage:
            fields.append(
                (
                    "model use",
                    f"{totals.model_calls} calls, {totals.total_tokens} tokens "
                    f"({totals.prompt_tokens} in, {totals.completion_tokens} out), "
                    + (f"${totals.cost_usd:.6f}" if totals.cost_usd is not None else "no price"),
                )
            )
        if run.recovered_by_id:
            when = (
                f" at {run.recovered_at.isoformat(timespec='seconds')}" if run.recovered_at else ""
            )
            fields.append(("recovered", f"by run {run.recovered_by_id}{when}"))
        if run.error_message:
            fields.append(("error", run.error_message))
        width = max(len(name) for name, _ in fields)
        for name, value in fields:
            self.stdout.write(f"{name:<{width}}  {value}")
        self.stdout.write("")
        if not stages:
            self.stdout.write("No stages recorded yet.")
        else:
            rows = [
                [
                    s.stage_order,
                    s.pk,
                    "  " * s.depth + s.stage_name,
                    s.status + (f" ({s.tries} tries)" if s.tries > 1 else ""),
                    format_ms(s.duration_ms),
                    s.parent_checkpoint_id or "-",
                    s.checkpoint_id or "-",
                    (s.error_message[:60] + "...")
                    if len(s.error_message) > 60
                    else s.error_message,
                ]
                for s in stages
            ]
            headers = ["#", "id", "stage", "status", "took", "started from", "checkpoint", "error"]
            self.stdout.write(table(rows, headers))
            self.stdout.write(
                f"\nRetry from a stage: manage.py retry_run {run.short_id} --stage-execution <id>"
            )
        if options["tracebacks"]:
            for s in stages:
                if s.error_traceback:
                    self.stdout.write(f"\n--- {s.stage_name} #{s.stage_order} ---")
                    self.stdout.write(s.error_traceback.rstrip())
        if options["output"] and run.output is not None:
            self.stdout.write("\n" + json.dumps(run.output, indent=2, sort_keys=True))
        self.stdout.write(f"\nsee {run.admin_url}")
