"""Signed webhook endpoints. Each view runs the same steps, in this order (STYLE habit 2):
configured? → size limit → verify signature → rate limit (429, events/ratelimit.py) → validate payload →
store with the idempotency key (processing enqueued on commit) → answer."""

from __future__ import annotations

import hmac
import logging
from concurrent.futures import TimeoutError as StoreTimeout

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from events.models import Event
from events.ratelimit import webhook_refusal, webhook_throttle
from events.schemas import PayloadInvalid, parse_marketo_body, parse_provisioning_body
from events.services import MARKETO_TYPE, event_receive, events_store
from events.signatures import SignatureError, verify_standard_webhook
from events.store import NewEvent

logger = logging.getLogger(__name__)


def error_response(status: int, error: str, **extra: object) -> JsonResponse:
    return JsonResponse({"error": error, **extra}, status=status)


def method_not_allowed() -> JsonResponse:
    """405 for anything but POST, with the Allow header RFC 9110 requires."""
    response = error_response(405, "method_not_allowed", allowed=["POST"])
    response["Allow"] = "POST"
    return response


def read_limited_body(request: HttpRequest, limit: int) -> bytes | None:
    """The body, or None when it exceeds `limit`: refused from the header before reading when possible."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


@csrf_exempt
def provisioning_webhook(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return method_not_allowed()
    secrets = settings.PROVISIONING_WEBHOOK_SECRET.split()
    if not secrets:
        return error_response(503, "not_configured")
    body = read_limited_body(request, settings.WEBHOOK_MAX_BODY_BYTES)
    if body is None:
        return error_response(413, "payload_too_large")
    try:
        verify_standard_webhook(body=body, headers=request.headers, secrets=secrets)
    except SignatureError as exc:
        # Never log the body of a request we could not authenticate.
        logger.warning(
            "provisioning webhook refused: %s (%s); webhook-id=%r remote=%s",
            exc.code,
            exc.detail,
            request.headers.get("webhook-id", "")[:80],
            request.META.get("REMOTE_ADDR"),
        )
        return webhook_refusal(Event.Source.PROVISIONING, 401, exc.code)
    if (throttled := webhook_throttle(Event.Source.PROVISIONING)) is not None:
        return throttled
    webhook_id = request.headers["webhook-id"]
    if len(webhook_id) > Event._meta.get_field("external_id").max_length:
        return error_response(422, "invalid_payload", fields={"webhook-id": ["At most 255 characters."]})
    try:
        parsed = parse_provisioning_body(body)
    except PayloadInvalid as exc:
        return _reject(webhook_id, exc)
    event = NewEvent(
        source=Event.Source.PROVISIONING,
        external_id=webhook_id,
        type=parsed.type,
        occurred_at=parsed.occurred_at,
        workspace_key=parsed.workspace_key,
        payload=parsed.body,
        status=Event.Status.NEW if parsed.known else Event.Status.IGNORED,
        notes="" if parsed.known else f"Type {parsed.type!r} is not known to this version; stored, not applied.",
    )
    try:
        is_new = event_receive(event=event)
    except (DatabaseError, StoreTimeout):
        logger.exception("provisioning webhook %s could not be stored", webhook_id)
        return error_response(503, "store_unavailable", retry=True)
    if not is_new:
        return JsonResponse({"id": webhook_id, "status": "duplicate"}, status=200)
    return JsonResponse({"id": webhook_id, "status": "accepted" if parsed.known else "ignored"}, status=202)


@csrf_exempt
def marketo_webhook(request: HttpRequest) -> JsonResponse:
    """CONTRACT §5: a lead created in Marketo, authenticated by a bearer token."""
    if request.method != "POST":
        return method_not_allowed()
    token = settings.MARKETO_WEBHOOK_TOKEN
    if not token:
        return error_response(503, "not_configured")
    body = read_limited_body(request, settings.WEBHOOK_MAX_BODY_BYTES)
    if body is None:
        return error_response(413, "payload_too_large")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), token.encode()):
        logger.warning("marketo webhook refused: bad bearer token; remote=%s", request.META.get("REMOTE_ADDR"))
        return webhook_refusal(Event.Source.MARKETO, 401, "invalid_token")
    if (throttled := webhook_throttle(Event.Source.MARKETO)) is not None:
        return throttled
    try:
        lead = parse_marketo_body(body)
    except PayloadInvalid as exc:
        return error_response(422, "invalid_payload", fields=exc.fields)
    lead_id = lead["lead_id"]
    event = NewEvent(
        source=Event.Source.MARKETO,
        external_id=lead_id,
        type=MARKETO_TYPE,
        occurred_at=lead.get("created_at") or timezone.now(),
        workspace_key="",
        payload=lead["body"],
    )
    try:
        is_new = event_receive(event=event)
    except (DatabaseError, StoreTimeout):
        logger.exception("marketo webhook %s could not be stored", lead_id)
        return error_response(503, "store_unavailable", retry=True)
    return JsonResponse({"id": lead_id, "status": "accepted" if is_new else "duplicate"}, status=202 if is_new else 200)


def _reject(webhook_id: str, exc: PayloadInvalid) -> JsonResponse:
    """Keep a signed but malformed event as `rejected` (never applied), and say which fields are wrong."""
    events_store(
        [
            NewEvent(
                source=Event.Source.PROVISIONING,
                external_id=webhook_id,
                type=_claimed_type(exc.body),
                occurred_at=None,
                workspace_key="",
                payload=exc.body,
                status=Event.Status.REJECTED,
                notes="; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.fields.items()),
            )
        ]
    )
    return error_response(422, "invalid_payload", fields=exc.fields)


def _claimed_type(body: object) -> str:
    claimed = body.get("type") if isinstance(body, dict) else None
    return claimed[:64] if isinstance(claimed, str) else ""
