"""Every operator action through a command is audited once, as the CLI and the OS user."""

import getpass
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from pipeline.models import AuditAction, AuditRecord, PipelineRun, RunStatus, Surface

pytestmark = pytest.mark.usefixtures("sync_queue")


def cli(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def only_record(action: str) -> AuditRecord:
    (record,) = AuditRecord.objects.filter(action=action)
    assert record.via == Surface.CLI
    assert record.actor is None and record.actor_label == f"cli:{getpass.getuser()}"
    return record


def test_start_retry_cancel_resume_and_rerun_commands_are_each_audited_once():
    cli(
        "start_run",
        "gamed",
        "--input",
        '{"question": "Label the parts of a plant cell", "faults": {"router": "fail_once"}}',
        "--reason",
        "nightly",
    )
    run = PipelineRun.objects.get()
    started = only_record(AuditAction.START)
    assert started.result_run == run and started.reason == "nightly"

    cli("retry_run", str(run.pk), "--from-stage", "router", "--reason", "flaky")
    retry = run.children.get()
    retried = only_record(AuditAction.RETRY)
    assert (retried.run, retried.result_run, retried.reason) == (run, retry, "flaky")
    assert retried.details["resume_mode"] == "checkpoint"

    PipelineRun.objects.filter(pk=retry.pk).update(
        status=RunStatus.INTERRUPTED, finished_at=timezone.now()
    )
    cli("cancel_run", str(retry.pk), "--reason", "not now")
    assert only_record(AuditAction.CANCEL).run == retry

    cli("resume_run", str(retry.pk), "--reason", "now")
    resumed = only_record(AuditAction.RESUME)
    assert resumed.run == retry and resumed.reason == "now"

    text = cli("rerun_run", str(run.pk), "--wait")
    rerun = run.children.exclude(pk=retry.pk).get()
    assert f"Queued run {rerun.pk}, a rerun of {run.pk}" in text
    assert rerun.status == RunStatus.SUCCEEDED and rerun.resume_mode == "full_rerun"
    assert only_record(AuditAction.RERUN).result_run == rerun
    assert AuditRecord.objects.count() == 5
