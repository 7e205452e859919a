"""The signed webhooks in the OpenAPI schema at /api/schema/ (CONTRACT §2, §4, §5).

The webhooks are plain Django views, not DRF views, so drf-spectacular cannot see them: this
postprocessing hook merges a hand-written fragment into the generated schema. The fragment is the
contract written as OpenAPI; `tests/fuzz/` fuzzes the endpoints against it, so the two cannot drift.
"""

from __future__ import annotations

import copy
import zoneinfo
from typing import Any

Schema = dict[str, Any]

TAG = "webhooks"
REF = "#/components/schemas/"


def _text(max_length: int, *, required: bool = False, **extra: Any) -> Schema:
    """A string the payload serializers accept: trimmed, NUL-free, within `max_length`; required ones not blank."""
    schema: Schema = {"type": "string", "maxLength": max_length, "pattern": r"^[^\x00]*$", **extra}
    if required:
        schema.update(minLength=1, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")
    return schema


def _object(properties: Schema, required: list[str] | None = None, *, closed: bool = False, **extra: Any) -> Schema:
    """An object with these properties; others are JSON values the engine holds (JSON_VALUE), or none if closed."""
    schema: Schema = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False if closed else JSON_VALUE
    return schema


def _error(*codes: str, description: str, **properties: Schema) -> Schema:
    return _object(
        {"error": {"type": "string", "enum": list(codes)}, **properties},
        ["error"],
        closed=True,
        description=description,
    )


RFC3339 = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^(19[7-9][0-9]|2[0-9]{3})-",
    "description": "RFC 3339 instant with an offset (Z or +hh:mm), from 1970-01-01T00:00:00Z to "
    "2999-12-31T23:59:59Z (CONTRACT §2: other dates cannot be applied and are refused).",
}
#: The largest integer a body may carry anywhere (events/schemas.py MAX_JSON_INT).
MAX_INT = 2**63 - 1
_BOUNDED = [{"type": "string"}, {"type": "boolean"}, {"type": "number", "minimum": -MAX_INT, "maximum": MAX_INT}]
#: An extra property's value (CONTRACT §2): integers within 64 bits, no NaN or Infinity. Written inline and
#: two levels deep (the fuzzer's generator follows neither a $ref here nor recursion); the engine takes any
#: nesting of at most 64 levels (deeper bodies are refused whole).
JSON_VALUE = {
    "description": "Any JSON value with integers within ±(2^63−1), no NaN or Infinity, nesting of at most 64 levels.",
    "nullable": True,
    "anyOf": [
        *_BOUNDED,
        {"type": "array", "items": {"nullable": True, "anyOf": _BOUNDED}},
        {"type": "object", "additionalProperties": {"nullable": True, "anyOf": _BOUNDED}},
    ],
}
FREE_OBJECT = {"type": "object", "additionalProperties": JSON_VALUE}
EMAIL = {"type": "string", "format": "email", "maxLength": 254}
OPTIONAL_EMAIL = {"description": "An email address, or empty.", "anyOf": [EMAIL, {"type": "string", "maxLength": 0}]}
MRR = {
    "description": "Monthly recurring revenue: a decimal string or a number, at most two decimal places.",
    "oneOf": [
        {"type": "string", "pattern": r"^\s*\d{1,10}(\.\d{1,2})?\s*$"},
        {"type": "number", "minimum": 0, "maximum": 9999999999.99, "multipleOf": 0.01},
    ],
}

#: The zone names trial.started takes (events/schemas.py TimeZoneField: the zone database's own list).
TIMEZONES = sorted(zoneinfo.available_timezones())
UNIX = {"type": "integer", "minimum": 0, "maximum": 32503679999}
CURRENCY = {"type": "string", "pattern": "^[a-z]{3}$"}
STRIPE_HANDLED = [
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
    "invoice.paid",
    "invoice.payment_failed",
]
SUBSCRIPTION_STATUSES = [
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "canceled",
    "unpaid",
    "paused",
]
CANCELLATION = ("reason", "feedback", "comment")
STRIPE_METADATA = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "properties": {name: {"type": "string"} for name in ("workspace_id", "email", "plan", "workspace_name")},
    "description": "workspace_id names the workspace (here or on the customer); email, plan and workspace_name "
    "are read when set.",
}

