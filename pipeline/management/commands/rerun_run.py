from pipeline import services
from pipeline.management.output import RunActionCommand


class Command(RunActionCommand):
    help = (
        "Rerun a finished run from scratch: a new run of the same graph from the original "
        "input, recorded in the run's lineage."
    )
    action = services.rerun_run

    def done_message(self, run) -> str:
        return f"Queued run {run.pk}, a rerun of {run.parent_run_id} from scratch."
