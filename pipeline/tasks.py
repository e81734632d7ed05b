"""django-q2 entry points. A task receives a run id, never an object."""

from pipeline import runner, services


def execute_run(run_id: str) -> str:
    return runner.execute_run(run_id)


def reap_runs() -> str:
    touched = services.reap_runs()
    expired = services.expire_waiting_runs()
    return (
        f"{len(touched)} run(s) interrupted or resumed, {len(expired)} past their answer deadline"
    )


def prune_checkpoints() -> str:
    report = services.prune_checkpoints()
    return f"pruned the checkpoints of {report.runs} run(s), {report.bytes} bytes"