DATA_SCHEMAS: Schema = {
    "trial.started": _object(
        {
            "workspace_id": _text(64, required=True),
            "email": EMAIL,
            "workspace_name": _text(255),
            "first_name": _text(100),
            "last_name": _text(100),
            "company": _text(255),
            "plan": _text(64),
            "trial_expires_at": {**RFC3339, "description": "Default: timestamp + 30 days."},
            "acquisition_channel": _text(64),
            "campaign": _text(128),
            "timezone": {
                "type": "string",
                "enum": ["", *TIMEZONES],
                "description": "An IANA time zone name, e.g. Europe/Berlin (day windows of the behaviour metrics); "
                "empty: UTC.",
            },
        },
        ["workspace_id", "email"],
    ),
    "subscription.converted": _object(
        {
            "workspace_id": _text(64, required=True),
            "email": OPTIONAL_EMAIL,
            "plan": _text(64, required=True),
            "mrr": MRR,
            "currency": {"type": "string", "pattern": "^[A-Za-z]{3}$", "default": "USD"},
            "subscription_id": _text(255),
            "billing_interval": {"type": "string", "enum": ["day", "week", "month", "year", ""]},
        },
        ["workspace_id", "plan", "mrr"],
    ),
    "workspace.churned": _object(
        {
            "workspace_id": _text(64, required=True),
            "email": OPTIONAL_EMAIL,
            "churned_at": {**RFC3339, "description": "Default: timestamp."},
            "reason": _text(255),
        },
        ["workspace_id"],
    ),
    "usage.recorded": _object(
        {
            "workspace_id": _text(64, required=True),
            "feature": _text(100, required=True),
            "user_email": OPTIONAL_EMAIL,
            "count": {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 1},
            "duration_seconds": {"type": "number", "minimum": 0},
            "product": _text(64),
            "outcome": {"type": "string", "enum": ["success", "error"]},
        },
        ["workspace_id", "feature"],
    ),
    "support.ticket_opened": _object(
        {
            "workspace_id": _text(64, required=True),
            "ticket_id": _text(128, required=True),
            "priority": {"type": "string", "enum": ["low", "normal", "high", "urgent"]},
            "user_email": OPTIONAL_EMAIL,
            "subject": _text(255),
        },
        ["workspace_id", "ticket_id"],
    ),
    "support.ticket_resolved": _object(
        {
            "workspace_id": _text(64, required=True),
            "ticket_id": _text(128, required=True),
            "satisfaction": {"type": "integer", "minimum": 1, "maximum": 5},
        },
        ["workspace_id", "ticket_id"],
    ),
    "plan.limit_reached": _object(
        {
            "workspace_id": _text(64, required=True),
            "limit": _text(64, required=True, description="e.g. seats, envelopes, api_calls."),
            "used": {"type": "integer", "minimum": 0, "maximum": MAX_INT},
            "allowed": {"type": "integer", "minimum": 0, "maximum": MAX_INT},
        },
        ["workspace_id", "limit"],
    ),
}


def _envelope(event_type: str) -> Schema:
    name = "".join(part.title() for part in event_type.split(".")) + "Data"
    return _object(
        {"type": {"type": "string", "enum": [event_type]}, "timestamp": RFC3339, "data": {"$ref": REF + name}},
        ["type", "timestamp", "data"],
    )


UNKNOWN_ENVELOPE = _object(
    {
        "type": {**_text(64, required=True), "not": {"enum": list(DATA_SCHEMAS)}},
        "timestamp": RFC3339,
        "data": FREE_OBJECT,
    },
    ["type", "timestamp", "data"],
    description="A type this version does not know: stored and answered 202 ignored, never applied.",
)


#: An event's id in a batch: a non-empty string (blank or not a string is a malformed envelope).
BATCH_EVENT_ID = {
    **_text(255, required=True),
    "description": "The event's idempotency key, in the same namespace as webhook-id.",
}

