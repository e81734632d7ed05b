"""django-q2 entry points. A task receives a run id, never an object."""

from pipeline import runner


def execute_run(run_id: str) -> str:
    return runner.execute_run(run_id)
