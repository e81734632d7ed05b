"""GamED's generating stages ask a chat model: the offline one by default, any question."""

import pytest

from pipeline.models import RunStatus
from pipeline.services import start_run

pytestmark = pytest.mark.usefixtures("sync_queue")


@pytest.mark.parametrize(
    "question",
    [
        "Label the parts of a flower",
        "Why?",
        "Explain how a bill becomes a law in Congress",
        "Sort these musical instruments into strings, brass and percussion",
        "Describe the journey of a letter " + "through the postal network " * 35,
    ],
    ids=["flower", "one word", "civics", "sorting cue", "long question"],
)
def test_offline_model_gives_a_valid_game_for_any_question(question):
    run = start_run(graph="gamed", input={"question": question})
    run.refresh_from_db()

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    game = run.output["output"]["game"]
    assert 2 <= len(game["items"]) <= 8
    assert run.stages.get(stage_name="domain_knowledge_retriever").model_id == "gamed-offline"


def test_offline_model_calls_are_recorded_with_tokens_and_no_cost():
    run = start_run(graph="gamed", input={"question": "Label the bones of the human skeleton"})
    run.refresh_from_db()

    asked = [
        (s.stage_name, s.model_id, s.model_calls)
        for s in run.stages.order_by("stage_order")
        if s.model_calls
    ]
    # A bundled topic needs no model for its knowledge; each blueprint draft asks once.
    assert asked == [
        ("blueprint_generator", "gamed-offline", 1),
        ("blueprint_generator", "gamed-offline", 1),
    ]
    for stage in run.stages.filter(model_calls=1):
        assert stage.prompt_tokens > 100 and stage.completion_tokens > 10
        assert stage.total_tokens == stage.prompt_tokens + stage.completion_tokens
        assert stage.cost_usd is None
    first, second = run.stages.filter(stage_name="blueprint_generator")
    # The second draft's prompt carries the validator's feedback.
    assert second.prompt_tokens > first.prompt_tokens