SCHEMAS: Schema = {
    **{"".join(part.title() for part in name.split(".")) + "Data": schema for name, schema in DATA_SCHEMAS.items()},
    "ProvisioningWebhook": {
        "description": "Wire contract (docs/contract.md) §2. "
        "`timestamp` orders events; the `webhook-id` header deduplicates them.",
        "oneOf": [*(_envelope(event_type) for event_type in DATA_SCHEMAS), UNKNOWN_ENVELOPE],
    },
    "ProvisioningBatch": _object(
        {
            "events": {
                "type": "array",
                "maxItems": 1000,
                "items": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {
                        "id": BATCH_EVENT_ID,
                        "type": {"description": "As in ProvisioningWebhook."},
                        "timestamp": {"description": "As in ProvisioningWebhook."},
                        "data": {"description": "As in ProvisioningWebhook."},
                    },
                    "additionalProperties": True,
                    "description": "One event shaped as a ProvisioningWebhook body, with its own `id`. Each event is "
                    "judged on its own: one that does not fit ProvisioningWebhook (fields, numbers, nesting, dates "
                    "as CONTRACT §2) is listed in the answer's `rejected` and kept as a rejected event, and the "
                    "batch is still answered 202.",
                },
            }
        },
        ["events"],
        description="Wire contract (docs/contract.md) §2b: at most 1,000 events and 1 MiB. A malformed envelope "
        "(no events list, over 1,000, an event without an id) is refused whole with 422.",
    ),
    "MarketoLead": _object(
        {
            "lead_id": _text(64, required=True, description="Marketo's lead id: the idempotency key."),
            "email": EMAIL,
            "first_name": _text(100),
            "last_name": _text(100),
            "company": _text(255),
            "created_at": RFC3339,
        },
        ["lead_id", "email"],
        description="Wire contract (docs/contract.md) §5: a lead created in Marketo.",
    ),
    "StripeEvent": _object(
        {
            "id": {"type": "string", "minLength": 1, "maxLength": 255, "description": "evt_…: the idempotency key."},
            "object": {"type": "string", "enum": ["event"]},
            "type": {
                "description": "The handled types are listed; any other is stored and answered 202 ignored.",
                "anyOf": [{"type": "string", "enum": STRIPE_HANDLED}, {"type": "string", "minLength": 1}],
            },
            "created": {**UNIX, "description": "Unix seconds (years 1970 to 2999): orders the event."},
            "data": _object(
                {
                    "object": {
                        "description": "The subscription or invoice; metadata.workspace_id names the workspace.",
                        "anyOf": [{"$ref": REF + "StripeSubscription"}, {"$ref": REF + "StripeInvoice"}],
                    },
                    "previous_attributes": FREE_OBJECT,
                },
                ["object"],
            ),
        },
        ["id", "type", "created", "data"],
        description="Wire contract (docs/contract.md) §4: a Stripe event, as Stripe sends it.",
    ),
    "StripeSubscription": _object(
        {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["subscription"]},
            "status": {"type": "string", "enum": SUBSCRIPTION_STATUSES},
            "customer": {"type": "string"},
            "metadata": STRIPE_METADATA,
            "currency": CURRENCY,
            "items": _object(
                {
                    "data": {
                        "type": "array",
                        "items": _object(
                            {
                                "price": {"$ref": REF + "StripePrice"},
                                "quantity": {"type": "integer", "minimum": 0},
                                "current_period_end": UNIX,
                            }
                        ),
                    }
                }
            ),
            **{name: {**UNIX, "nullable": True} for name in ("trial_end", "ended_at", "canceled_at")},
            "cancellation_details": _object({key: {"type": "string", "nullable": True} for key in CANCELLATION}),
        },
        description="The fields of a Stripe subscription the engine reads.",
    ),
    "StripeInvoice": _object(
        {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["invoice"]},
            "customer": {"type": "string"},
            "customer_email": {"type": "string", "nullable": True},
            "billing_reason": {"type": "string", "nullable": True},
            "amount_paid": {"type": "integer", "minimum": 0},
            "amount_due": {"type": "integer", "minimum": 0},
            "currency": CURRENCY,
            "attempt_count": {"type": "integer", "minimum": 0},
            "next_payment_attempt": {**UNIX, "nullable": True},
            "parent": _object(
                {"subscription_details": _object({"subscription": {"type": "string"}, "metadata": STRIPE_METADATA})}
            ),
            "lines": _object(
                {
                    "data": {
                        "type": "array",
                        "items": _object(
                            {
                                "pricing": _object(
                                    {"unit_amount_decimal": {"type": "string", "pattern": r"^\d+(\.\d+)?$"}}
                                ),
                                "period": _object({"start": UNIX, "end": UNIX}),
                                "quantity": {"type": "integer", "minimum": 0},
                                "metadata": STRIPE_METADATA,
                            }
                        ),
                    }
                }
            ),
        },
        description="The fields of a Stripe invoice the engine reads.",
    ),
    "StripePrice": _object(
        {
            "id": {"type": "string"},
            "unit_amount": {"type": "integer", "minimum": 0, "nullable": True},
            "currency": CURRENCY,
            "recurring": _object(
                {
                    "interval": {"type": "string", "enum": ["day", "week", "month", "year"]},
                    "interval_count": {"type": "integer", "minimum": 1},
                }
            ),
            "lookup_key": {"type": "string", "nullable": True},
            "nickname": {"type": "string", "nullable": True},
        }
    ),
    "WebhookReceipt": _object(
        {"id": {"type": "string"}, "status": {"type": "string", "enum": ["accepted", "ignored"]}},
        ["id", "status"],
        closed=True,
        description="Stored for processing (accepted), or stored but not applied: a type not known (ignored).",
    ),
    "WebhookBatchReceipt": _object(
        {
            "id": {"type": "string", "description": "The batch's webhook-id."},
            "accepted": {"type": "integer", "minimum": 0},
            "duplicates": {"type": "integer", "minimum": 0},
            "ignored": {"type": "integer", "minimum": 0},
            "rejected": {
                "type": "array",
                "items": _object(
                    {
                        "index": {"type": "integer", "minimum": 0},
                        "id": {"type": "string"},
                        "fields": {
                            "type": "object",
                            "additionalProperties": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    ["index", "id", "fields"],
                    closed=True,
                ),
            },
        },
        ["id", "accepted", "duplicates", "ignored", "rejected"],
        closed=True,
        description="Each event counts in exactly one of accepted, duplicates, ignored and rejected; valid events "
        "are stored even when others are rejected, and rejected ones are kept as rejected events.",
    ),
    "WebhookDuplicate": _object(
        {"id": {"type": "string"}, "status": {"type": "string", "enum": ["duplicate"]}},
        ["id", "status"],
        closed=True,
        description="The idempotency key was seen before: nothing changes.",
    ),
    "WebhookInvalidPayload": _object(
        {
            "error": {"type": "string", "enum": ["invalid_payload"]},
            "fields": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
                "description": 'Each wrong field by its path, e.g. {"data.workspace_id": ["This field is required."]}.',
            },
        },
        ["error", "fields"],
        closed=True,
        description="Authentic but malformed: kept as a rejected event for review, never applied.",
    ),
    "WebhookPayloadTooLarge": _error("payload_too_large", description="The body is over 1 MiB."),
    "WebhookLengthRequired": _error(
        "length_required", description="A chunked body without Content-Length: send the length (any proxy does)."
    ),
    "WebhookRequestTimeout": _error(
        "request_timeout", description="The body stopped arriving for WEBHOOK_BODY_READ_TIMEOUT_SECONDS."
    ),
    "WebhookRateLimited": _error("rate_limited", description="Over the source's budget; send again after Retry-After."),
    "WebhookUnavailable": _error(
        "not_configured",
        "store_unavailable",
        description="not_configured: the endpoint's secret is not set. store_unavailable: the event could not be "
        "stored durably; send it again (retry is true).",
        retry={"type": "boolean"},
    ),
}


