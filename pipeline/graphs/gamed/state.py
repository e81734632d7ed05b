from typing import Annotated, Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

STAGES = [
    "input_enhancer",
    "domain_knowledge_retriever",
    "router",
    "game_planner",
    "scene_generator",
    "blueprint_generator",
    "blueprint_validator",
    "human_review",
    "output_renderer",
]
# Asks an operator to approve the blueprint; only runs started with `review` reach it.
REVIEW_STAGE = "human_review"

TEMPLATES = ("label_diagram", "sequencing", "sorting", "multiple_choice")
MAX_ITEMS = 8


class GamedInput(BaseModel):
    """What a GamED run is started with."""

    model_config = ConfigDict(extra="forbid")

    question: Annotated[str, Field(min_length=3, max_length=1000)]
    max_blueprint_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    # An operator approves or edits the blueprint before it is rendered (human_review).
    review: bool = False

    @model_validator(mode="before")
    @classmethod
    def _no_faults(cls, data: Any) -> Any:
        if isinstance(data, dict) and "faults" in data:
            raise ValueError(
                "faults are refused: fault injection is off (set GAMED_FAULT_INJECTION=true)"
            )
        return data

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question must not be blank")
        return value.strip()


class GamedFaultInput(GamedInput):
    """GamED's input with fault injection on: `faults` makes chosen stages fail or stall."""

    faults: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_faults(cls, data: Any) -> Any:
        return data

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
    review: bool
    review_decision: str
    output: dict
