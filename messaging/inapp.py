"""The in-app message transport (CONTRACT §9): one Standard Webhooks-signed POST to the product.

The product shows the message to the user inside the app. Its `webhook-id` is the message's key (stable
per firing and channel), so a retry after a lost answer carries the same id and the product drops the
copy. The address is allowlisted like Slack's: https anywhere, loopback (a local stand-in) only with
PRODUCT_WEBHOOK_ALLOW_LOOPBACK; redirects are never followed (a redirected POST would carry a signed
message somewhere nobody configured).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlparse

import requests
from django.conf import settings

from events.signatures import sign_standard_webhook
from messaging.registry import Message, Transport, TransportError, transport_register

INAPP_OFF = "in-app channel off: PRODUCT_WEBHOOK_URL or PRODUCT_WEBHOOK_SECRET not set"
EVENT_TYPE = "message.in_app"
#: A header-safe id: the key becomes `webhook-id` verbatim, so the product can match it to the firing.
WEBHOOK_ID_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")


class InAppError(TransportError):
    """A message the product did not take; `retryable` says whether trying later can help."""


@dataclass(frozen=True)
class InAppMessage:
    """What the product receives in `data` (CONTRACT §9), checked before anything is sent."""

    workspace_id: str
    user_email: str
    trigger: str
    firing_id: str
    title: str
    body: str
    cta_url: str

    @classmethod
    def from_message(cls, message: Message) -> InAppMessage:
        """Take the structured fields from `message.data`; the user is the message's recipient."""
        missing = [name for name in ("workspace_id", "trigger", "firing_id") if not message.data.get(name)]
        if missing or not message.recipient:
            absent = ", ".join(missing + ([] if message.recipient else ["recipient (user_email)"]))
            raise InAppError(f"in-app message lacks {absent}", retryable=False)
        data = message.data
        return cls(
            workspace_id=str(data["workspace_id"]),
            user_email=message.recipient,
            trigger=str(data["trigger"]),
            firing_id=str(data["firing_id"]),
            title=message.subject,
            body=message.text,
            cta_url=str(data.get("cta_url") or ""),
        )

    def payload(self, now: datetime) -> dict[str, object]:
        message = {"title": self.title, "body": self.body, "cta_url": self.cta_url}
        data = {
            "workspace_id": self.workspace_id,
            "user_email": self.user_email,
            "trigger": self.trigger,
            "firing_id": self.firing_id,
            "message": message,
        }
        return {"type": EVENT_TYPE, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}


def is_loopback_host(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def inapp_url_problem(url: str) -> str | None:
    """Why this product webhook address is refused, or None when it is allowed."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return f"PRODUCT_WEBHOOK_URL {url!r} is not an http(s) address"
    if parsed.username or parsed.password:
        return "PRODUCT_WEBHOOK_URL must not carry credentials (the signature authenticates the engine)"
    if is_loopback_host(parsed.hostname):
        if settings.PRODUCT_WEBHOOK_ALLOW_LOOPBACK:
            return None
        host = parsed.hostname
        return f"PRODUCT_WEBHOOK_URL: loopback host {host} is allowed only with PRODUCT_WEBHOOK_ALLOW_LOOPBACK=on"
    if parsed.scheme != "https":
        return "PRODUCT_WEBHOOK_URL must be an https:// address (http only for a loopback stand-in)"
    return None


def inapp_webhook_id(key: str) -> str:
    """The `webhook-id` of a message: its key, which the caller keeps stable per firing and channel."""
    if not WEBHOOK_ID_RE.fullmatch(key):
        raise InAppError(f"in-app message key {key[:40]!r} is not a usable webhook-id", retryable=False)
    return key


def inapp_signed_headers(*, secret: str, webhook_id: str, body: str, now: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for this body."""
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign_standard_webhook(
            secret=secret, msg_id=webhook_id, timestamp=int(now.timestamp()), body=body
        ),
    }


def inapp_post(*, url: str, secret: str, webhook_id: str, payload: InAppMessage) -> None:
    """Post one signed message; raise InAppError unless the product answered 2xx."""
    problem = inapp_url_problem(url)
    if problem:
        raise InAppError(problem, retryable=False)
    now = datetime.now(UTC).replace(microsecond=0)  # the signed timestamp is whole seconds
    body = json.dumps(payload.payload(now), separators=(",", ":"))
    headers = inapp_signed_headers(secret=secret, webhook_id=webhook_id, body=body, now=now)
    timeout = (settings.PRODUCT_WEBHOOK_CONNECT_TIMEOUT_SECONDS, settings.PRODUCT_WEBHOOK_TIMEOUT_SECONDS)
    try:
        response = requests.post(url, data=body.encode(), headers=headers, timeout=timeout, allow_redirects=False)
    except requests.Timeout as exc:
        raise InAppError(f"product webhook timed out: {exc}", retryable=True) from exc
    except requests.RequestException as exc:  # refused connection, TLS failure, DNS, ...
        raise InAppError(f"could not reach the product webhook: {exc}", retryable=True) from exc
    if not 200 <= response.status_code < 300:
        raise _status_error(response.status_code, response.text)


def _status_error(status: int, body: str) -> InAppError:
    if 300 <= status < 400:
        return InAppError(f"HTTP {status}: redirects are not followed", retryable=False)
    retryable = status == 429 or status >= 500
    return InAppError(f"product webhook answered HTTP {status}: {body.strip()[:200]}", retryable=retryable)


@transport_register
class InAppTransport(Transport):
    """Posts to the product (PRODUCT_WEBHOOK_URL); the recipient is the user's email, `data` the rest."""

    kind = "in_app"
    label = "In-app message"

    def off_reason(self) -> str | None:
        return None if settings.PRODUCT_WEBHOOK_URL and settings.PRODUCT_WEBHOOK_SECRET else INAPP_OFF

    def send(self, message: Message) -> None:
        payload = InAppMessage.from_message(message)
        webhook_id = inapp_webhook_id(message.key)
        inapp_post(
            url=settings.PRODUCT_WEBHOOK_URL,
            secret=settings.PRODUCT_WEBHOOK_SECRET,
            webhook_id=webhook_id,
            payload=payload,
        )
