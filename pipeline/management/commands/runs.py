from django.core.management.base import CommandError

from pipeline.graphs import registered_graphs
from pipeline.lib import format_duration
from pipeline.management.output import ReadCommand, count_option, table
from pipeline.models import RunStatus
from pipeline.selectors import console_runs


class Command(ReadCommand):
    help = "List recent runs, newest first."

    def add_arguments(self, parser):
        parser.add_argument("--status", choices=RunStatus.values)
        parser.add_argument("--graph")
        parser.add_argument(
            "--unrecovered",
            action="store_true",
            help="only failed runs no later run of their lineage recovered",
        )
        parser.add_argument(
            "--limit", type=count_option(10_000), default=20, help="how many runs (default 20)"
        )

    def handle(self, *args, **options):
        if options["graph"] and options["graph"] not in registered_graphs():
            raise CommandError(
                f"Unknown graph {options['graph']!r}. Registered: {', '.join(registered_graphs())}"
            )
        runs = console_runs().order_by("-created_at")
        if options["status"]:
            runs = runs.filter(status=options["status"])
        if options["graph"]:
            runs = runs.filter(graph=options["graph"])
        if options["unrecovered"]:
            runs = runs.unrecovered_failures()
        rows = [
            [
                run.short_id,
                run.graph,
                run.status,
                f"{run.stages_done}/{run.stage_count}",
                run.failed_stage or "-",
                run.retry_depth,
                run.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                format_duration(run.duration),
                str(run.recovered_by_id)[:8] if run.recovered_by_id else "-",
                (run.subject[:47] + "...") if len(run.subject) > 50 else run.subject,
            ]
            for run in runs[: options["limit"]]
        ]
        if not rows:
            self.stdout.write(self.nothing_found(options))
            return
        headers = ["id", "graph", "status", "stages", "failed at", "depth", "created", "took"]
        self.stdout.write(table(rows, [*headers, "recovered by", "subject"]))

    def nothing_found(self, options: dict) -> str:
        """Say what matched nothing: an empty console and an empty filter are different news."""
        if not (options["status"] or options["graph"] or options["unrecovered"]):
            return "No runs yet. Start one with: manage.py start_run gamed --input ..."
        words = ["No"]
        if options["status"]:
            words.append(options["status"])
        if options["unrecovered"]:
            words.append("unrecovered failed")
        words.append("runs")
        if options["graph"]:
            words.append(f"of graph {options['graph']}")
        return " ".join(words) + "."
