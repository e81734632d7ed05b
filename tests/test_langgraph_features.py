"""Graphs written the way LangGraph's documentation writes them, run by real `qcluster` workers:
async nodes, subgraphs, parallel branches and `Send`, retry policies, runtime context, messages.

The graphs record their own executions (`tests.ledger`): a retry's ledger shows that only the
retried stage and what follows it ran.
"""

import asyncio
import json
import time

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from observability.models import ApiKey
from pipeline.graphs import state_graph
from pipeline.models import PipelineRun, RunStatus, StageStatus
from pipeline.selectors import console_runs
from pipeline.services import cancel_run, retry_run, start_run
from tests.api.conftest import ApiClient, make_user
from tests.conftest import child_env, manage, wait_for_runs
from tests.console import VIEW_PERMS, login, staff_user
from tests.docs_graphs import SUBGRAPH_STAGES
from tests.helpers import assert_stage_checkpoints_match_history

pytestmark = pytest.mark.worker


def stages(run: PipelineRun) -> list[tuple[str, str]]:
    return [(s.stage_name, s.status) for s in run.stages.order_by("stage_order")]


def wait_for_stage(workers, run: PipelineRun, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not run.stages.filter(stage_name=name, status=StageStatus.RUNNING).exists():
        run.refresh_from_db()
        assert time.monotonic() < deadline, (
            f"{name} did not start: {run.status} {run.error_traceback}\n{workers.logs()}"
        )
        time.sleep(0.1)


def api_client() -> ApiClient:
    owner = make_user("integration", "view")
    return ApiClient(ApiKey.objects.create_key(name="read", owner=owner)[1])


def raw_langgraph_output(graph: str, data: dict) -> dict:
    """What the graph returns when LangGraph runs it alone, start to end."""
    compiled = state_graph(graph).compile(checkpointer=InMemorySaver())
    return asyncio.run(compiled.ainvoke(data, {"configurable": {"thread_id": "raw"}}))


def retried(workers, run: PipelineRun, **target) -> PipelineRun:
    (retry,) = wait_for_runs([retry_run(run=run, **target)], workers=workers)
    return retry


def test_async_and_mixed_graph_records_and_retries_like_a_sync_graph(workers, node_ledger):
    workers.start()
    node_ledger.break_("summarize")
    (run,) = wait_for_runs([start_run(graph="docs_async", input={"topic": "tides"})])

    assert run.status == RunStatus.FAILED
    assert run.subject == "tides"
    assert stages(run) == [
        ("fetch", StageStatus.SUCCEEDED),
        ("parse", StageStatus.SUCCEEDED),
        ("summarize", StageStatus.FAILED),
    ]
    assert "Broken: summarize is broken" in run.error_message
    assert_stage_checkpoints_match_history(run)

    node_ledger.fix()
    retry = retried(workers, run, from_stage="summarize")

    assert retry.status == RunStatus.SUCCEEDED, retry.error_message
    assert node_ledger.executions(retry) == {"summarize": 1}
    assert retry.output["visited"] == ["fetch", "parse", "summarize"]


def test_cancelled_async_stage_stops_at_once(workers, node_ledger):
    workers.start()
    run = start_run(graph="docs_async", input={"topic": "slow", "pause": 600})
    wait_for_stage(workers, run, "fetch")

    cancel_run(run=run, reason="too slow")

    # The stage sleeps for ten minutes: only a cancel that interrupts it ends the run in time.
    (run,) = wait_for_runs([run], statuses=(RunStatus.CANCELLED,), timeout=60, workers=workers)
    assert stages(run) == [("fetch", StageStatus.CANCELLED)]


def test_subgraph_stages_are_recorded_under_their_parent_and_retried_inside_it(
    workers, node_ledger
):
    workers.start()
    node_ledger.break_("check")
    (run,) = wait_for_runs([start_run(graph="docs_subgraph", input={"topic": "t"})])

    assert run.status == RunStatus.FAILED
    assert stages(run) == [
        ("prepare", StageStatus.SUCCEEDED),
        ("review", StageStatus.FAILED),
        ("review > draft", StageStatus.SUCCEEDED),
        ("review > check", StageStatus.FAILED),
    ]
    inner = run.stages.get(stage_name="review > draft")
    review = run.stages.get(stage_name="review")
    assert inner.depth == 1 and inner.parent_task_id == review.task_id
    assert inner.checkpoint_id and inner.parent_checkpoint_id

    node_ledger.fix()
    from_inner = retried(workers, run, from_stage="review > check")
    from_node = retried(workers, run, from_stage="review")

    for retry in (from_inner, from_node):
        assert retry.status == RunStatus.SUCCEEDED, retry.error_message
        assert node_ledger.executions(retry) == {"check": 1, "polish": 1, "publish": 1}
        assert retry.output == raw_langgraph_output("docs_subgraph", {"topic": "t"})
        assert [s.stage_name for s in retry.stages.filter(status=StageStatus.REUSED)] == [
            "prepare",
            "review > draft",
        ]
    assert "stopped at review > check" in from_node.resume_note

    again = retried(workers, from_inner, from_stage="review > draft")
    assert again.status == RunStatus.SUCCEEDED, again.error_message
    assert node_ledger.executions(again) == {"draft": 1, "check": 1, "polish": 1, "publish": 1}

    # Admin and the API show inner stages under their subgraph stage.
    page = login(staff_user("viewer", *VIEW_PERMS)).get(from_inner.admin_path)
    names = [row["stage"].stage_name for row in page.context["stage_rows"]]
    assert names == SUBGRAPH_STAGES
    listed = api_client().get(f"/runs/{from_inner.pk}/stages").json()
    check = next(s for s in listed if s["stage_name"] == "review > check")
    review = next(s for s in listed if s["stage_name"] == "review")
    assert check["depth"] == 1 and check["parent_task_id"] == review["task_id"]


def test_parallel_and_send_tasks_retry_alone_and_rows_say_what_ran(workers, node_ledger):
    workers.start()
    node_ledger.break_("write_joke:dogs")
    (run,) = wait_for_runs([start_run(graph="docs_send", input={})])

    assert run.status == RunStatus.FAILED
    jokes = list(run.stages.filter(stage_name="write_joke").order_by("stage_order"))
    dogs = next(s for s in jokes if s.input_snapshot == {"subject": "dogs"})
    assert dogs.status == StageStatus.FAILED
    # LangGraph stops a failed task's siblings: those it cut short before they saved their work
    # say so, and run again; those that saved it succeeded, and are reused.
    cut_short = [s.input_snapshot["subject"] for s in jokes if s.status != StageStatus.SUCCEEDED]
    assert {s.status for s in jokes if s is not dogs} <= {
        StageStatus.SUCCEEDED,
        StageStatus.CANCELLED,
    }

    node_ledger.fix()
    retry = retried(workers, run, stage_execution_id=dogs.pk)

    assert retry.status == RunStatus.SUCCEEDED, retry.error_message
    assert node_ledger.executions(retry) == {
        "best_joke": 1,
        **{f"write_joke:{subject}": 1 for subject in cut_short},
    }
    assert sorted(retry.output["jokes"]) == [f"a joke about {s}" for s in ("cats", "dogs", "owls")]
    assert not retry.stages.exclude(status__in=(StageStatus.SUCCEEDED, StageStatus.REUSED)).exists()
    progress = console_runs().get(pk=retry.pk)
    assert progress.stages_done == progress.stage_count == 7

    # The first stage recorded has parallel siblings: a retry from it runs it and what it
    # feeds (the Send fan-out and the join), not its siblings, and not from the input.
    first = retry.stages.order_by("stage_order").first()
    assert first.stage_name == "generate_topics"
    again = retried(workers, retry, from_stage="generate_topics")
    assert again.status == RunStatus.SUCCEEDED, again.error_message
    assert node_ledger.executions(again) == {
        "generate_topics": 1,
        "write_joke:cats": 1,
        "write_joke:dogs": 1,
        "write_joke:owls": 1,
        "best_joke": 1,
    }
    assert again.resume_mode == "checkpoint"


def test_every_try_of_a_node_with_a_retry_policy_is_visible(workers, node_ledger):
    workers.start()
    recovered, exhausted = wait_for_runs(
        [
            start_run(graph="docs_flaky", input={"flaky_failures": 2}),
            start_run(graph="docs_flaky", input={"flaky_failures": 5}),
        ]
    )

    assert recovered.status == RunStatus.SUCCEEDED
    flaky = recovered.stages.get(stage_name="flaky")
    assert flaky.status == StageStatus.SUCCEEDED and flaky.tries == 3
    assert [e["error"] for e in flaky.retry_errors] == [
        "ConnectionError: upstream timed out (try 1)",
        "ConnectionError: upstream timed out (try 2)",
    ]
    assert node_ledger.executions(recovered) == {"flaky": 3, "after": 1}

    shown = api_client().get(f"/runs/{recovered.pk}/stages/{flaky.pk}").json()
    assert shown["tries"] == 3 and len(shown["retry_errors"]) == 2
    page = login(staff_user("viewer", *VIEW_PERMS)).get(recovered.admin_path)
    assert "3 tries" in page.text and "upstream timed out (try 2)" in page.text

    assert exhausted.status == RunStatus.FAILED
    flaky = exhausted.stages.get(stage_name="flaky")
    assert flaky.status == StageStatus.FAILED and flaky.tries == 3
    assert len(flaky.retry_errors) == 2
    assert flaky.error_message == "ConnectionError: upstream timed out (try 3)"


def test_runtime_context_reaches_every_execution_and_a_retry_may_replace_it(workers, node_ledger):
    workers.start()
    node_ledger.break_("sign")
    (run,) = wait_for_runs(
        [start_run(graph="docs_context", input={}, context={"user_name": "Ada"})]
    )
    assert run.status == RunStatus.FAILED
    assert run.context == {"user_name": "Ada", "tone": "friendly"}

    node_ledger.fix()
    inherited = retried(workers, run, from_stage="sign")
    replaced = retried(workers, run, from_stage="greet", context={"user_name": "Grace"})

    assert inherited.output["greeting"] == "Hello Ada (friendly), signed for Ada"
    assert node_ledger.executions(inherited) == {"sign": 1}
    assert replaced.context == {"user_name": "Grace", "tone": "friendly"}
    assert replaced.output["greeting"] == "Hello Grace (friendly), signed for Grace"


def test_messages_large_values_and_values_json_has_no_type_for(workers, node_ledger):
    workers.start(GAMED_OUTPUT_MAX_BYTES="4096")
    chat, big, small = wait_for_runs(
        [
            start_run(
                graph="docs_chat", input={"messages": [{"role": "user", "content": "hi there"}]}
            ),
            start_run(graph="docs_big", input={"size": 5_000_000}),
            start_run(graph="docs_big", input={"size": 3}),
        ]
    )

    assert chat.status == RunStatus.SUCCEEDED, chat.error_message
    assert chat.subject == "hi there"
    assert [m["content"] for m in chat.output["messages"]] == ["hi there", "You said: hi there"]

    assert big.status == RunStatus.SUCCEEDED, big.error_message
    produced = big.stages.get(stage_name="produce").output_snapshot
    assert produced["_truncated"] is True
    assert big.output["_truncated"] is True and big.output["bytes"] > 5_000_000
    assert len(json.dumps(big.output)) < 4096
    api = api_client()
    assert len(api.get(f"/runs/{big.pk}").content) < 64 * 1024
    after = big.stages.get(stage_name="produce").checkpoint_id
    state = api.get(f"/runs/{big.pk}/checkpoints/{after}").json()
    assert len(state["values"]["blob"]) == 5_000_000

    assert small.output == {
        "size": 3,
        "blob": "xxx",
        "raw": "<16 bytes>",
        "when": "2026-12-02T08:30:00+00:00",
    }


def test_state_types_registered_with_langgraphs_serializer_survive_a_retry(workers, node_ledger):
    strict = {"LANGGRAPH_STRICT_MSGPACK": "true"}
    workers.start(**strict)
    node_ledger.break_("send_invoice")
    (run,) = wait_for_runs([start_run(graph="docs_billing", input={"customer": "Ada"})])
    assert run.status == RunStatus.FAILED
    node_ledger.fix()

    retry = manage(
        "retry_run", str(run.pk), "--from-stage", "send_invoice", "--wait", env=child_env(**strict)
    )

    assert retry.returncode == 0, retry.stdout + retry.stderr
    (retry_run_row,) = run.children.all()
    assert retry_run_row.output["invoice"] == {"customer": "Ada", "total": 12.5}
    assert node_ledger.executions(retry_run_row) == {"send_invoice": 1}
    logs = workers.logs() + retry.stderr
    assert "unregistered type" not in logs and "Blocked deserialization" not in logs
