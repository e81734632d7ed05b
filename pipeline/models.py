import json
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Case, Exists, OuterRef, Q, Subquery, When
from django.urls import reverse
from django.utils import timezone


class RunStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    WAITING = "waiting"


# The run's state machine. Every operation accepts the statuses listed here, and services,
# the runner, admin and the API ask these sets (through RunQuerySet and PipelineRun's
# properties) instead of naming statuses themselves.
#
#   pending -> running -> succeeded | failed | cancelled | interrupted | waiting
#   interrupted -> running (a worker takes it over) | pending (resume) | cancelled
#   waiting -> pending (answered) | cancelled
#   cancelled -> pending (resume)
TERMINAL_RUN_STATUSES = (
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    RunStatus.INTERRUPTED,
)
ACTIVE_RUN_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING)
# A worker may start the run, or continue it after an interruption.
CLAIMABLE_RUN_STATUSES = (RunStatus.PENDING, RunStatus.INTERRUPTED)
# No worker holds the run: a cancel ends it at once (a running run stops at its next boundary).
STOPPED_BY_CANCEL = (RunStatus.PENDING, RunStatus.INTERRUPTED, RunStatus.WAITING)
CANCELLABLE_RUN_STATUSES = (*STOPPED_BY_CANCEL, RunStatus.RUNNING)
RESUMABLE_RUN_STATUSES = (RunStatus.INTERRUPTED, RunStatus.CANCELLED)
# Retries and reruns start from a run that no longer executes; they never change it.
RETRYABLE_RUN_STATUSES = TERMINAL_RUN_STATUSES
# A run in one of these, or in the retry chain of one, keeps its checkpoints (retention).
CHECKPOINTS_KEPT_STATUSES = (*ACTIVE_RUN_STATUSES, RunStatus.INTERRUPTED, RunStatus.WAITING)
# Statuses a run keeps for good: counters of them only ever grow.
FINAL_RUN_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED)


class StageStatus(models.TextChoices):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    REUSED = "reused"
    # It called interrupt(): the run waits for an operator's answer, then runs it again.
    WAITING = "waiting"
    ANSWERED = "answered"


class Surface(models.TextChoices):
    ADMIN = "admin"
    API = "api"
    CLI = "cli"
    SYSTEM = "system"


class ResumeMode(models.TextChoices):
    FRESH = "fresh", "fresh run"
    CHECKPOINT = "checkpoint", "from the stage's checkpoint"
    EARLIER_CHECKPOINT = "earlier_checkpoint", "from an earlier stage's checkpoint"
    FULL_RERUN = "full_rerun", "full rerun from the original input"
    RESUME = "resume", "resumed in place"


class RunQuerySet(models.QuerySet):
    def claimable(self) -> "RunQuerySet":
        return self.filter(status__in=CLAIMABLE_RUN_STATUSES, cancel_requested=False)

    def stopped_by_cancel(self) -> "RunQuerySet":
        return self.filter(status__in=STOPPED_BY_CANCEL)

    def cancellable(self) -> "RunQuerySet":
        return self.filter(status__in=CANCELLABLE_RUN_STATUSES)

    def resumable(self) -> "RunQuerySet":
        return self.filter(status__in=RESUMABLE_RUN_STATUSES)

    def active(self) -> "RunQuerySet":
        return self.filter(status__in=ACTIVE_RUN_STATUSES)

    def waiting(self) -> "RunQuerySet":
        return self.filter(status=RunStatus.WAITING)

    def held_by(self, worker: str) -> "RunQuerySet":
        """Runs `worker` executes now: only it may renew their lease or end them."""
        return self.filter(status=RunStatus.RUNNING, worker=worker)

    def lease_expired(self, now) -> "RunQuerySet":
        return self.filter(status=RunStatus.RUNNING, lease_expires_at__lt=now)

    def not_yet_retried(self) -> "RunQuerySet":
        """Runs with no retry or rerun."""
        return self.exclude(Exists(PipelineRun.objects.filter(parent_run=OuterRef("pk"))))

    def with_recovery(self) -> "RunQuerySet":
        """Annotate `recovered_by_id` and `recovered_at`: for a failed run, the first run of
        its lineage created after it that succeeded, and when that run finished."""
        recoveries = _recoveries()

        def first(field: str) -> Case:
            return Case(
                When(
                    status=RunStatus.FAILED,
                    then=Subquery(recoveries.values(field)[:1]),
                ),
                default=None,
            )

        return self.annotate(recovered_by_id=first("pk"), recovered_at=first("finished_at"))

    def recovered_failures(self) -> "RunQuerySet":
        return self.filter(Exists(_recoveries()), status=RunStatus.FAILED)

    def unrecovered_failures(self) -> "RunQuerySet":
        """Failed runs no later run of their lineage made good: what still needs an operator."""
        return self.filter(status=RunStatus.FAILED).exclude(Exists(_recoveries()))

    def bulk_retryable(self) -> "RunQuerySet":
        """The one rule of bulk retries (admin's action and the API's bulk-retry): runs not
        retried or rerun yet, and not recovered by a later run of their lineage."""
        return self.not_yet_retried().exclude(Q(Exists(_recoveries()), status=RunStatus.FAILED))


