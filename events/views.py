"""Signed webhook endpoints. Each view runs the same steps, in this order (STYLE habit 2):
configured? → size limit (411/413/408: read_webhook_body) → verify signature → rate limit (429,
events/ratelimit.py) → validate payload → store with the idempotency key (processing enqueued on commit)
→ answer. Marketo's bearer token is a header, so it is checked before the body is read."""

from __future__ import annotations

import hashlib
import hmac
import logging
from concurrent.futures import TimeoutError as StoreTimeout

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse, UnreadablePostError
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from events.jsonbody import PayloadInvalid
from events.models import Event
from events.ratelimit import webhook_refusal, webhook_throttle
from events.schemas import BatchItem, ParsedWebhook, parse_batch_body, parse_marketo_body, parse_provisioning_body
from events.services import MARKETO_TYPE, batch_counts, batch_receive, event_receive, events_store
from events.signatures import SIGNATURE_HEADERS, SignatureError, verify_standard_webhook
from events.store import NewEvent

logger = logging.getLogger(__name__)


def error_response(status: int, error: str, **extra: object) -> JsonResponse:
    return JsonResponse({"error": error, **extra}, status=status)


def method_not_allowed() -> JsonResponse:
    """405 for anything but POST, with the Allow header RFC 9110 requires."""
    response = error_response(405, "method_not_allowed", allowed=["POST"])
    response["Allow"] = "POST"
    return response


def read_webhook_body(request: HttpRequest) -> bytes | JsonResponse:
    """The body, or the answer that refuses it before or while reading (the size-limit step).

    - 411 `length_required`: chunked, without Content-Length. The body would read as empty (WSGI offers no
      length) and the request be refused as unsigned; a sender or a buffering proxy can always send a length.
    - 413 `payload_too_large`: over WEBHOOK_MAX_BODY_BYTES, from the header when possible, before reading.
    - 408 `request_timeout`: the body stopped arriving for WEBHOOK_BODY_READ_TIMEOUT_SECONDS. Under gunicorn
      the read is bounded on its socket so a stalled client frees its thread (gunicorn then closes the
      connection: the body was not read to its end). A client trickling bytes is the fronting proxy's to
      absorb (deploy/nginx.conf).
    """
    if "CONTENT_LENGTH" not in request.META and "HTTP_TRANSFER_ENCODING" in request.META:
        return error_response(411, "length_required")
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return error_response(413, "payload_too_large")
    try:
        body = _read_bounded(request, limit + 1)
    except UnreadablePostError:
        logger.warning("webhook body not received in time; remote=%s", request.META.get("REMOTE_ADDR"))
        return error_response(408, "request_timeout")
    return error_response(413, "payload_too_large") if len(body) > limit else body


def _read_bounded(request: HttpRequest, size: int) -> bytes:
    """request.read(size), each wait for data bounded by WEBHOOK_BODY_READ_TIMEOUT_SECONDS on gunicorn's
    socket (Django wraps the timeout in UnreadablePostError). Other servers have no socket to bound."""
    sock = request.META.get("gunicorn.socket")
    if sock is None:
        return request.read(size)
    previous = sock.gettimeout()
    sock.settimeout(settings.WEBHOOK_BODY_READ_TIMEOUT_SECONDS)
    try:
        return request.read(size)
    finally:
        sock.settimeout(previous)


def signed_provisioning_body(request: HttpRequest) -> tuple[str, bytes] | JsonResponse:
    """The steps before the payload, shared by single events and batches (CONTRACT §2, §2b): (webhook-id,
    body), or the answer that refuses the request."""
    if request.method != "POST":
        return method_not_allowed()
    secrets = settings.PROVISIONING_WEBHOOK_SECRET.split()
    if not secrets:
        return error_response(503, "not_configured")
    body = read_webhook_body(request)
    if isinstance(body, JsonResponse):
        return body
    headers = signature_headers(request)
    try:
        verify_standard_webhook(body=body, headers=headers, secrets=secrets)
    except SignatureError as exc:
        # Never log the body of a request we could not authenticate.
        logger.warning(
            "provisioning webhook refused: %s (%s); webhook-id=%r remote=%s",
            exc.code,
            exc.detail,
            headers["webhook-id"][:80],
            request.META.get("REMOTE_ADDR"),
        )
        return webhook_refusal(Event.Source.PROVISIONING, 401, exc.code)
    if (throttled := webhook_throttle(Event.Source.PROVISIONING)) is not None:
        return throttled
    webhook_id = headers["webhook-id"]
    if len(webhook_id) > Event._meta.get_field("external_id").max_length:
        return error_response(422, "invalid_payload", fields={"webhook-id": ["At most 255 characters."]})
    return webhook_id, body


def signature_headers(request: HttpRequest) -> dict[str, str]:
    """The three Standard Webhooks headers ("" when absent), read from the WSGI environ: request.headers
    would build a mapping of every header first (measured: about a tenth of the webhook view's own CPU)."""
    return {name: request.META.get(f"HTTP_{name.upper().replace('-', '_')}", "") for name in SIGNATURE_HEADERS}


