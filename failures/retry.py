"""The one backoff rule every retry uses (events, Salesforce writes, alert deliveries): capped
exponential, optionally jittered, with its own parameters per caller."""

from __future__ import annotations

import random
from datetime import timedelta


def backoff(
    attempt: int,
    *,
    base: float,
    cap: float,
    factor: float = 2.0,
    spread: float = 0.0,
    jitter: float | None = None,
    first: tuple[float, float] | None = None,
) -> timedelta:
    """The delay before retry number `attempt` (1 = the first retry).

    base·factor^(attempt-1) seconds, at most `cap`, then scaled into (1-spread)–100 % of that by
    `jitter` (0–1; random when None), so many failures at once do not come back at once. `first`: the
    first retry's own (low, high) window in seconds instead, placed by the same jitter.
    """
    share = random.random() if jitter is None else jitter
    if first is not None and attempt <= 1:
        low, high = first
        return timedelta(seconds=low + (high - low) * share)
    ceiling = min(cap, base * factor ** (attempt - 1))
    return timedelta(seconds=ceiling * (1 - spread + spread * share))
