"""Fault injection and the execution ledger exist only where GAMED_FAULT_INJECTION is on."""

import json

from pipeline.graphs.faults import stage
from pipeline.models import NodeInvocation, PipelineRun
from tests.conftest import child_env, manage

QUESTION = "Label the parts of a flower"


def test_with_fault_injection_off_a_stage_runs_as_written_and_records_nothing(db, settings):
    settings.GAMED_FAULT_INJECTION = False
    run = PipelineRun.objects.create(graph="gamed", input={})

    @stage
    def planner(state: dict) -> dict:
        return {"planned": True}

    config = {"configurable": {"gamed_run_id": str(run.pk), "gamed_root_run_id": str(run.pk)}}
    state = {"faults": {"planner": "fail_always"}}

    assert planner(state, config) == {"planned": True}
    assert not NodeInvocation.objects.exists()


def test_with_fault_injection_off_gamed_refuses_faults_and_queues_nothing(transactional_db):
    data = json.dumps({"question": QUESTION, "faults": {"router": "fail_always"}})
    env = child_env(GAMED_FAULT_INJECTION="false")

    result = manage("start_run", "gamed", "--input", data, env=env)

    assert result.returncode == 1, result.stdout
    assert "fault injection is off" in result.stderr
    assert "GAMED_FAULT_INJECTION" in result.stderr
    assert not PipelineRun.objects.exists()
    schema = manage("shell", "-c", _SCHEMA, env=env)
    assert schema.returncode == 0, schema.stderr
    assert "faults" not in json.loads(schema.stdout.splitlines()[-1])["properties"]


_SCHEMA = (
    "import json; from pipeline.graphs import input_json_schema; "
    "print(json.dumps(input_json_schema('gamed')))"
)
