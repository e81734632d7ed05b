"""The chat model GamED asks when no `GAMED_CHAT_MODEL` is set: deterministic and offline.

It is a LangChain chat model like any other (structured output through tool calls, callbacks,
`usage_metadata` with token counts estimated from the text), so runs without a provider go
through the same code, and record usage the same way. It writes what a careful model would
from what the task gives it, with one human habit kept on purpose: a first draft of a large
topic holds every part, over the item limit, and the validator's feedback trims it.
"""

import json
import math
import re
import uuid
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

from pipeline.graphs.gamed.knowledge import DISTRACTORS

MODEL_NAME = "gamed-offline"
CLOZE_FACTS = 4


def tokens(text: str) -> int:
    """About four characters a token, as for English with common tokenizers."""
    return max(1, math.ceil(len(text) / 4))


class OfflineChatModel(BaseChatModel):
    model_name: str = MODEL_NAME

    @property
    def _llm_type(self) -> str:
        return "gamed-offline"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def bind_tools(self, tools: list, *, tool_choice: Any = None, **kwargs: Any):
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        tools: list[dict] | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        task = next((json.loads(m.content) for m in messages if isinstance(m, HumanMessage)), {})
        if not tools:
            answer = "Ask me for structured output: I only fill GamED's schemas."
            return self._result(messages, AIMessage(content=answer), answer)
        name = tools[0]["function"]["name"]
        args = ANSWERS[name](task)
        body = json.dumps(args)
        call = {"name": name, "args": args, "id": f"call_{uuid.uuid4().hex[:12]}"}
        return self._result(messages, AIMessage(content="", tool_calls=[call]), body)

    def _result(self, messages: list[BaseMessage], message: AIMessage, text: str) -> ChatResult:
        tokens_in = sum(tokens(str(m.content)) + 4 for m in messages)
        tokens_out = tokens(text)
        message.usage_metadata = {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        }
        message.response_metadata = {"model_name": self.model_name}
        return ChatResult(generations=[ChatGeneration(message=message)])


def _knowledge(task: dict) -> dict:
    """No bundled topic matched: quiz facts about the question's own words."""
    question = task["question"]
    words = re.findall(r"[A-Za-z][A-Za-z\-']*", question)
    concepts = task.get("key_concepts") or []
    terms = list(dict.fromkeys([*concepts, *(w.lower() for w in words if len(w) > 2)]))
    facts = _cloze(question, terms)
    if len(facts) < 2:
        facts.append(
            {"question": "How many words does the question have?", "answer": str(len(words))}
        )
    return {
        "title": " ".join(concepts[:3]).title() or "General knowledge",
        "subject": "general knowledge",
        "facts": facts,
    }


def _cloze(question: str, terms: list[str]) -> list[dict]:
    """Blank out each term of the question in turn."""
    shown = question if len(question) <= 600 else question[:600].rsplit(" ", 1)[0] + " ..."
    facts = []
    for term in terms:
        blanked, found = re.subn(rf"\b{re.escape(term)}\b", "_____", shown, count=1, flags=re.I)
        if found:
            facts.append({"question": f"Complete: {blanked}", "answer": term})
        if len(facts) == CLOZE_FACTS:
            break
    return facts


def _trimmed(task: dict) -> int | None:
    too_many = any(error.startswith("too many items") for error in task.get("feedback", []))
    return task["max_items"] if too_many else None


def _labels(task: dict) -> dict:
    parts = list(task["knowledge"].get("parts", {}).items())[: _trimmed(task)]
    return {"labels": [{"label": name, "hint": hint} for name, hint in parts]}


def _steps(task: dict) -> dict:
    return {"steps": task["knowledge"].get("sequence", [])[: _trimmed(task)]}


def _sort(task: dict) -> dict:
    # Interleave the bins, so a trimmed game still has something in every bin.
    bins = sorted(task["knowledge"].get("categories", {}).items())
    pairs = [
        {"text": items[row], "bin": name}
        for row in range(max((len(items) for _, items in bins), default=0))
        for name, items in bins
        if row < len(items)
    ]
    return {"items": pairs[: _trimmed(task)]}


def _quiz(task: dict) -> dict:
    knowledge = task["knowledge"]
    facts = [(f["question"], f["answer"]) for f in knowledge.get("facts", [])]
    if not facts:
        facts = [
            (f["question"], f["answer"])
            for f in _cloze(task["question"], knowledge.get("terms", []))
        ]
    answers = [answer for _, answer in facts]
    questions = []
    for i, (prompt, answer) in enumerate(facts[: _trimmed(task)]):
        wrong = [a for a in dict.fromkeys(answers + DISTRACTORS) if a != answer]
        rotated = wrong[i:] + wrong[:i]
        options = sorted([answer, *rotated[:3]], key=str.lower)
        questions.append({"prompt": prompt, "options": options, "answer": answer})
    return {"questions": questions}


ANSWERS = {
    "DomainKnowledge": _knowledge,
    "LabelDraft": _labels,
    "SequenceDraft": _steps,
    "SortDraft": _sort,
    "QuizDraft": _quiz,
}