def _recoveries() -> "RunQuerySet":
    """Succeeded runs of the outer run's lineage created after it, the earliest first."""
    lineage = Q(root_run_id=OuterRef("root_run_id")) | Q(root_run_id=OuterRef("pk"))
    return PipelineRun.objects.filter(
        lineage, status=RunStatus.SUCCEEDED, created_at__gt=OuterRef("created_at")
    ).order_by("created_at", "pk")


class PipelineRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column indexes on graph or status: the composite indexes below start with
    # them, and every index is paid for by each status change a run goes through.
    graph = models.CharField(max_length=100)
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.PENDING)
    subject = models.CharField(
        max_length=255, blank=True, help_text="What the run is about, e.g. the question."
    )
    input = models.JSONField(default=dict, blank=True)
    context = models.JSONField(
        default=dict,
        blank=True,
        help_text="LangGraph runtime context (the graph's context_schema), given to every "
        "execution of the run; not part of the state or its checkpoints.",
    )
    output = models.JSONField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    error_traceback = models.TextField(blank=True)
    thread_id = models.CharField(max_length=100, unique=True, editable=False)

    parent_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    root_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="descendants"
    )
    retry_from_stage = models.CharField(max_length=100, blank=True)
    retry_depth = models.PositiveIntegerField(default=0)
    resume_mode = models.CharField(
        max_length=30, choices=ResumeMode.choices, default=ResumeMode.FRESH
    )
    resume_note = models.TextField(
        blank=True, help_text="How a retry resumes, and why it fell back if it did."
    )
    reason = models.TextField(blank=True, help_text="Why the operator asked for this run.")

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    requested_via = models.CharField(max_length=10, choices=Surface.choices, default=Surface.SYSTEM)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    queued_at = models.DateTimeField(
        null=True, blank=True, help_text="When a task for the run was last put on the queue."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The worker holds the run until then; renewed by heartbeats.",
    )
    checkpoints_pruned_at = models.DateTimeField(
        null=True, blank=True, help_text="Its LangGraph checkpoints were deleted by retention."
    )
    cancel_requested = models.BooleanField(default=False)
    waiting_since = models.DateTimeField(
        null=True, blank=True, help_text="When the run last stopped to wait for an answer."
    )
    replay_answers = models.BooleanField(
        default=False,
        help_text="A retry that answers a question its lineage already answered by itself.",
    )
    attempts = models.PositiveIntegerField(
        default=0, help_text="How many times a worker has claimed this run."
    )
    auto_resumes = models.PositiveIntegerField(
        default=0, help_text="How many times the reaper resumed this run by itself."
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "lease_expires_at"], name="run_status_lease"),
            models.Index(fields=["graph", "-created_at"], name="run_graph_created"),
        ]
        constraints = [
            # Two operators clicking "retry" at once must produce one run, not two.
            models.UniqueConstraint(
                fields=["parent_run", "retry_from_stage"],
                condition=Q(status__in=["pending", "running"], parent_run__isnull=False),
                name="one_active_retry_per_stage",
            ),
        ]
        permissions = [
            ("start_pipelinerun", "Can start runs"),
            ("retry_pipelinerun", "Can retry runs from a stage"),
            ("cancel_pipelinerun", "Can cancel runs"),
            ("resume_pipelinerun", "Can resume interrupted runs"),
            ("answer_pipelinerun", "Can answer waiting runs"),
        ]

    def __str__(self) -> str:
        return f"{self.graph} run {self.short_id}"

    def save(self, *args, **kwargs):
        if not self.thread_id:
            self.thread_id = str(self.id)
        super().save(*args, **kwargs)

    @property
    def short_id(self) -> str:
        return str(self.id)[:8]

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_RUN_STATUSES

    @property
    def can_cancel(self) -> bool:
        return self.status in CANCELLABLE_RUN_STATUSES and not self.cancel_requested

    @property
    def can_resume(self) -> bool:
        return self.status in RESUMABLE_RUN_STATUSES

    @property
    def can_retry(self) -> bool:
        return self.status in RETRYABLE_RUN_STATUSES

    @property
    def is_waiting(self) -> bool:
        return self.status == RunStatus.WAITING

    @property
    def duration(self) -> timedelta | None:
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    @property
    def admin_path(self) -> str:
        return reverse(
            "admin:pipeline_pipelinerun_change", args=[self.pk], urlconf="gamed_console.admin_urls"
        )

    @property
    def admin_url(self) -> str:
        return settings.GAMED_BASE_URL + self.admin_path


