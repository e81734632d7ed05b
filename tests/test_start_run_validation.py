"""Bad requests are refused before anything is queued."""

import pytest

from pipeline.exceptions import InvalidInput, UnknownGraph
from pipeline.models import PipelineRun
from pipeline.services import start_run
from tests.conftest import manage


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("graph", "data", "error", "message"),
    [
        ("nope", {"question": "x?"}, UnknownGraph, "Unknown graph 'nope'. Registered graphs:"),
        ("gamed", {}, InvalidInput, "question: Field required"),
        ("gamed", ["a"], InvalidInput, "must be a JSON object"),
        ("gamed", {"question": "   "}, InvalidInput, "question"),
        (
            "gamed",
            {"question": "Why?", "faults": {"nowhere": "fail_once"}},
            InvalidInput,
            "unknown stage 'nowhere'",
        ),
        (
            "gamed",
            {"question": "Why?", "faults": {"router": "explode"}},
            InvalidInput,
            "unknown fault 'explode'",
        ),
    ],
)
def test_start_run_refuses_bad_requests_and_creates_nothing(graph, data, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace("?", r"\?")):
        start_run(graph=graph, input=data)
    assert not PipelineRun.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "--input", '{"question": "Why?"}'], "Unknown graph 'nope'"),
        (["gamed", "--input", '{"question": '], "--input is not valid JSON"),
        (["gamed", "--input", '{"faults": {}}'], "question: Field required"),
    ],
)
def test_start_run_command_fails_with_one_line_and_creates_no_run(args, message):
    result = manage("start_run", *args)

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert not PipelineRun.objects.exists()


def test_typeddict_input_is_typed_and_may_be_partial_as_langgraph_takes_it(settings):
    from pipeline.graphs import validate_input

    settings.GAMED_GRAPHS = {**settings.GAMED_GRAPHS, "typed": "tests.graphs:build_typed"}
    assert validate_input("typed", {"question": "q", "count": "3"}) == {"question": "q", "count": 3}
    assert validate_input("typed", {"question": "q"}) == {"question": "q"}
    with pytest.raises(InvalidInput, match="count: Input should be a valid integer"):
        validate_input("typed", {"question": "q", "count": "many"})
    with pytest.raises(InvalidInput, match="unknown field"):
        validate_input("typed", {"question": "q", "cuont": 3})
