"""A retry delivered by the real queue runs only the failed stage and what follows."""

import pytest

from pipeline.graphs.faults import ledger_counts
from pipeline.graphs.gamed.state import REVIEW_STAGE, STAGES
from pipeline.models import RunStatus, StageStatus
from pipeline.services import retry_run, start_run
from tests.conftest import wait_for_runs

pytestmark = pytest.mark.worker

ORDER = [stage for stage in STAGES if stage != REVIEW_STAGE]


def test_qcluster_retry_runs_exactly_the_failed_stage_and_later(workers):
    workers.start()
    failing = ["router", "scene_generator", "blueprint_validator"]
    parents = wait_for_runs(
        [
            start_run(
                graph="gamed",
                input={"question": "Label the parts of a plant cell", "faults": {f: "fail_once"}},
            )
            for f in failing
        ],
        workers=workers,
    )
    assert all(parent.status == RunStatus.FAILED for parent in parents)

    retries = wait_for_runs(
        [retry_run(run=p, from_stage=f) for p, f in zip(parents, failing, strict=True)],
        workers=workers,
    )

    for parent, retry, stage in zip(parents, retries, failing, strict=True):
        k = ORDER.index(stage)
        assert retry.status == RunStatus.SUCCEEDED, retry.error_message
        assert ledger_counts([retry.pk]) == dict.fromkeys(ORDER[k:], 1)
        assert list(retry.stages.values_list("stage_name", "status")) == [
            *((name, StageStatus.REUSED) for name in ORDER[:k]),
            *((name, StageStatus.SUCCEEDED) for name in ORDER[k:]),
        ]
        assert retry.thread_id != parent.thread_id
        parent.refresh_from_db()
        assert parent.status == RunStatus.FAILED