# Stages that ran to their end, in this run or in the run a retry reused them from.
DONE_STAGE_STATUSES = (StageStatus.SUCCEEDED, StageStatus.REUSED)


# A stage that asked a question and was answered runs again as a new row: its first row is
# the wait, not a stage of the run's progress.
NOT_PROGRESS_STAGE_STATUSES = (StageStatus.ANSWERED,)


class StageQuerySet(models.QuerySet):
    def in_progress_count(self) -> "StageQuerySet":
        """Rows that count in a run's "stages done / stages": not a wait that was answered,
        nor an execution cut short that ran again later (same task, a resume)."""
        again = StageExecution.objects.filter(
            run=OuterRef("run"),
            task_id=OuterRef("task_id"),
            stage_order__gt=OuterRef("stage_order"),
        )
        return self.exclude(status__in=NOT_PROGRESS_STAGE_STATUSES).exclude(
            ~Q(task_id="") & Exists(again)
        )

    def executed(self) -> "StageQuerySet":
        """Stages that really ran in their run: not the rows a retry copied from its parent."""
        return self.exclude(status=StageStatus.REUSED)


class StageExecution(models.Model):
    # Indexed by the (run, stage_order) and (run, checkpoint_id) indexes below.
    run = models.ForeignKey(
        PipelineRun, on_delete=models.CASCADE, related_name="stages", db_index=False
    )
    stage_name = models.CharField(
        max_length=255, help_text='Inside a subgraph, its path: "review > check".'
    )
    stage_order = models.PositiveIntegerField()
    namespace = models.CharField(
        max_length=1000,
        blank=True,
        help_text="LangGraph checkpoint namespace of a stage inside a subgraph "
        '("review:<task id>"); empty for top-level stages.',
    )
    status = models.CharField(max_length=20, choices=StageStatus.choices)
    task_id = models.CharField(max_length=64, blank=True, help_text="LangGraph task id.")
    attempt = models.PositiveSmallIntegerField(
        default=1, help_text="2 or more: the task ran again after an interruption (resume)."
    )
    tries = models.PositiveSmallIntegerField(
        default=1,
        help_text="How many times the node ran: more than 1 when its RetryPolicy retried it.",
    )
    retry_errors = models.JSONField(
        default=list, blank=True, help_text="The errors of the tries before the last one."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    input_snapshot = models.JSONField(null=True, blank=True)
    output_snapshot = models.JSONField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    error_traceback = models.TextField(blank=True)
    logs = models.JSONField(
        default=list,
        blank=True,
        help_text="Log records the stage emitted: level, level_name, logger, message, time "
        "(epoch seconds), extra. Capped at GAMED_STAGE_LOG_LIMIT; a last record says how many "
        "were dropped.",
    )
    checkpoint_id = models.CharField(max_length=64, blank=True)
    parent_checkpoint_id = models.CharField(max_length=64, blank=True)
    reused_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reused_by"
    )
    # Chat model calls the stage made (summed over its models; `model_usage` has each one).
    model_id = models.CharField(
        max_length=100, blank=True, help_text="The model it called (several: comma-separated)."
    )
    model_calls = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    cost_usd = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="From GAMED_MODEL_PRICES; empty when no model it called has a price.",
    )

    objects = StageQuerySet.as_manager()

    class Meta:
        ordering = ["run", "stage_order"]
        indexes = [
            models.Index(fields=["run", "checkpoint_id"], name="stage_run_checkpoint"),
            models.Index(fields=["stage_name", "status"], name="stage_name_status"),
        ]
        constraints = [
            # Also the (run, stage_order) index the timeline reads by.
            models.UniqueConstraint(fields=["run", "stage_order"], name="stage_run_order"),
        ]

    def __str__(self) -> str:
        return f"{self.stage_name} #{self.stage_order}"

    @property
    def executed(self) -> bool:
        """It ran in its run (the in-memory form of `StageQuerySet.executed`)."""
        return self.status != StageStatus.REUSED

    def counts_in_progress(self, rows: list["StageExecution"]) -> bool:
        """The in-memory form of `StageQuerySet.in_progress_count`, among the run's `rows`."""
        if self.status in NOT_PROGRESS_STAGE_STATUSES:
            return False
        return not self.task_id or not any(
            row.task_id == self.task_id and row.stage_order > self.stage_order for row in rows
        )

    @property
    def is_done(self) -> bool:
        """It ran to its end, here or in the run it was reused from."""
        return self.status in DONE_STAGE_STATUSES

    @property
    def depth(self) -> int:
        """0 for a top-level stage, 1 inside a subgraph, 2 inside a subgraph of that, ..."""
        return self.namespace.count("|") + 1 if self.namespace else 0

    @property
    def parent_task_id(self) -> str:
        """The task of the subgraph stage this stage ran inside (empty at the top level)."""
        return self.namespace.rpartition(":")[2] if self.namespace else ""

    @property
    def original_id(self) -> int:
        """The row that really executed this stage (itself, unless reused)."""
        return self.reused_from_id or self.pk


