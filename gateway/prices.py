"""The price table: what a model request costs, in one place.

Prices are US dollars per million tokens by model family (Anthropic's list prices for the
current generation). Cache writes are billed at 1.25x the input price (5-minute cache), cache
reads at 0.1x. A model whose name names no known family is priced as Opus, the dearest, so an
unknown name never makes spending look smaller than it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestration_protocol.gateway import LedgerEntry


@dataclass(frozen=True)
class Price:
    """Prices of one model family, USD per million tokens."""

    input: float
    """Input tokens (not cached)."""
    output: float
    """Output tokens."""
    cache_write: float
    """Input tokens written to the prompt cache."""
    cache_read: float
    """Input tokens read from the prompt cache."""


def _family(input_usd: float, output_usd: float) -> Price:
    return Price(input_usd, output_usd, input_usd * 1.25, input_usd * 0.1)


PRICES: dict[str, Price] = {
    "opus": _family(5.0, 25.0),
    "sonnet": _family(3.0, 15.0),
    "haiku": _family(1.0, 5.0),
}
"""Per family, matched as a substring of the model name."""

DEFAULT_PRICE = PRICES["opus"]
"""For a model name that names no family."""


def price_of(model: str | None) -> Price:
    """The price of a model by its name (``claude-sonnet-4-5`` -> sonnet)."""
    name = (model or "").lower()
    for family, price in PRICES.items():
        if family in name:
            return price
    return DEFAULT_PRICE


def cost_usd(entry: LedgerEntry) -> float:
    """What the usage in ``entry`` costs at its model's price."""
    price = price_of(entry.model)
    total = (
        entry.input_tokens * price.input
        + entry.output_tokens * price.output
        + entry.cache_creation_input_tokens * price.cache_write
        + entry.cache_read_input_tokens * price.cache_read
    )
    return round(total / 1_000_000, 8)


@dataclass(frozen=True)
class Cost:
    """What one request could cost: ``fixed`` (input) plus ``per_output`` per output token."""

    fixed: float
    """The input's worst case, USD."""
    per_output: float
    """USD per output token."""
    max_tokens: int | None
    """The request's ``max_tokens`` (None: not given, ``fixed`` is all)."""
    min_output_tokens: int = 1024
    """The fewest output tokens a lowered ``max_tokens`` may have."""

    def usd(self, tokens: int | None) -> float:
        """The worst case with ``tokens`` output tokens."""
        return self.fixed + self.per_output * (tokens or 0)


def request_cost(model: str | None, max_tokens: int | None, body_bytes: int,
                 bytes_per_token: float, min_output_tokens: int) -> Cost:
    """The worst case of a request before it is sent: its body's bytes read as input tokens at
    the dearest input price (a cache write), and ``max_tokens`` at the output price."""
    price = price_of(model)
    fixed = body_bytes / bytes_per_token * price.cache_write / 1_000_000
    return Cost(fixed, price.output / 1_000_000, max_tokens, min_output_tokens)

