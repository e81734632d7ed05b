"""What GamED asks its chat model for: structured answers, validated by pydantic."""

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, model_validator

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class Fact(BaseModel):
    question: Text
    answer: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]


class DomainKnowledge(BaseModel):
    """What a game about the question needs to know. Fill the fields that fit the question:
    parts for a diagram to label, a sequence to put in order, categories to sort into, facts
    for a quiz."""

    title: Text = Field(description="A short title for the topic.")
    subject: Text = Field(description="The school subject, e.g. biology.")
    parts: dict[str, str] = Field(
        default_factory=dict, description="Part name -> what it does (for labelling)."
    )
    sequence: list[Text] = Field(default_factory=list, description="Steps in their order.")
    categories: dict[str, list[Text]] = Field(
        default_factory=dict, description="Category -> items that belong to it."
    )
    facts: list[Fact] = Field(default_factory=list, description="Quiz facts: question, answer.")

    @model_validator(mode="after")
    def _enough(self) -> "DomainKnowledge":
        found = max(
            len(self.parts),
            len(self.sequence),
            sum(len(items) for items in self.categories.values()),
            len(self.facts),
        )
        if found < 2:
            raise ValueError("give at least two parts, steps, categorised items or facts")
        return self


class Label(BaseModel):
    label: Text
    hint: Text = Field(description="What the part does, shown as a hint.")


class LabelDraft(BaseModel):
    """The labels of a diagram game, one per part, in the order of the parts given."""

    labels: list[Label]


class SequenceDraft(BaseModel):
    """The cards of an ordering game, in their correct order."""

    steps: list[Text]


class SortItem(BaseModel):
    text: Text
    bin: Text = Field(description="The category it belongs to.")


class SortDraft(BaseModel):
    """The items of a sorting game, each with its category."""

    items: list[SortItem]


class Question(BaseModel):
    prompt: Text
    options: list[Text] = Field(description="Four options, the answer among them.")
    answer: Text

    @model_validator(mode="after")
    def _answer_offered(self) -> "Question":
        if self.answer not in self.options:
            raise ValueError(f"the answer {self.answer!r} is not among the options")
        return self


class QuizDraft(BaseModel):
    """The questions of a multiple-choice quiz."""

    questions: list[Question]


DRAFTS: dict[str, type[BaseModel]] = {
    "label_diagram": LabelDraft,
    "sequencing": SequenceDraft,
    "sorting": SortDraft,
    "multiple_choice": QuizDraft,
}
