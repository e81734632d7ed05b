"""Terminal output shared by the management commands."""

import argparse
import getpass
import json
import os
import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.core.management.color import Style

from pipeline.exceptions import PipelineError
from pipeline.lib import format_duration, format_ms, load_json
from pipeline.models import PipelineRun, RunStatus, StageStatus, Surface
from pipeline.selectors import find_run
from pipeline.services import Actor


def add_json_arguments(parser, name: str, help: str, *, required: bool = False) -> None:
    """`--<name> JSON` or `--<name>-file PATH`, one of the two."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(f"--{name}", help=f"{help}, as JSON")
    group.add_argument(f"--{name}-file", type=Path, help=f"a file holding {help} as JSON")


def read_json_argument(options: dict, name: str) -> object | None:
    """The parsed value of `--<name>` or `--<name>-file` (None when neither was given)."""
    path = options.get(f"{name}_file")
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise CommandError(f"cannot read --{name}-file: {exc.strerror}") from None
        where = str(path)
    elif options.get(name) is not None:
        text, where = options[name], f"--{name}"
    else:
        return None
    try:
        return load_json(text)
    except ValueError as exc:
        raise CommandError(f"{where} is {exc}") from None


def status_style(style: Style, status: str):
    return {
        RunStatus.SUCCEEDED: style.SUCCESS,
        StageStatus.REUSED: style.SQL_KEYWORD,
        RunStatus.FAILED: style.ERROR,
        RunStatus.CANCELLED: style.WARNING,
        RunStatus.INTERRUPTED: style.WARNING,
    }.get(status, str)


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def watch_run(
    run: PipelineRun,
    out: OutputWrapper,
    style: Style,
    *,
    timeout: float,
    poll: float = 0.25,
) -> PipelineRun:
    """Print each stage as it starts and finishes until the run ends (or `timeout`)."""
    seen: dict[int, str] = {}
    started = time.monotonic()
    warned = False
    while True:
        run.refresh_from_db()
        for stage in run.stages.order_by("stage_order"):
            if seen.get(stage.pk) == stage.status:
                continue
            seen[stage.pk] = stage.status
            label = f"  [{stage.stage_order:>2}] {stage.stage_name:<28}"
            if stage.status == StageStatus.RUNNING:
                out.write(f"{label} started")
                continue
            detail = f"{stage.status} in {format_ms(stage.duration_ms)}"
            if stage.status == StageStatus.REUSED:
                detail = "reused from the earlier run"
            elif stage.status == StageStatus.WAITING:
                detail = "asked a question: waiting for an answer"
            elif stage.status == StageStatus.ANSWERED:
                detail = f"answered after {format_ms(stage.duration_ms)}"
            elif stage.error_message:
                detail += f": {stage.error_message}"
            out.write(f"{label} {status_style(style, stage.status)(detail)}")
        if run.is_terminal or run.is_waiting:
            break
        elapsed = time.monotonic() - started
        if run.status == RunStatus.PENDING and elapsed > 5 and not warned:
            out.write(style.WARNING("  still pending: is a worker (`manage.py qcluster`) running?"))
            warned = True
        if elapsed > timeout:
            out.write(style.WARNING(f"Stopped waiting after {timeout:.0f}s; the run goes on."))
            break
        time.sleep(poll)
    summary = f"Run {run.pk} {run.status}"
    if run.is_terminal:
        summary += f" in {format_duration(run.duration)}"
    out.write(status_style(style, run.status)(summary))
    if run.error_message:
        out.write(f"  error: {run.error_message}")
    if run.is_waiting:
        write_questions(run, out, style)
    out.write(f"  see {run.admin_url}")
    return run


def write_questions(run: PipelineRun, out: OutputWrapper, style: Style) -> None:
    for question in run.questions.filter(answered_at__isnull=True):
        out.write(style.WARNING(f"  {question.stage_name} asks: {question.text}"))
        if question.choices:
            out.write(f"    choices: {', '.join(json.dumps(c) for c in question.choices)}")
        out.write(
            f"    answer: python manage.py answer_run {run.pk} --interrupt "
            f"{question.interrupt_id} --value '<JSON>'"
        )


# `--wait` exit codes: 0 succeeded, 1 failed (or cancelled, interrupted), 3 waiting for an
# answer (distinct, so a script can tell a run that needs a person from one that broke).
WAITING_EXIT = 3


def exit_for(run: PipelineRun) -> None:
    """End a command that followed `run` with the exit code its outcome calls for."""
    if run.status == RunStatus.SUCCEEDED:
        return
    raise SystemExit(WAITING_EXIT if run.is_waiting else 1)


def count_option(high: int):
    """An argparse type for a count from 1 to `high`: larger ones are typos, and databases
    refuse a LIMIT beyond 64 bits."""

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 1 <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from 1 to {high}, got {value}")
        return value

    return count


def cli_actor() -> Actor:
    """Who ran a command, for the audit log (the OS user; commands have no Django user)."""
    try:
        label = f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        label = "cli"
    return Actor(via=Surface.CLI, label=label)


class ReadCommand(BaseCommand):
    """A command that only reads runs. It skips the system checks (they build every registered
    graph, which imports LangGraph: seconds), and it ends quietly when its reader stops reading
    (`show_run ... | head`)."""

    requires_system_checks = []

    def execute(self, *args, **options):
        try:
            result = super().execute(*args, **options)
            sys.stdout.flush()
        except BrokenPipeError:
            # As Python's docs advise for SIGPIPE: point stdout at devnull so that the flush
            # at exit cannot fail again, and exit with an error code.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1) from None
        return result


class RunActionCommand(BaseCommand):
    """A command that applies one service action to one run: parse, call, report."""

    action = None  # the service function, e.g. services.cancel_run
    wait_help = "follow the run until it ends"

    def add_arguments(self, parser):
        parser.add_argument("run_id", help="run id, or a unique prefix of it")
        parser.add_argument("--reason", default="", help="why (recorded in the audit log)")
        parser.add_argument("--wait", action="store_true", help=self.wait_help)
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait")

    def handle(self, *args, **options):
        try:
            run = type(self).action(
                run=find_run(options["run_id"]),
                actor=cli_actor(),
                reason=options["reason"],
            )
        except PipelineError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.done_message(run))
        if options["wait"] and not run.is_terminal:
            self.waited(watch_run(run, self.stdout, self.style, timeout=options["timeout"]))

    def done_message(self, run: PipelineRun) -> str:
        raise NotImplementedError

    def waited(self, run: PipelineRun) -> None:
        """What the command does with the run it followed to its end."""
        exit_for(run)
