"""CONTRACT §4: the Stripe webhook, `POST /webhooks/stripe/`.

Same steps as the other webhooks (STYLE habit 2): configured? → size limit → verify (the stripe
library's `Webhook.construct_event`, through `billing.stripe_adapter`) → validate → store idempotently on
the Stripe event id → answer. A handled event is mapped into the lifecycle event it means and stored
in the shape the processor reads, with source `stripe`, so ordering and dedupe apply across sources:

    {"type": <lifecycle type>, "timestamp": <event.created>, "data": {...}, "stripe": {"event_id", "type", "object_id"}}

| Stripe event | stored as |
| --- | --- |
| customer.subscription.created, status trialing / active | trial.started / subscription.converted |
| customer.subscription.updated, to active from trialing/incomplete/past_due/unpaid/paused | subscription.converted |
| customer.subscription.updated, status canceled; customer.subscription.deleted | workspace.churned |
| customer.subscription.updated, any other change of a live subscription (a renewal) | billing.renewal_updated |
| customer.subscription.trial_will_end | billing.trial_will_end |
| invoice.paid, billing_reason subscription_create / subscription_cycle, amount > 0 | subscription.converted |
| invoice.payment_failed | billing.payment_failed |

A handled event that means nothing for the lifecycle (a zero invoice at a trial's start, say) is stored
`ignored` with a note saying why, like an unhandled type.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import TimeoutError as StoreTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from billing.stripe_adapter import WebhookMalformed, WebhookRefused, construct_event
from billing.stripe_objects import Invoice, Subscription, instant
from events.fields import instant_in_range
from events.jsonbody import TOO_DEEP, PayloadInvalid, json_nesting_exceeds, load_json, number_errors
from events.models import Event
from events.ratelimit import webhook_refusal, webhook_throttle
from events.schemas import validate_data
from events.services import event_receive
from events.store import NewEvent
from events.views import body_key, claimed_type, error_response, method_not_allowed, read_webhook_body, reject

logger = logging.getLogger(__name__)

WORKSPACE_FIELD = "data.object.metadata.workspace_id"
INVOICE_WORKSPACE_FIELD = "data.object.parent.subscription_details.metadata.workspace_id"
#: A subscription leaving one of these for `active` has just been paid for.
UNPAID_STATUSES = frozenset({"trialing", "incomplete", "past_due", "unpaid", "paused"})
#: Invoices that pay for a subscription period (not a mid-cycle change or a one-off).
PERIOD_INVOICES = frozenset({"subscription_create", "subscription_cycle"})


@dataclass(frozen=True)
class StripeEvent:
    id: str
    type: str
    created: datetime
    object: Mapping[str, Any]
    previous_attributes: Mapping[str, Any]

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> StripeEvent:
        data = body.get("data")
        obj = data.get("object") if isinstance(data, Mapping) else None
        errors: dict[str, list[str]] = {}
        if not isinstance(body.get("id"), str) or not body["id"] or len(body["id"]) > 255:
            errors["id"] = ["A Stripe event id (evt_…) of at most 255 characters is required."]
        if not isinstance(body.get("type"), str) or not body["type"]:
            errors["type"] = ["This field is required."]
        created = instant(body.get("created"))
        if created is None:
            errors["created"] = ["Unix seconds are required."]
        elif not instant_in_range(created):
            errors["created"] = ["Unix seconds from 0 to 32503679999 (1970 to 2999) are required."]
        if not isinstance(obj, Mapping):
            errors["data.object"] = ["This field is required."]
        if errors:
            raise PayloadInvalid(errors, body=dict(body))
        previous = data.get("previous_attributes")
        return cls(
            id=body["id"],
            type=body["type"],
            created=instant(body["created"]),
            object=obj,
            previous_attributes=previous if isinstance(previous, Mapping) else {},
        )


@dataclass(frozen=True)
class Mapped:
    """The lifecycle event a Stripe event means."""

    type: str
    data: dict[str, Any]


class Skip(Exception):
    """Handled type, nothing for the lifecycle: stored `ignored` with this reason."""


class NoWorkspace(Exception):
    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class AmountOutOfRange(Exception):
    """Amounts or quantities whose MRR no decimal holds (a unit_amount of 1e30): the field to name."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def _mrr(billed: Subscription | Invoice, field: str) -> Decimal | None:
    """The object's MRR; its arithmetic overflowing (decimal.InvalidOperation) is an out-of-range `field`."""
    try:
        return billed.mrr
    except ArithmeticError as exc:
        raise AmountOutOfRange(field) from exc


