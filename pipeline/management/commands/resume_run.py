from pipeline import services
from pipeline.management.output import RunActionCommand


class Command(RunActionCommand):
    help = (
        "Resume an interrupted or cancelled run on its own thread from its latest checkpoint: "
        "completed stages never run again."
    )
    action = services.resume_run

    def done_message(self, run) -> str:
        return f"Queued run {run.pk} to resume."
