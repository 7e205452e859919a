"""Payload schemas of the provisioning webhook (CONTRACT §2), declared as DRF serializers and checked by lean
per-field checks derived from them (run_schema), with DRF's own fields deciding whatever those cannot vouch for.

`parse_provisioning_body` turns raw bytes into a typed `ParsedWebhook` or raises `PayloadInvalid`
with errors keyed the way the 422 body names them (`data.workspace_id`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from rest_framework import serializers

from events.fields import RFC3339Field, TimeZoneField
from events.jsonbody import (
    MAX_JSON_DEPTH,
    MAX_JSON_INT,
    TOO_DEEP,
    PayloadInvalid,
    _load_json,
    json_depth,
    load_json,
    nesting_exceeds,
    number_errors,
)
from events.lean import run_schema


def _text(max_length: int, *, required: bool = False) -> serializers.CharField:
    return serializers.CharField(
        max_length=max_length, required=required, allow_blank=not required, trim_whitespace=True
    )


class WorkspaceRefSerializer(serializers.Serializer):
    workspace_id = _text(64, required=True)


class TrialStartedSerializer(WorkspaceRefSerializer):
    email = serializers.EmailField(max_length=254)
    workspace_name = _text(255)
    first_name = _text(100)
    last_name = _text(100)
    company = _text(255)
    plan = _text(64)
    trial_expires_at = RFC3339Field(required=False)
    acquisition_channel = _text(64)
    campaign = _text(128)
    timezone = TimeZoneField()


class SubscriptionConvertedSerializer(WorkspaceRefSerializer):
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    plan = _text(64, required=True)
    mrr = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, coerce_to_string=True)
    currency = serializers.RegexField(r"^[A-Za-z]{3}$", required=False, default="USD")
    subscription_id = _text(255)
    billing_interval = serializers.ChoiceField(
        choices=["day", "week", "month", "year"], required=False, allow_blank=True
    )


class WorkspaceChurnedSerializer(WorkspaceRefSerializer):
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    churned_at = RFC3339Field(required=False)
    reason = _text(255)


class UsageRecordedSerializer(WorkspaceRefSerializer):
    feature = _text(100, required=True)
    user_email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    count = serializers.IntegerField(min_value=0, max_value=10**9, required=False, default=1)
    duration_seconds = serializers.FloatField(min_value=0, required=False)
    product = _text(64)
    outcome = serializers.ChoiceField(choices=["success", "error"], required=False)


class TicketOpenedSerializer(WorkspaceRefSerializer):
    ticket_id = _text(128, required=True)
    priority = serializers.ChoiceField(choices=["low", "normal", "high", "urgent"], required=False)
    user_email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    subject = _text(255)


class TicketResolvedSerializer(WorkspaceRefSerializer):
    ticket_id = _text(128, required=True)
    satisfaction = serializers.IntegerField(min_value=1, max_value=5, required=False)


class PlanLimitReachedSerializer(WorkspaceRefSerializer):
    limit = _text(64, required=True)
    used = serializers.IntegerField(min_value=0, max_value=MAX_JSON_INT, required=False)
    allowed = serializers.IntegerField(min_value=0, max_value=MAX_JSON_INT, required=False)


class PaymentFailedSerializer(WorkspaceRefSerializer):
    """`billing.payment_failed`, from Stripe's invoice.payment_failed: marks the workspace at risk."""

    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    subscription_id = _text(255)
    invoice_id = _text(255)
    amount_due = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=0, coerce_to_string=True, required=False, allow_null=True
    )
    currency = serializers.RegexField(r"^[A-Za-z]{3}$", required=False, default="USD")
    attempt_count = serializers.IntegerField(min_value=0, required=False)
    next_payment_attempt = RFC3339Field(required=False, allow_null=True)
    billing_reason = _text(64)


class TrialWillEndSerializer(WorkspaceRefSerializer):
    """`billing.trial_will_end`, from Stripe's customer.subscription.trial_will_end (an alert input)."""

    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    subscription_id = _text(255)
    trial_end = RFC3339Field(required=False, allow_null=True)


class RenewalUpdatedSerializer(WorkspaceRefSerializer):
    """`billing.renewal_updated`: the Stripe subscription's next renewal (webhook or reconciliation)."""

    subscription_id = _text(255)
    renews_at = RFC3339Field(required=False, allow_null=True)


class EnvelopeSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=64)
    timestamp = RFC3339Field()
    data = serializers.DictField()