@csrf_exempt
def provisioning_webhook(request: HttpRequest) -> JsonResponse:
    signed = signed_provisioning_body(request)
    if isinstance(signed, JsonResponse):
        return signed
    webhook_id, body = signed
    try:
        parsed = parse_provisioning_body(body)
    except PayloadInvalid as exc:
        return reject(Event.Source.PROVISIONING, webhook_id, claimed_type(exc.body), exc)
    event = provisioning_event(webhook_id, parsed)
    try:
        is_new = event_receive(event=event)
    except (DatabaseError, StoreTimeout):
        logger.exception("provisioning webhook %s could not be stored", webhook_id)
        return error_response(503, "store_unavailable", retry=True)
    if not is_new:
        return JsonResponse({"id": webhook_id, "status": "duplicate"}, status=200)
    return JsonResponse({"id": webhook_id, "status": "accepted" if parsed.known else "ignored"}, status=202)


def provisioning_event(event_id: str, parsed: ParsedWebhook) -> NewEvent:
    """A valid provisioning event as stored: `new` when its type is known, else `ignored`."""
    return NewEvent(
        source=Event.Source.PROVISIONING,
        external_id=event_id,
        type=parsed.type,
        occurred_at=parsed.occurred_at,
        workspace_key=parsed.workspace_key,
        payload=parsed.body,
        status=Event.Status.NEW if parsed.known else Event.Status.IGNORED,
        notes="" if parsed.known else f"Type {parsed.type!r} is not known to this version; stored, not applied.",
    )


@csrf_exempt
def provisioning_batch_webhook(request: HttpRequest) -> JsonResponse:
    """CONTRACT §2b: up to MAX_BATCH_EVENTS events under one signature, each with its own id and result.

    Valid events are stored even when others are rejected; rejected ones are kept as `rejected` events. All
    of it, and the batch's own id, in one transaction (events/services.py batch_receive).
    """
    signed = signed_provisioning_body(request)
    if isinstance(signed, JsonResponse):
        return signed
    webhook_id, body = signed
    try:
        items = parse_batch_body(body)
    except PayloadInvalid as exc:
        return reject(Event.Source.PROVISIONING, webhook_id, "", exc)
    events = [
        provisioning_event(item.id, item.parsed) if item.parsed is not None else rejected_event(item) for item in items
    ]
    try:
        results = batch_receive(webhook_id=webhook_id, events=events)
    except DatabaseError:
        logger.exception("provisioning batch %s could not be stored", webhook_id)
        return error_response(503, "store_unavailable", retry=True)
    if results is None:
        return JsonResponse({"id": webhook_id, "status": "duplicate"}, status=200)
    counts = batch_counts(events, results)
    rejected = [
        {"index": item.index, "id": item.id, "fields": item.error.fields} for item in items if item.error is not None
    ]
    return JsonResponse(
        {
            "id": webhook_id,
            "accepted": counts.accepted,
            "duplicates": counts.duplicates,
            "ignored": counts.ignored,
            "rejected": rejected,
        },
        status=202,
    )


def rejected_event(item: BatchItem) -> NewEvent:
    """A batch's malformed event, kept under its id as `rejected` (never applied), like a refused body."""
    assert item.error is not None
    return NewEvent(
        source=Event.Source.PROVISIONING,
        external_id=item.id,
        type=claimed_type(item.error.body)[:64],
        occurred_at=None,
        workspace_key="",
        payload=item.error.body,
        status=Event.Status.REJECTED,
        notes=rejection_notes(item.error),
    )


def rejection_notes(exc: PayloadInvalid) -> str:
    return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.fields.items())


@csrf_exempt
def marketo_webhook(request: HttpRequest) -> JsonResponse:
    """CONTRACT §5: a lead created in Marketo, authenticated by a bearer token."""
    if request.method != "POST":
        return method_not_allowed()
    token = settings.MARKETO_WEBHOOK_TOKEN
    if not token:
        return error_response(503, "not_configured")
    # The token is a header: checked before reading a body, so an unauthenticated sender holds no thread
    # while its body (slowly) arrives.
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), token.encode()):
        logger.warning("marketo webhook refused: bad bearer token; remote=%s", request.META.get("REMOTE_ADDR"))
        return webhook_refusal(Event.Source.MARKETO, 401, "invalid_token")
    body = read_webhook_body(request)
    if isinstance(body, JsonResponse):
        return body
    if (throttled := webhook_throttle(Event.Source.MARKETO)) is not None:
        return throttled
    try:
        lead = parse_marketo_body(body)
    except PayloadInvalid as exc:
        # Keyed by the bytes, not lead_id: a corrected lead with the same id must not be its duplicate.
        return reject(Event.Source.MARKETO, body_key(body), "", exc)
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


def reject(source: str, external_id: str, claimed_type: str, exc: PayloadInvalid) -> JsonResponse:
    """Keep a signed but malformed event as `rejected` (never applied), and say which fields are wrong.

    Its payload is what PayloadInvalid kept: the parsed body, or the text when the body is not JSON the
    engine can hold (load_json), so storing it cannot fail the way the body did.
    """
    events_store(
        [
            NewEvent(
                source=source,
                external_id=external_id,
                type=claimed_type[:64],
                occurred_at=None,
                workspace_key="",
                payload=exc.body,
                status=Event.Status.REJECTED,
                notes=rejection_notes(exc),
            )
        ]
    )
    return error_response(422, "invalid_payload", fields=exc.fields)


def body_key(body: bytes) -> str:
    """An idempotency key for a rejected body without a usable id: the same bytes are one rejected event."""
    return f"unparsed:{hashlib.sha256(body).hexdigest()}"


def claimed_type(body: object) -> str:
    claimed = body.get("type") if isinstance(body, dict) else None
    return claimed if isinstance(claimed, str) else ""
