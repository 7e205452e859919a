"""Per-source rate limits of the webhook endpoints: 429 `{"error": "rate_limited"}` with Retry-After.

Each source (provisioning, Stripe, Marketo) has a budget of authenticated requests per minute
(WEBHOOK_RATE_LIMITS). Requests that fail authentication count in a separate, smaller budget of the
same source, so a flood of forged requests can neither spend the real sender's budget nor another
source's, and once over it they get 429 instead of 401.

Counting is one cache increment per request in a fixed one-minute window: in-process (locmem) by
default, shared across processes when CACHE_URL points at Redis. If the cache fails, requests pass
(a limiter must not take the webhooks down).
"""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.http import JsonResponse

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


def rate_limit_wait(bucket: str, limit: int) -> int | None:
    """Count one request in `bucket`; the seconds until its window ends when over `limit`, else None."""
    if limit <= 0:
        return None
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    key = f"webhook-rate:{bucket}:{window}"
    try:
        try:
            count = cache.incr(key)
        except ValueError:  # first request of the window
            count = 1 if cache.add(key, 1, timeout=2 * WINDOW_SECONDS) else cache.incr(key)
    except Exception:
        logger.warning("webhook rate limit not counted: the cache failed", exc_info=True)
        return None
    if count <= limit:
        return None
    return max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))


def rate_limited(wait: int) -> JsonResponse:
    response = JsonResponse({"error": "rate_limited"}, status=429)
    response["Retry-After"] = str(wait)
    return response


def webhook_throttle(source: str) -> JsonResponse | None:
    """Count an authenticated request of `source`; a 429 answer when its budget is spent."""
    wait = rate_limit_wait(source, settings.WEBHOOK_RATE_LIMITS.get(source, settings.WEBHOOK_RATE_LIMIT_PER_MINUTE))
    return rate_limited(wait) if wait else None


def webhook_refusal(source: str, status: int, error: str) -> JsonResponse:
    """The answer to a request that failed authentication: `status` with `error`, or 429 once the
    source's unauthenticated budget is spent."""
    wait = rate_limit_wait(f"{source}:unauthenticated", settings.WEBHOOK_UNAUTHENTICATED_LIMIT_PER_MINUTE)
    return rate_limited(wait) if wait else JsonResponse({"error": error}, status=status)
