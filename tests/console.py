"""Users, clients and ORM-made runs for the operator console tests."""

from datetime import timedelta

from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from pipeline.graphs.gamed.state import STAGES
from pipeline.models import PipelineRun, RunStatus, StageExecution, StageStatus

GAMED_STAGES = STAGES
VIEW_PERMS = ("view_pipelinerun", "view_stageexecution", "view_auditrecord")
OPERATOR_PERMS = (
    *VIEW_PERMS,
    "start_pipelinerun",
    "retry_pipelinerun",
    "cancel_pipelinerun",
    "resume_pipelinerun",
    "answer_pipelinerun",
)


def staff_user(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password="pw-" + username, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="pipeline", codename__in=codenames)
    )
    return user


def login(user: User, **client_kwargs) -> Client:
    client = Client(**client_kwargs)
    client.force_login(user)
    return client


def make_run(
    *,
    status: str = RunStatus.SUCCEEDED,
    stages: int = 8,
    failed_at: int | None = None,
    graph: str = "gamed",
    subject: str = "Label the parts of a plant cell",
    **fields,
) -> PipelineRun:
    """A run and its stage rows written directly, as the runner would have left them."""
    start = fields.pop("started_at", timezone.now() - timedelta(minutes=5))
    run = PipelineRun.objects.create(
        graph=graph,
        status=status,
        subject=subject,
        input={"question": subject},
        started_at=start,
        finished_at=None if status in (RunStatus.PENDING, RunStatus.RUNNING) else start,
        **fields,
    )
    rows = []
    for order in range(1, stages + 1):
        name = GAMED_STAGES[(order - 1) % len(GAMED_STAGES)]
        began = start + timedelta(milliseconds=100 * order)
        stage_status = StageStatus.SUCCEEDED
        if failed_at is not None and order == failed_at:
            stage_status = StageStatus.FAILED
        rows.append(
            StageExecution(
                run=run,
                stage_name=name,
                stage_order=order,
                status=stage_status,
                started_at=began,
                finished_at=began + timedelta(milliseconds=80),
                duration_ms=80,
                input_snapshot={"question": subject, "step": order - 1},
                output_snapshot={"step": order},
                checkpoint_id=f"cp-{order}",
                parent_checkpoint_id=f"cp-{order - 1}",
                error_message="InjectedFault: boom" if stage_status == StageStatus.FAILED else "",
                error_traceback="Traceback (most recent call last):\n  boom"
                if stage_status == StageStatus.FAILED
                else "",
            )
        )
        if stage_status == StageStatus.FAILED:
            break
    StageExecution.objects.bulk_create(rows)
    if rows and run.is_terminal:
        PipelineRun.objects.filter(pk=run.pk).update(finished_at=rows[-1].finished_at)
        run.refresh_from_db()
    return run
