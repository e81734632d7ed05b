"""Token usage and cost of the chat model calls a stage makes, as LangChain reports them."""

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from django.conf import settings
from langchain_core.outputs import ChatGeneration, LLMResult

MILLION = Decimal(1_000_000)
COST_PLACES = Decimal("0.000001")
UNKNOWN_MODEL = "unknown"


@dataclass
class Usage:
    """What the calls to one model added up to."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def add(self, other: "Usage") -> None:
        for name in (f.name for f in fields(self)):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def model_name(response: LLMResult, started_as: str) -> str:
    """The model that answered: what the provider says, else what the call asked for."""
    for generation in _first_generations(response):
        metadata = getattr(getattr(generation, "message", None), "response_metadata", None) or {}
        for key in ("model_name", "model"):
            if isinstance(metadata.get(key), str) and metadata[key]:
                return metadata[key]
    llm_output = response.llm_output or {}
    for key in ("model_name", "model"):
        if isinstance(llm_output.get(key), str) and llm_output[key]:
            return llm_output[key]
    return started_as or UNKNOWN_MODEL


def usage_of(response: LLMResult) -> Usage:
    """One call's tokens: `AIMessage.usage_metadata`, else the provider's `token_usage`."""
    usage = Usage(calls=1)
    reported = False
    for generation in _first_generations(response):
        message = generation.message if isinstance(generation, ChatGeneration) else None
        metadata = getattr(message, "usage_metadata", None)
        if not metadata:
            continue
        reported = True
        usage.input_tokens += metadata.get("input_tokens") or 0
        usage.output_tokens += metadata.get("output_tokens") or 0
        usage.total_tokens += metadata.get("total_tokens") or 0
        usage.cached_tokens += (metadata.get("input_token_details") or {}).get("cache_read") or 0
        usage.reasoning_tokens += (metadata.get("output_token_details") or {}).get("reasoning") or 0
    if not reported:
        llm_output = response.llm_output or {}
        counts = llm_output.get("token_usage") or llm_output.get("usage") or {}
        if isinstance(counts, dict):
            usage.input_tokens = counts.get("prompt_tokens") or counts.get("input_tokens") or 0
            usage.output_tokens = (
                counts.get("completion_tokens") or counts.get("output_tokens") or 0
            )
            usage.total_tokens = counts.get("total_tokens") or 0
    if not usage.total_tokens:
        usage.total_tokens = usage.input_tokens + usage.output_tokens
    return usage


def _first_generations(response: LLMResult) -> list[Any]:
    # One list per prompt; with n > 1 every generation of a prompt carries the same usage.
    return [candidates[0] for candidates in response.generations if candidates]


def price_of(model: str) -> dict[str, Decimal] | None:
    """The model's prices in $ per million tokens: its own entry in GAMED_MODEL_PRICES, else
    the longest entry it is a dated or suffixed variant of ("gpt-4o-mini-2024-07-18")."""
    prices = settings.GAMED_MODEL_PRICES
    if model in prices:
        return prices[model]
    variants = [name for name in prices if model.startswith(name + "-")]
    return prices[max(variants, key=len)] if variants else None


def cost_of(model: str, usage: Usage) -> Decimal | None:
    """None for a model without a price: its tokens are shown, its cost is not known."""
    price = price_of(model)
    if price is None:
        return None
    cached = min(usage.cached_tokens, usage.input_tokens)
    cost = (
        (usage.input_tokens - cached) * price["input"]
        + cached * price.get("cached_input", price["input"])
        + usage.output_tokens * price["output"]
    ) / MILLION
    return cost.quantize(COST_PLACES)


def stage_fields(by_model: dict[str, Usage]) -> dict:
    """A stage row's usage fields, and `model_usage`: one row per model it called."""
    if not by_model:
        return {}
    total = Usage()
    costs = []
    rows = []
    for model, usage in sorted(by_model.items()):
        total.add(usage)
        cost = cost_of(model, usage)
        if cost is not None:
            costs.append(cost)
        rows.append({"model": model[:200], "cost_usd": cost, **vars(usage)})
    return {
        "model_id": ", ".join(sorted(by_model))[:100],
        "model_calls": total.calls,
        "prompt_tokens": total.input_tokens,
        "completion_tokens": total.output_tokens,
        "total_tokens": total.total_tokens,
        "cost_usd": sum(costs, Decimal(0)) if costs else None,
        "model_usage": rows,
    }
