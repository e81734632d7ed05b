"""Runs delivered by the real queue to a real `qcluster` process."""

import pytest

from pipeline.graphs.faults import ledger_counts
from pipeline.models import RunStatus, StageStatus
from pipeline.services import start_run
from tests.conftest import wait_for_runs
from tests.helpers import assert_stage_checkpoints_match_history

pytestmark = pytest.mark.worker


def test_qcluster_runs_gamed_and_records_langgraph_checkpoints(workers):
    workers.start()
    runs = [
        start_run(graph="gamed", input={"question": "Label the parts of a plant cell"}),
        start_run(graph="gamed", input={"question": "Label the bones of the human skeleton"}),
    ]

    runs = wait_for_runs(runs, workers=workers)

    for run in runs:
        assert run.status == RunStatus.SUCCEEDED, run.error_message
        assert run.worker and run.attempts == 1
        stages = list(run.stages.order_by("stage_order"))
        assert all(s.status == StageStatus.SUCCEEDED for s in stages)
        assert sum(ledger_counts([run.pk]).values()) == len(stages)
        assert_stage_checkpoints_match_history(run)
    assert [s.stage_name for s in runs[1].stages.all()].count("blueprint_generator") == 2
