"""Small typed readers for settings that come from the environment."""

import json
import os
from decimal import Decimal

from django.core.exceptions import ImproperlyConfigured

from pipeline.lib import parse_duration


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_duration(name: str, default: str) -> int:
    raw = os.environ.get(name) or default
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


def env_header(name: str) -> tuple[str, str] | None:
    """ "X-Forwarded-Proto: https" as Django's (META key, value) pair; unset: None."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    header, colon, value = raw.partition(":")
    if not (colon and header.strip() and value.strip()):
        raise ImproperlyConfigured(f'{name} must look like "X-Forwarded-Proto: https", got {raw!r}')
    return "HTTP_" + header.strip().upper().replace("-", "_"), value.strip()


PRICE_KINDS = ("input", "output", "cached_input")


def env_prices(name: str) -> dict[str, dict[str, Decimal]]:
    """{"model": {"input": $, "output": $, "cached_input": $}} per million tokens (cached_input
    optional: cached input tokens cost the input price without it)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return {}
    example = '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}'
    try:
        table = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
    except json.JSONDecodeError:
        raise ImproperlyConfigured(f"{name} must be a JSON object like {example}") from None
    if not isinstance(table, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object like {example}")
    prices = {}
    for model, price in table.items():
        if (
            not isinstance(price, dict)
            or not {"input", "output"} <= set(price)
            or not set(price) <= set(PRICE_KINDS)
            or not all(isinstance(v, Decimal) and v >= 0 for v in price.values())
        ):
            raise ImproperlyConfigured(
                f"{name}: the price of {model!r} must be an object of non-negative numbers with "
                f"input and output (and optionally cached_input), like {example}"
            )
        prices[model] = price
    return prices
