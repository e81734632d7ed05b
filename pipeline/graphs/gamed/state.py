from typing import Annotated, TypedDict

from pydantic import BaseModel, Field, field_validator

STAGES = [
    "input_enhancer",
    "domain_knowledge_retriever",
    "router",
    "game_planner",
    "scene_generator",
    "blueprint_generator",
    "blueprint_validator",
    "output_renderer",
]

TEMPLATES = ("label_diagram", "sequencing", "sorting", "multiple_choice")
MAX_ITEMS = 8


class GamedInput(BaseModel):
    """What a GamED run is started with."""

    question: Annotated[str, Field(min_length=3, max_length=1000)]
    faults: dict[str, str] = Field(default_factory=dict)
    max_blueprint_attempts: Annotated[int, Field(ge=1, le=10)] = 3

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question must not be blank")
        return value.strip()

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, faults: dict[str, str]) -> dict[str, str]:
        from pipeline.graphs.faults import check_fault_spec

        for stage, spec in faults.items():
            check_fault_spec(stage, spec, STAGES)
        return faults


class GamedState(TypedDict, total=False):
    question: str
    faults: dict[str, str]
    max_blueprint_attempts: int
    enhanced: dict
    domain_knowledge: dict
    route: dict
    game_plan: dict
    scenes: list[dict]
    blueprint: dict
    blueprint_attempts: int
    validation: dict
    output: dict
