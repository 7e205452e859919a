"""Stripe, through the stripe library: the only module that imports `stripe` (STYLE habit 4).

Two jobs: verify webhooks (`construct_event`) and read subscriptions (`subscription_retrieve`,
`subscriptions_list`), which come back as the typed records of stripe_objects.py.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import requests
import stripe
from django.conf import settings

from billing.stripe_objects import Subscription

# The library logs every request at INFO; a reconciliation makes thousands. Failures raise instead.
logging.getLogger("stripe").setLevel(logging.WARNING)

T = TypeVar("T")

# --- webhook verification ----------------------------------------------------------------------


class WebhookRefused(Exception):
    """Not provably from Stripe, or signed too far from now: nothing may be stored."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class WebhookMalformed(Exception):
    """Authentic (the signature verified) but not a JSON Stripe event."""

    def __init__(self, detail: str, text: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.text = text


def construct_event(payload: bytes, sig_header: str | None, secret: str, *, tolerance: int) -> dict[str, Any]:
    """Verify a webhook with the library's `Webhook.construct_event`; return the event as parsed JSON.

    `construct_event` refuses a timestamp more than `tolerance` seconds in the past but accepts any in
    the future (PITFALLS): the future is checked here, from the header's `t=`, once the signature holds.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookRefused("invalid_signature", "body is not UTF-8, so it carries no Stripe signature") from exc
    try:
        stripe.Webhook.construct_event(text, sig_header, secret, tolerance=tolerance)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRefused(_refusal_code(text, sig_header, secret), str(exc)) from exc
    except (ValueError, TypeError, AttributeError) as exc:
        # Parsing comes after verification inside construct_event: this body is authentic.
        raise WebhookMalformed(f"Not a JSON Stripe event: {exc}", text) from exc
    if _signed_at(sig_header or "") > time.time() + tolerance:
        raise WebhookRefused("stale_timestamp", "timestamp is in the future beyond the tolerance")
    body = json.loads(text)
    if not isinstance(body, dict):
        raise WebhookMalformed("Expected a JSON object.", text)
    return body


def _refusal_code(text: str, sig_header: str | None, secret: str) -> str:
    """construct_event checks the signature before the age: a signature valid without a tolerance means stale."""
    try:
        stripe.WebhookSignature.verify_header(text, sig_header, secret, tolerance=None)
    except (stripe.SignatureVerificationError, ValueError):
        return "invalid_signature"
    return "stale_timestamp"


def _signed_at(sig_header: str) -> int:
    for part in sig_header.split(","):
        key, _, value = part.partition("=")
        if key.strip() == "t":
            return int(value)
    raise WebhookRefused("invalid_signature", "no timestamp in Stripe-Signature")


def sign_payload(payload: str, secret: str, *, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header for `payload` (tests and local tooling), by the library's own scheme."""
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


# --- parsing Stripe objects -------------------------------------------------------------------


# --- reading subscriptions ----------------------------------------------------------------------


class StripeBillingError(Exception):
    """A Stripe read failed; `retryable` says whether trying again later can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class _CABundleSession(requests.Session):
    """stripe's RequestsClient passes its own CA bundle on every request, which overrides
    REQUESTS_CA_BUNDLE: put the environment's bundle back (CONTRACT §1 — how tests trust a stand-in)."""

    def __init__(self, ca_bundle: str) -> None:
        super().__init__()
        self.ca_bundle = ca_bundle

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("verify", True) is not False:
            kwargs["verify"] = self.ca_bundle
        return super().request(method, url, *args, **kwargs)


def api_base() -> str:
    return settings.STRIPE_API_BASE.rstrip("/")


def stripe_client() -> stripe.StripeClient:
    """A client for STRIPE_API_BASE with STRIPE_API_KEY, a timeout, and REQUESTS_CA_BUNDLE honoured."""
    if not settings.STRIPE_API_KEY:
        raise StripeBillingError(
            "STRIPE_API_KEY is not set: set it to the Stripe account's secret key (sk_live_… or sk_test_…).",
            retryable=False,
        )
    if not api_base().startswith(("https://", "http://")):
        raise StripeBillingError(
            f"STRIPE_API_BASE={settings.STRIPE_API_BASE!r} is not an http(s) address: leave it unset for Stripe "
            "itself (https://api.stripe.com) or set the base address of a local stand-in.",
            retryable=False,
        )
    bundle = os.environ.get("REQUESTS_CA_BUNDLE", "")
    session = _CABundleSession(bundle) if bundle else requests.Session()
    timeout = getattr(settings, "STRIPE_TIMEOUT_SECONDS", 20.0)
    return stripe.StripeClient(
        settings.STRIPE_API_KEY,
        base_addresses={"api": api_base()},
        http_client=stripe.RequestsClient(timeout=timeout, session=session),
        max_network_retries=2,
    )


def _call(read: Callable[[], T]) -> T:
    """Run one read; turn the library's errors into StripeBillingError telling what to fix."""
    try:
        return read()
    except stripe.AuthenticationError as exc:
        raise StripeBillingError(
            f"Stripe at {api_base()} refused the API key ({exc.user_message or exc}): check STRIPE_API_KEY.",
            retryable=False,
        ) from exc
    except stripe.PermissionError as exc:
        raise StripeBillingError(
            f"The key in STRIPE_API_KEY may not read subscriptions ({exc.user_message or exc}): use a key that can.",
            retryable=False,
        ) from exc
    except stripe.APIConnectionError as exc:
        raise StripeBillingError(
            f"Could not reach Stripe at {api_base()} ({exc.user_message or exc}): check STRIPE_API_BASE, and "
            "REQUESTS_CA_BUNDLE when it is a local https stand-in.",
            retryable=True,
        ) from exc
    except stripe.RateLimitError as exc:
        raise StripeBillingError(f"Stripe rate limit: {exc.user_message or exc}", retryable=True) from exc
    except stripe.StripeError as exc:
        status = exc.http_status
        raise StripeBillingError(
            f"Stripe at {api_base()} answered {status or 'no status'}: {exc.user_message or exc}. Check that "
            "STRIPE_API_BASE is the Stripe API's base address.",
            retryable=status is None or status >= 500,
        ) from exc


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict(for_json=True)


def subscription_retrieve(subscription_id: str, *, client: stripe.StripeClient | None = None) -> Subscription | None:
    """One subscription with its customer and products expanded; None when Stripe has no such id."""
    client = client or stripe_client()
    params = {"expand": ["customer", "items.data.price.product"]}
    try:
        return Subscription.parse(_plain(_call(lambda: client.v1.subscriptions.retrieve(subscription_id, params))))
    except StripeBillingError as exc:
        cause = exc.__cause__
        if isinstance(cause, stripe.InvalidRequestError) and cause.http_status == 404:
            return None
        raise


def subscriptions_list(*, client: stripe.StripeClient | None = None, page_size: int = 100) -> Iterator[Subscription]:
    """Every subscription in the account, canceled ones included, with its customer expanded."""
    client = client or stripe_client()
    params = {"status": "all", "limit": page_size, "expand": ["data.customer"]}
    pages = _call(lambda: client.v1.subscriptions.list(params).auto_paging_iter())
    while True:
        found = _call(lambda: next(pages, None))
        if found is None:
            return
        yield Subscription.parse(_plain(found))