def subgraph_execution(
    rows: list[StageExecution], task_id: str, inner: StageExecution
) -> StageExecution | None:
    """Among a run's `rows`, the execution of subgraph task `task_id` that `inner` ran inside:
    the latest one before it, else the latest (a retry's reused inner rows keep their parent
    run's order, and the subgraph stage that ran again comes after them)."""
    same_task = [row for row in rows if row.task_id == task_id and row is not inner]
    before = [row for row in same_task if row.stage_order < inner.stage_order]
    return max(before or same_task, key=lambda row: row.stage_order, default=None)


class ModelUsage(models.Model):
    """The calls one stage execution made to one chat model, as LangChain reported them.

    Rows are only ever added: the token and cost counters of /metrics are their sums."""

    stage = models.ForeignKey(StageExecution, on_delete=models.CASCADE, related_name="model_usage")
    model = models.CharField(max_length=200)
    calls = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(
        default=0, help_text="Input tokens the provider read from its cache."
    )
    reasoning_tokens = models.PositiveIntegerField(
        default=0, help_text="Output tokens the model spent reasoning."
    )
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)

    class Meta:
        ordering = ["stage", "model"]
        constraints = [
            models.UniqueConstraint(fields=["stage", "model"], name="usage_per_stage_model")
        ]

    def __str__(self) -> str:
        return f"{self.model}: {self.total_tokens} tokens"


class QuestionQuerySet(models.QuerySet):
    def open(self) -> "QuestionQuerySet":
        """Questions waiting runs ask now: unanswered, oldest first."""
        return self.filter(answered_at__isnull=True, run__status=RunStatus.WAITING).order_by(
            "asked_at", "pk"
        )