@dataclass(frozen=True)
class ParsedWebhook:
    type: str
    occurred_at: datetime
    workspace_key: str
    known: bool
    body: dict[str, Any]
    data: dict[str, Any]


def _data_errors(event_type: str, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    validated, errors = run_schema(STORED_DATA_SCHEMAS[event_type], data, "data")
    return ({}, errors) if errors else (validated, {})


def validate_data(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """Validated `data` of a known type (also used by the processor to read stored payloads)."""
    validated, errors = _data_errors(event_type, data)
    if errors:
        raise PayloadInvalid(errors)
    return validated


def parse_provisioning_body(raw: bytes) -> ParsedWebhook:
    """Parse and validate a body; every wrong field is reported at once, envelope and data alike."""
    return parse_provisioning_event(load_json(raw))


def parse_provisioning_event(body: Any) -> ParsedWebhook:
    """Validate one parsed event (a body, or one event of a batch): its type, timestamp and data."""
    if not isinstance(body, dict):
        raise PayloadInvalid({"body": ["Expected a JSON object with type, timestamp and data."]}, body=body)
    envelope, errors = run_schema(EnvelopeSerializer, body)
    event_type, raw_data = body.get("type"), body.get("data")
    known = isinstance(event_type, str) and event_type in DATA_SCHEMAS
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    if known and isinstance(raw_data, dict):
        data, data_errors = _data_errors(event_type, raw_data)
        errors.update(data_errors)
    if errors:
        raise PayloadInvalid(errors, body=body)
    candidate = data.get("workspace_id")
    return ParsedWebhook(
        type=event_type,
        occurred_at=envelope["timestamp"],
        workspace_key=candidate[:64] if isinstance(candidate, str) else "",
        known=known,
        body=body,
        data=data,
    )


class MarketoLeadSerializer(serializers.Serializer):
    """CONTRACT §5: a lead created in Marketo."""

    lead_id = serializers.CharField(max_length=64)
    email = serializers.EmailField(max_length=254)
    first_name = _text(100)
    last_name = _text(100)
    company = _text(255)
    created_at = RFC3339Field(required=False)


def parse_marketo_body(raw: bytes) -> dict[str, Any]:
    body = load_json(raw)
    if not isinstance(body, dict):
        raise PayloadInvalid({"body": ["Expected a JSON object."]}, body=body)
    lead, errors = run_schema(MarketoLeadSerializer, body)
    if errors:
        raise PayloadInvalid(errors, body=body)
    return {"body": body, **lead}


#: Most events one batch may carry (CONTRACT §2b).
MAX_BATCH_EVENTS = 1000
#: A batch nests its events two levels down ({"events": [event, …]}); each may nest MAX_JSON_DEPTH. A body is
#: parsed up to this depth, so an event nested too deep is rejected on its own (the parser and the walks
#: below are safe far deeper); a body deeper still is refused whole.
_BATCH_DEPTH = 4 * MAX_JSON_DEPTH


@dataclass(frozen=True)
class BatchItem:
    """One event of a batch: its id and either the parsed event or why it is rejected."""

    index: int
    id: str
    parsed: ParsedWebhook | None = None
    error: PayloadInvalid | None = None


def _event_id_errors(index: int, event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["Expected a JSON object with id, type, timestamp and data."]
    event_id = event.get("id")
    if event_id is None:
        return ["This field is required."]
    if type(event_id) is not str or not event_id.strip():  # _OutOfRange is a str: a number is not an id
        return ["Enter the event's id as a non-empty string."]
    if len(event_id) > 255:
        return ["At most 255 characters."]
    return []


def parse_batch_body(raw: bytes) -> list[BatchItem]:
    """Parse a batch (CONTRACT §2b): each event validated as §2 validates a body, its problems its own.

    A malformed envelope (not JSON, no `events` list, more than MAX_BATCH_EVENTS, an event without a usable
    id, a bad number outside the events) raises PayloadInvalid: the whole batch is refused.
    """
    depth = json_depth(raw, _BATCH_DEPTH)  # one scan: the whole body's limit, and whether an event can be too deep
    if depth > _BATCH_DEPTH:
        raise PayloadInvalid({"body": [TOO_DEEP]}, body=raw.decode("utf-8", "replace"))
    body, bad_numbers = _load_json(raw, None)
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list):
        raise PayloadInvalid({"events": ["Expected a list of events."]}, body=_storable(body, bad_numbers))
    if len(events) > MAX_BATCH_EVENTS:
        message = f"At most {MAX_BATCH_EVENTS:,} events per batch; this one has {len(events):,}."
        raise PayloadInvalid({"events": [message]}, body=_storable(body, bad_numbers))
    errors = {f"events.{i}.id": found for i, event in enumerate(events) if (found := _event_id_errors(i, event))}
    if bad_numbers:
        errors.update(number_errors({key: value for key, value in body.items() if key != "events"}))
    if errors:
        raise PayloadInvalid(errors, body=_storable(body, bad_numbers))
    deep = depth > MAX_JSON_DEPTH + 2  # only then can an event be too deep
    items = []
    for index, event in enumerate(events):
        try:
            if deep and nesting_exceeds(event):
                raise PayloadInvalid({"body": [TOO_DEEP]})
            if bad_numbers and (found := number_errors(event)):
                raise PayloadInvalid(found)
            items.append(BatchItem(index, event["id"], parsed=parse_provisioning_event(event)))
        except PayloadInvalid as exc:
            stored = PayloadInvalid(exc.fields, body=_storable(event, bool(deep or bad_numbers)))
            items.append(BatchItem(index, event["id"], error=stored))
    return items


def _storable(value: Any, unholdable: bool) -> Any:
    """A parsed value as a rejected event keeps it: as text when it may hold what no JSON column can
    (numbers out of range, NaN, nesting too deep), else as it is."""
    return json.dumps(value) if unholdable else value


class Handling(StrEnum):
    """What the engine does with a stored event of a type, once (events/services.py enqueue_work routes by it)."""

    FOLDED = "folded"  # its workspace is re-folded (workspaces/lifecycle.py FOLDS, processing/pipeline.py)
    ROLLED_UP = "rolled_up"  # added to the behaviour rollups in batches (usage/rollups.py)
    MARKETO = "marketo"  # links a lead (linking/marketo.py)
    IGNORED = "ignored"  # stored, never applied


@dataclass(frozen=True)
class EventType:
    """One stored event type: how its `data` validates, what handles it, and whether the provisioning
    webhook takes it (CONTRACT §2; the others come from Stripe or Marketo)."""

    name: str
    schema: type[serializers.Serializer]
    handling: Handling
    webhook: bool = True


#: Every event type the engine stores and applies, declared once. A type the webhook accepts must be
#: folded or rolled up (tests/events/test_event_types.py): one without a handler would stay `new` forever.
EVENT_TYPES: dict[str, EventType] = {
    event_type.name: event_type
    for event_type in (
        EventType("trial.started", TrialStartedSerializer, Handling.FOLDED),
        EventType("subscription.converted", SubscriptionConvertedSerializer, Handling.FOLDED),
        EventType("workspace.churned", WorkspaceChurnedSerializer, Handling.FOLDED),
        EventType("usage.recorded", UsageRecordedSerializer, Handling.ROLLED_UP),
        EventType("support.ticket_opened", TicketOpenedSerializer, Handling.ROLLED_UP),
        EventType("support.ticket_resolved", TicketResolvedSerializer, Handling.ROLLED_UP),
        EventType("plan.limit_reached", PlanLimitReachedSerializer, Handling.ROLLED_UP),
        # From Stripe only: the processor reads them, the provisioning webhook does not accept them.
        EventType("billing.payment_failed", PaymentFailedSerializer, Handling.FOLDED, webhook=False),
        EventType("billing.trial_will_end", TrialWillEndSerializer, Handling.FOLDED, webhook=False),
        EventType("billing.renewal_updated", RenewalUpdatedSerializer, Handling.FOLDED, webhook=False),
        # From Marketo: its schema is the whole body (CONTRACT §5), not a `data` object.
        EventType("marketo.lead_created", MarketoLeadSerializer, Handling.MARKETO, webhook=False),
    )
}


def types_handled(handling: Handling) -> tuple[str, ...]:
    """The registered types with this handling, in declaration order."""
    return tuple(name for name, event_type in EVENT_TYPES.items() if event_type.handling == handling)


#: The provisioning webhook's types (CONTRACT §2) and their `data` schemas.
DATA_SCHEMAS = {name: t.schema for name, t in EVENT_TYPES.items() if t.webhook}
#: Every type whose stored payload has a `data` object to re-validate.
STORED_DATA_SCHEMAS = {name: t.schema for name, t in EVENT_TYPES.items() if t.handling != Handling.MARKETO}
ROLLED_UP_TYPES = types_handled(Handling.ROLLED_UP)
MARKETO_TYPE = "marketo.lead_created"
