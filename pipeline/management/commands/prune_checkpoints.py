from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pipeline import services
from pipeline.lib import parse_duration
from pipeline.management.output import count_option


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class Command(BaseCommand):
    help = (
        "Delete the LangGraph checkpoints of finished runs older than the retention window "
        "(GAMED_CHECKPOINT_RETENTION, default 30d). Runs and stages stay; a retry of a pruned "
        "run falls back to a full rerun. Runs whose retry chain is still active are kept."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", help="e.g. 30d, 12h, 90m (default GAMED_CHECKPOINT_RETENTION)"
        )
        parser.add_argument("--dry-run", action="store_true", help="report, delete nothing")
        parser.add_argument(
            "--batch-size", type=count_option(10_000), default=100, help="runs per batch"
        )

    def handle(self, *args, **options):
        seconds = settings.GAMED_CHECKPOINT_RETENTION_SECONDS
        if options["older_than"]:
            try:
                seconds = parse_duration(options["older_than"])
            except ValueError as exc:
                raise CommandError(f"--older-than: {exc}") from None
        verb = "would remove" if options["dry_run"] else "removed"

        def progress(report):
            self.stdout.write(
                f"  ... {report.runs} run(s), {sum(report.rows.values())} row(s) so far"
            )

        report = services.prune_checkpoints(
            older_than=timedelta(seconds=seconds),
            dry_run=options["dry_run"],
            batch_size=options["batch_size"],
            progress=progress,
        )
        rows = ", ".join(f"{table} {n}" for table, n in report.rows.items()) or "none"
        self.stdout.write(
            f"Checkpoints of {report.runs} finished run(s) older than {timedelta(seconds=seconds)} "
            f"{verb}: {sum(report.rows.values())} row(s) ({rows}), {human_bytes(report.bytes)}."
        )
