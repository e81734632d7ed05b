from pipeline import services
from pipeline.management.output import RunActionCommand
from pipeline.models import RunStatus


class Command(RunActionCommand):
    help = (
        "Cancel a run: a pending run never starts; a running run stops at its next stage "
        "boundary and ends cancelled (it can be resumed or retried later)."
    )
    action = services.cancel_run
    wait_help = "wait until the run has stopped"
    # It runs no graph: no need for the checks that build them all (and import LangGraph).
    requires_system_checks = []

    def done_message(self, run) -> str:
        if run.status == RunStatus.CANCELLED:
            return f"Run {run.pk} cancelled."
        return f"Run {run.pk} will stop at its next stage boundary."

    def waited(self, run) -> None:
        """Stopping is what was asked: the run having stopped is success."""