def _json(schema_name: str, description: str, headers: Schema | None = None) -> Schema:
    response: Schema = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF + schema_name}}},
    }
    if headers:
        response["headers"] = headers
    return response


RETRY_AFTER = {"Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1}}}


def _responses(refusal: Schema) -> Schema:
    """The status table shared by every webhook (CONTRACT §2, "same status codes" in §4)."""
    return {
        "200": _json("WebhookDuplicate", "Seen before: nothing changes."),
        "202": _json("WebhookReceipt", "Durably stored; processed in the background."),
        "401": {
            "description": "Not authenticated: nothing stored.",
            "content": {"application/json": {"schema": refusal}},
        },
        "408": _json("WebhookRequestTimeout", "The body stopped arriving: nothing stored."),
        "411": _json("WebhookLengthRequired", "Chunked without Content-Length: nothing stored."),
        "413": _json("WebhookPayloadTooLarge", "Body over 1 MiB: nothing stored."),
        "422": _json("WebhookInvalidPayload", "Authentic but malformed: kept as a rejected event, never applied."),
        "429": _json("WebhookRateLimited", "Rate limited: nothing stored.", RETRY_AFTER),
        "503": _json("WebhookUnavailable", "Not configured, or the store is unavailable: nothing stored."),
    }


METHODS_NOTE = 'Any other method is answered 405 `{"error": "method_not_allowed", "allowed": ["POST"]}`.'

PATHS: Schema = {
    "/webhooks/provisioning/": {
        "post": {
            "operationId": "webhooks_provisioning",
            "summary": "Provisioning webhook (Standard Webhooks)",
            "description": "Wire contract (docs/contract.md) §2. "
            "Signed per Standard Webhooks v1: `webhook-signature` is "
            "`v1,<base64 HMAC-SHA256>` of `{webhook-id}.{webhook-timestamp}.{raw body}` (several space-separated "
            "signatures allowed); timestamps more than 300 s from the server clock are refused. " + METHODS_NOTE,
            "tags": [TAG],
            "security": [{"standardWebhooks": []}],
            "parameters": [
                {
                    "name": "webhook-id",
                    "in": "header",
                    "required": True,
                    "description": "Unique per message: the idempotency key (at most 255 characters).",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                },
                {
                    "name": "webhook-timestamp",
                    "in": "header",
                    "required": True,
                    "description": "Unix seconds when the message was signed.",
                    "schema": {"type": "integer"},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": REF + "ProvisioningWebhook"}}},
            },
            "responses": _responses(_error("invalid_signature", "stale_timestamp", description="Signature refused.")),
        }
    },
    "/webhooks/provisioning/batch/": {
        "post": {
            "operationId": "webhooks_provisioning_batch",
            "summary": "Provisioning webhook, batched (Standard Webhooks)",
            "description": "Wire contract (docs/contract.md) §2b. Signed exactly as the provisioning webhook, with "
            "the batch's own `webhook-id`; the same batch again is answered 200 duplicate. Each event's `id` is its "
            "idempotency key. All events are stored in one transaction. " + METHODS_NOTE,
            "tags": [TAG],
            "security": [{"standardWebhooks": []}],
            "parameters": [
                {
                    "name": "webhook-id",
                    "in": "header",
                    "required": True,
                    "description": "Unique per batch: the batch's idempotency key (at most 255 characters).",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                },
                {
                    "name": "webhook-timestamp",
                    "in": "header",
                    "required": True,
                    "description": "Unix seconds when the batch was signed.",
                    "schema": {"type": "integer"},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": REF + "ProvisioningBatch"}}},
            },
            "responses": {
                **_responses(_error("invalid_signature", "stale_timestamp", description="Signature refused.")),
                "200": _json("WebhookDuplicate", "This batch's webhook-id was seen before: nothing changes."),
                "202": _json("WebhookBatchReceipt", "Stored in one transaction; each event's result."),
                "422": _json(
                    "WebhookInvalidPayload",
                    "A malformed envelope (no events list, over 1,000 events, an event without id): kept as one "
                    "rejected event, none of its events stored.",
                ),
            },
        }
    },
    "/webhooks/marketo/": {
        "post": {
            "operationId": "webhooks_marketo",
            "summary": "Marketo lead webhook",
            "description": "Wire contract (docs/contract.md) §5. "
            "Authenticated by `Authorization: Bearer <MARKETO_WEBHOOK_TOKEN>`; "
            "`lead_id` is the idempotency key. " + METHODS_NOTE,
            "tags": [TAG],
            "security": [{"marketoBearer": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": REF + "MarketoLead"}}},
            },
            "responses": _responses(_error("invalid_token", description="Bearer token missing or wrong.")),
        }
    },
    "/webhooks/stripe/": {
        "post": {
            "operationId": "webhooks_stripe",
            "summary": "Stripe webhook",
            "description": "Wire contract (docs/contract.md) §4. "
            "Verified by the stripe library's `Webhook.construct_event` with "
            "`Stripe-Signature`; `id` is the idempotency key. Handled: customer.subscription.created, "
            "customer.subscription.updated, customer.subscription.deleted, customer.subscription.trial_will_end, "
            "invoice.paid, invoice.payment_failed; other types are stored and answered 202 ignored. " + METHODS_NOTE,
            "tags": [TAG],
            "security": [{"stripeSignature": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": REF + "StripeEvent"}}},
            },
            "responses": _responses(_error("invalid_signature", "stale_timestamp", description="Signature refused.")),
        }
    },
}

SECURITY_SCHEMES: Schema = {
    "standardWebhooks": {
        "type": "apiKey",
        "in": "header",
        "name": "webhook-signature",
        "description": "Standard Webhooks v1 signature with the PROVISIONING_WEBHOOK_SECRET key "
        "(with the webhook-id and webhook-timestamp headers).",
    },
    "marketoBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "MARKETO_WEBHOOK_TOKEN as a bearer token.",
    },
    "stripeSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "Stripe-Signature",
        "description": "Stripe's `t=<unix seconds>,v1=<hex HMAC-SHA256>` with STRIPE_WEBHOOK_SECRET.",
    },
}


def add_webhooks(result: Schema, generator: Any, request: Any, public: bool) -> Schema:
    """drf-spectacular postprocessing hook: the generated schema plus the webhooks."""
    result.setdefault("paths", {}).update(copy.deepcopy(PATHS))
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update(copy.deepcopy(SCHEMAS))
    components.setdefault("securitySchemes", {}).update(copy.deepcopy(SECURITY_SCHEMES))
    return result