class Question(models.Model):
    """What a run asked an operator with LangGraph's `interrupt(value)`, and the answer."""

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="questions")
    interrupt_id = models.CharField(max_length=64, help_text="LangGraph's interrupt id.")
    stage_name = models.CharField(max_length=255)
    stage_order = models.PositiveIntegerField(null=True, blank=True)
    value = models.JSONField(null=True, blank=True, help_text="What interrupt() was given.")
    response_schema = models.JSONField(
        null=True, blank=True, help_text="JSON Schema the answer must match, if the graph set one."
    )
    asked_at = models.DateTimeField(default=timezone.now)
    answer = models.JSONField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    answered_via = models.CharField(max_length=10, choices=Surface.choices, blank=True)
    answered_by_label = models.CharField(max_length=200, blank=True)

    objects = QuestionQuerySet.as_manager()

    class Meta:
        ordering = ["asked_at", "pk"]
        indexes = [models.Index(fields=["answered_at", "asked_at"], name="question_open")]
        constraints = [
            models.UniqueConstraint(fields=["run", "interrupt_id"], name="question_per_interrupt")
        ]

    def __str__(self) -> str:
        return f"{self.stage_name} in {self.run}: {self.text[:60]}"

    @property
    def is_answered(self) -> bool:
        return self.answered_at is not None

    @property
    def text(self) -> str:
        """The question for people: its `question` (or `message`, `prompt`) field, or the value."""
        if isinstance(self.value, dict):
            for key in ("question", "message", "prompt", "title"):
                if isinstance(self.value.get(key), str):
                    return self.value[key]
        return self.value if isinstance(self.value, str) else json.dumps(self.value)

    @property
    def answered_by_name(self) -> str:
        if self.answered_by_label:
            return self.answered_by_label
        return self.answered_by.get_username() if self.answered_by else ""

    @property
    def value_json(self) -> str:
        return json.dumps(self.value, indent=2)

    @property
    def answer_json(self) -> str:
        return json.dumps(self.answer)

    @property
    def choice_buttons(self) -> list[tuple[str, str]]:
        return [(str(choice), json.dumps(choice)) for choice in self.choices]

    @property
    def choices(self) -> list:
        """Answers the question offers (`choices` or `options` in its value), for buttons."""
        if isinstance(self.value, dict):
            for key in ("choices", "options"):
                offered = self.value.get(key)
                if isinstance(offered, list) and all(
                    isinstance(c, str | int | float | bool) for c in offered
                ):
                    return offered
        return []


class NodeInvocation(models.Model):
    """Ledger written by pipeline nodes themselves each time they really execute.

    Stage rows say what the console recorded; this says what actually ran, which is what
    proves that a retry or a resume re-executed nothing it did not have to.
    """

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="invocations")
    root_run_id = models.UUIDField(db_index=True)
    stage_name = models.CharField(max_length=100)
    outcome = models.CharField(max_length=20, default="started")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["root_run_id", "stage_name"], name="ledger_root_stage")]

    def __str__(self) -> str:
        return f"{self.stage_name} in {self.run_id}: {self.outcome}"


class AuditAction(models.TextChoices):
    START = "start"
    RETRY = "retry"
    CANCEL = "cancel"
    RESUME = "resume"
    RERUN = "rerun"
    REAP = "reap"
    ANSWER = "answer"


class AuditRecord(models.Model):
    """One operator action, from any surface. Written by the service, in its transaction."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor_label = models.CharField(
        max_length=200, blank=True, help_text="Who, when there is no user (e.g. an API key, cron)."
    )
    via = models.CharField(max_length=10, choices=Surface.choices)
    action = models.CharField(max_length=20, choices=AuditAction.choices, db_index=True)
    run = models.ForeignKey(
        PipelineRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_records"
    )
    result_run = models.ForeignKey(
        PipelineRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The run this action produced.",
    )
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.action} via {self.via} at {self.at:%Y-%m-%d %H:%M:%S}"
