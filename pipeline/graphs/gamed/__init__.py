"""GamED.AI's game generator: a question in, a playable game blueprint out.

domain_knowledge_retriever (for a question the bundled knowledge does not cover) and
blueprint_generator ask the chat model (pipeline/graphs/gamed/llm.py).

input_enhancer -> domain_knowledge_retriever -> router -> game_planner -> scene_generator
  -> blueprint_generator -> blueprint_validator -(invalid)-> blueprint_generator
                                                -(valid)-> output_renderer
                                                -(valid, review on)-> human_review
                                                                       -> output_renderer
"""

import itertools

from django.conf import settings
from langgraph.graph import END, START, StateGraph

from pipeline.graphs.gamed.blueprint import (
    after_validation,
    blueprint_generator,
    blueprint_validator,
    human_review,
    output_renderer,
)
from pipeline.graphs.gamed.design import game_planner, scene_generator
from pipeline.graphs.gamed.llm import retry_policy
from pipeline.graphs.gamed.state import GamedFaultInput, GamedInput, GamedState
from pipeline.graphs.gamed.understanding import domain_knowledge_retriever, input_enhancer, router


def build_graph() -> StateGraph:
    schema = GamedFaultInput if settings.GAMED_FAULT_INJECTION else GamedInput
    graph = StateGraph(GamedState, input_schema=schema)
    # The stages that ask the chat model retry its rate limits and timeouts.
    asks_model = {domain_knowledge_retriever, blueprint_generator}
    sequence = [
        input_enhancer,
        domain_knowledge_retriever,
        router,
        game_planner,
        scene_generator,
        blueprint_generator,
        blueprint_validator,
    ]
    for node in sequence:
        graph.add_node(node, retry_policy=retry_policy() if node in asks_model else None)
    for before, after in itertools.pairwise(sequence):
        graph.add_edge(before.__name__, after.__name__)
    graph.add_node("human_review", human_review)
    graph.add_node("output_renderer", output_renderer)
    graph.add_edge(START, "input_enhancer")
    graph.add_conditional_edges(
        "blueprint_validator",
        after_validation,
        ["output_renderer", "human_review", "blueprint_generator"],
    )
    graph.add_edge("human_review", "output_renderer")
    graph.add_edge("output_renderer", END)
    return graph


build_graph.subject_field = "question"
