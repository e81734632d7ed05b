"""The chat model GamED's generating stages ask, and how they ask it.

`GAMED_CHAT_MODEL` ("openai:gpt-4o-mini") is built with LangChain's `init_chat_model`; without
it the stages ask the built-in offline model (`offline.OfflineChatModel`), through the same
code path. Answers are structured output validated by pydantic: an answer that does not
validate goes back to the model with the errors, as LangChain's docs do it.
"""

import json
import logging
from typing import TypeVar

from django.conf import settings
from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.types import RetryPolicy
from pydantic import BaseModel

from pipeline.graphs.gamed.offline import OfflineChatModel

logger = logging.getLogger(__name__)

# Asking again with the errors; a model that is still wrong after that fails the stage.
ANSWER_ATTEMPTS = 3
TRANSIENT_STATUS = {408, 409, 429}
TRANSIENT_ERRORS = {
    "RateLimitError",
    "APITimeoutError",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailableError",
    "TimeoutException",
}


Answer = TypeVar("Answer", bound=BaseModel)


class InvalidAnswer(RuntimeError):
    """The model's answer still did not match the schema after the allowed attempts."""


def chat_model() -> BaseChatModel:
    """The model the settings name, or the offline one. The provider's client reads its key
    from its own environment variable (OPENAI_API_KEY, ...): it is never in the settings."""
    if not settings.GAMED_CHAT_MODEL:
        return OfflineChatModel()
    options = {
        "timeout": settings.GAMED_MODEL_TIMEOUT_SECONDS,
        # The stage's RetryPolicy retries, so that every attempt is visible on the stage.
        "max_retries": 0,
    }
    if settings.GAMED_CHAT_MODEL_BASE_URL:
        options["base_url"] = settings.GAMED_CHAT_MODEL_BASE_URL
    return init_chat_model(settings.GAMED_CHAT_MODEL, **options)


def is_transient(exc: BaseException) -> bool:
    """Rate limits, timeouts and server errors pass; a bad request will not get better."""
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in TRANSIENT_STATUS or status >= 500
    return any(cls.__name__ in TRANSIENT_ERRORS for cls in type(exc).__mro__)


def retry_policy() -> RetryPolicy:
    return RetryPolicy(
        initial_interval=settings.GAMED_MODEL_RETRY_SECONDS,
        backoff_factor=2.0,
        max_attempts=settings.GAMED_MODEL_MAX_ATTEMPTS,
        retry_on=is_transient,
    )


def ask(schema: type[Answer], instructions: str, task: dict) -> Answer:
    """The model's answer to `task` (sent as JSON), validated against `schema`."""
    model = chat_model().with_structured_output(schema, include_raw=True)
    messages: list[BaseMessage] = [
        SystemMessage(instructions),
        HumanMessage(json.dumps(task, indent=1, ensure_ascii=False)),
    ]
    problem = ""
    for attempt in range(1, ANSWER_ATTEMPTS + 1):
        answer = model.invoke(messages)
        if answer["parsing_error"] is None and answer["parsed"] is not None:
            return answer["parsed"]
        problem = str(answer["parsing_error"] or "no answer")[:2000]
        logger.warning("Answer %s does not match %s: %s", attempt, schema.__name__, problem)
        raw = answer["raw"]
        messages.append(raw)
        retry = f"Your answer is invalid: {problem}\nAnswer again, matching the schema."
        # A tool call must be answered by its tool's message before anything else is said.
        calls = getattr(raw, "tool_calls", None) or []
        messages.extend(ToolMessage(retry, tool_call_id=call["id"]) for call in calls)
        if not calls:
            messages.append(HumanMessage(retry))
    raise InvalidAnswer(
        f"the model's answer did not match {schema.__name__} after {ANSWER_ATTEMPTS} "
        f"attempts: {problem}"
    )