def _rfc3339(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _subscription(event: StripeEvent) -> Subscription:
    subscription = Subscription.parse(event.object)
    if not subscription.workspace_id:
        raise NoWorkspace(WORKSPACE_FIELD)
    return subscription


def _invoice(event: StripeEvent) -> Invoice:
    invoice = Invoice.parse(event.object)
    if not invoice.subscription_id:
        raise Skip(f"Invoice {invoice.id} is not a subscription's: nothing for the lifecycle.")
    if not invoice.workspace_id:
        raise NoWorkspace(INVOICE_WORKSPACE_FIELD)
    return invoice


def _converted(sub: Subscription) -> Mapped:
    mrr = _mrr(sub, "data.object.items")
    if mrr is None:
        raise Skip(f"Subscription {sub.id} has no per-unit price to derive MRR from (tiered or metered).")
    data = {
        "workspace_id": sub.workspace_id,
        "plan": sub.plan,
        "mrr": _money(mrr),
        "currency": sub.currency_code or "USD",
        "subscription_id": sub.id,
        "billing_interval": sub.billing_interval,
    }
    if sub.metadata.get("email"):
        data["email"] = sub.metadata["email"]  # only an address set for the workspace, never a billing contact
    return Mapped("subscription.converted", data)


def _trial_started(sub: Subscription) -> Mapped:
    if not sub.email:
        raise Skip(
            f"Subscription {sub.id} is trialing but names no owner email (metadata.email or an expanded "
            "customer): trial.started needs one; the provisioning trial covers it."
        )
    data = {
        "workspace_id": sub.workspace_id,
        "email": sub.email,
        "plan": sub.plan,
        "trial_expires_at": _rfc3339(sub.trial_end),
    }
    if sub.metadata.get("workspace_name"):
        data["workspace_name"] = sub.metadata["workspace_name"]
    return Mapped("trial.started", {key: value for key, value in data.items() if value is not None})


def _churned(sub: Subscription) -> Mapped:
    data = {
        "workspace_id": sub.workspace_id,
        "churned_at": _rfc3339(sub.ended_at or sub.canceled_at),
        "reason": sub.cancellation_reason,
    }
    return Mapped("workspace.churned", {key: value for key, value in data.items() if value is not None})


def _renewal(sub: Subscription) -> Mapped:
    return Mapped(
        "billing.renewal_updated",
        {"workspace_id": sub.workspace_id, "subscription_id": sub.id, "renews_at": _rfc3339(sub.renews_at)},
    )


def on_subscription_created(event: StripeEvent) -> Mapped:
    sub = _subscription(event)
    if sub.status == "trialing":
        return _trial_started(sub)
    if sub.status == "active":
        return _converted(sub)
    raise Skip(f"Subscription {sub.id} was created {sub.status}: nothing to apply until it is paid.")


def on_subscription_updated(event: StripeEvent) -> Mapped:
    sub = _subscription(event)
    before = event.previous_attributes.get("status")
    if sub.status == "canceled":
        return _churned(sub)
    if sub.status == "active" and before in UNPAID_STATUSES:
        return _converted(sub)
    if sub.status in ("trialing", "active", "past_due", "unpaid"):
        return _renewal(sub)
    raise Skip(f"Subscription {sub.id} is {sub.status}: nothing to apply.")


def on_subscription_deleted(event: StripeEvent) -> Mapped:
    return _churned(_subscription(event))


def on_trial_will_end(event: StripeEvent) -> Mapped:
    sub = _subscription(event)
    data = {
        "workspace_id": sub.workspace_id,
        "subscription_id": sub.id,
        "trial_end": _rfc3339(sub.trial_end),
        "email": sub.email,
    }
    return Mapped("billing.trial_will_end", {key: value for key, value in data.items() if value})


def on_invoice_paid(event: StripeEvent) -> Mapped:
    invoice = _invoice(event)
    if invoice.billing_reason not in PERIOD_INVOICES or invoice.amount_paid <= 0:
        raise Skip(
            f"Invoice {invoice.id} ({invoice.billing_reason or 'no billing_reason'}, amount_paid "
            f"{invoice.amount_paid}) pays no subscription period: nothing to apply."
        )
    mrr = _mrr(invoice, "data.object.lines")
    if not invoice.plan or mrr is None:
        raise Skip(
            f"Invoice {invoice.id} cannot name its plan the way subscription events do (set metadata.plan on the "
            "subscription, or rely on customer.subscription.updated): not applied."
        )
    data = {
        "workspace_id": invoice.workspace_id,
        "plan": invoice.plan,
        "mrr": _money(mrr),
        "currency": invoice.currency or "USD",
        "subscription_id": invoice.subscription_id,
        "billing_interval": invoice.billing_interval,
    }
    if invoice.subscription_metadata.get("email"):
        data["email"] = invoice.subscription_metadata["email"]
    return Mapped("subscription.converted", data)


def on_payment_failed(event: StripeEvent) -> Mapped:
    invoice = _invoice(event)
    data = {
        "workspace_id": invoice.workspace_id,
        "subscription_id": invoice.subscription_id,
        "invoice_id": invoice.id,
        "amount_due": _money(invoice.major(invoice.amount_due)),
        "currency": invoice.currency or "USD",
        "attempt_count": invoice.attempt_count,
        "next_payment_attempt": _rfc3339(invoice.next_payment_attempt),
        "billing_reason": invoice.billing_reason,
        "email": invoice.customer_email,
    }
    return Mapped("billing.payment_failed", {key: value for key, value in data.items() if value not in (None, "")})


HANDLERS: dict[str, Callable[[StripeEvent], Mapped]] = {
    "customer.subscription.created": on_subscription_created,
    "customer.subscription.updated": on_subscription_updated,
    "customer.subscription.deleted": on_subscription_deleted,
    "customer.subscription.trial_will_end": on_trial_will_end,
    "invoice.paid": on_invoice_paid,
    "invoice.payment_failed": on_payment_failed,
}


@csrf_exempt
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return method_not_allowed()
    secret = settings.STRIPE_WEBHOOK_SECRET.strip()
    if not secret:
        return error_response(503, "not_configured")
    body = read_webhook_body(request)
    if isinstance(body, JsonResponse):
        return body
    raw: dict[str, Any] | None = None
    try:
        raw = construct_event(
            body, request.headers.get("Stripe-Signature"), secret, tolerance=settings.WEBHOOK_TOLERANCE_SECONDS
        )
        event = StripeEvent.parse(_held(raw, body))
    except WebhookRefused as exc:
        # Never log the body of a request we could not authenticate.
        logger.warning(
            "stripe webhook refused: %s (%s); remote=%s", exc.code, exc.detail, request.META.get("REMOTE_ADDR")
        )
        return webhook_refusal(Event.Source.STRIPE, 401, exc.code)
    except RecursionError:
        # The library parses only once the signature holds: an authentic body nested past the parser's stack.
        return reject(Event.Source.STRIPE, body_key(body), "", PayloadInvalid({"body": [TOO_DEEP]}, body=_text(body)))
    except WebhookMalformed as exc:
        return reject(Event.Source.STRIPE, body_key(body), "", _malformed(body, exc))
    except PayloadInvalid as exc:  # the event as parsed names its id and type, even when it is kept as text
        claimed = raw.get("id") if raw is not None else None
        external_id = claimed if isinstance(claimed, str) and 0 < len(claimed) <= 255 else body_key(body)
        return reject(Event.Source.STRIPE, external_id, claimed_type(raw), exc)
    if (throttled := webhook_throttle(Event.Source.STRIPE)) is not None:
        return throttled
    handler = HANDLERS.get(event.type)
    if handler is None:
        return _store(event, _ignored(event, raw, f"Stripe type {event.type!r} is not handled; stored, not applied."))
    try:
        mapped = handler(event)
        validate_data(mapped.type, mapped.data)
    except Skip as exc:
        return _store(event, _ignored(event, raw, str(exc)))
    except NoWorkspace as exc:
        fields = {exc.field: ["Set metadata.workspace_id on the subscription (or its customer)."]}
        return reject(Event.Source.STRIPE, event.id, event.type, PayloadInvalid(fields, body=raw))
    except AmountOutOfRange as exc:
        fields = {exc.field: ["The amounts and quantities give an MRR out of range."]}
        return reject(Event.Source.STRIPE, event.id, event.type, PayloadInvalid(fields, body=raw))
    except PayloadInvalid as exc:
        fields = {f"mapped.{name}": messages for name, messages in exc.fields.items()}
        return reject(Event.Source.STRIPE, event.id, event.type, PayloadInvalid(fields, body=raw))
    return _store(event, _accepted(event, mapped))


def _accepted(event: StripeEvent, mapped: Mapped) -> NewEvent:
    return NewEvent(
        source=Event.Source.STRIPE,
        external_id=event.id,
        type=mapped.type,
        occurred_at=event.created,
        workspace_key=mapped.data["workspace_id"],
        payload={
            "type": mapped.type,
            "timestamp": _rfc3339(event.created),
            "data": mapped.data,
            "stripe": {"event_id": event.id, "type": event.type, "object_id": event.object.get("id")},
        },
    )


def _ignored(event: StripeEvent, raw: dict[str, Any], note: str) -> NewEvent:
    metadata = event.object.get("metadata")
    candidate = metadata.get("workspace_id") if isinstance(metadata, Mapping) else None
    return NewEvent(
        source=Event.Source.STRIPE,
        external_id=event.id,
        type=event.type[:64],
        occurred_at=event.created,
        workspace_key=candidate.strip()[:64] if isinstance(candidate, str) else "",
        payload=raw,
        status=Event.Status.IGNORED,
        notes=note,
    )


def _store(event: StripeEvent, new: NewEvent) -> JsonResponse:
    try:
        is_new = event_receive(event=new)
    except (DatabaseError, StoreTimeout):
        logger.exception("stripe webhook %s could not be stored", event.id)
        return error_response(503, "store_unavailable", retry=True)
    if not is_new:
        return JsonResponse({"id": event.id, "status": "duplicate"}, status=200)
    status = "ignored" if new.status == Event.Status.IGNORED else "accepted"
    return JsonResponse({"id": event.id, "status": status}, status=202)


def _held(raw: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The parsed event, if the engine can hold it (CONTRACT §2: nesting, numbers); else PayloadInvalid."""
    if json_nesting_exceeds(body):
        raise PayloadInvalid({"body": [TOO_DEEP]}, body=_text(body))
    if errors := number_errors(raw):
        raise PayloadInvalid(errors, body=_text(body))
    return raw


def _malformed(body: bytes, exc: WebhookMalformed) -> PayloadInvalid:
    """What is wrong with an authentic body that is no JSON object, named as load_json names it."""
    try:
        load_json(body)
    except PayloadInvalid as invalid:
        return invalid
    return PayloadInvalid({"body": [exc.detail]}, body=exc.text)


def _text(body: bytes) -> str:
    return body.decode("utf-8", "replace")
