"""Sending signed provisioning webhooks the way the provisioning system does (CONTRACT §2).

Used by the operator commands `sign_webhook` and `simulate_provisioning`: one place that knows where
the signing key comes from, which headers a message carries, and how an answer or an unreachable
engine looks.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from events.signatures import sign_standard_webhook

WEBHOOK_PATH = "/webhooks/provisioning/"


class SigningKeyMissing(Exception):
    """PROVISIONING_WEBHOOK_SECRET is not set or not a `whsec_<base64>` key: nothing can be signed."""


class EngineUnreachable(Exception):
    """No HTTP answer at all (connection refused, DNS, timeout)."""


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    text: str
    retry_after: float | None = None  # seconds, from a 429's Retry-After

    @property
    def outcome(self) -> str:
        """`accepted`, `duplicate`, `ignored`, or the error the body names (`invalid_signature`, …)."""
        try:
            body: Any = json.loads(self.text)
        except json.JSONDecodeError:
            return "not JSON"
        if not isinstance(body, dict):
            return "not a JSON object"
        return str(body.get("status") or body.get("error") or "?")

    def batch_counts(self, size: int) -> dict[str, int]:
        """A batch's answer as outcomes per event (CONTRACT §2b): accepted, duplicate, ignored, rejected; a
        whole-batch answer (a duplicate batch, an error) counts for each of its `size` events."""
        try:
            body: Any = json.loads(self.text)
        except json.JSONDecodeError:
            body = None
        if isinstance(body, dict) and "accepted" in body:
            counts = {
                "accepted": body.get("accepted", 0),
                "duplicate": body.get("duplicates", 0),
                "ignored": body.get("ignored", 0),
                "rejected": len(body.get("rejected") or []),
            }
            return {outcome: count for outcome, count in counts.items() if count}
        return {self.outcome: size}


def provisioning_signing_key() -> str:
    """The key to sign with: the first of PROVISIONING_WEBHOOK_SECRET (environment or `.env`)."""
    keys = settings.PROVISIONING_WEBHOOK_SECRET.split()
    if not keys:
        raise SigningKeyMissing(
            "PROVISIONING_WEBHOOK_SECRET is not set. Run `make run` once (it writes .env) or export it."
        )
    try:
        if not keys[0].startswith("whsec_") or not base64.b64decode(keys[0][6:] + "=="):
            raise ValueError("not whsec_<base64>")
    except ValueError as exc:
        raise SigningKeyMissing(
            f"PROVISIONING_WEBHOOK_SECRET must be whsec_ followed by base64 ({exc}); delete .env and run "
            "`make run` once to get a fresh one."
        ) from exc
    return keys[0]


def webhook_url(base: str) -> str:
    """`http://host:port` means the provisioning endpoint on it; a URL with a path is used as it is."""
    return base.rstrip("/") + WEBHOOK_PATH if urlsplit(base).path in ("", "/") else base


def signed_headers(*, key: str, msg_id: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """The Standard Webhooks headers of `body`, signed for `timestamp` (default: now)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhook(secret=key, msg_id=msg_id, timestamp=timestamp, body=body),
    }


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date: not sent by the engine
        return None


def webhook_post(*, url: str, body: str, headers: dict[str, str], timeout: float = 10.0) -> WebhookAnswer:
    """POST one message; any HTTP answer is returned, no answer raises EngineUnreachable."""
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return WebhookAnswer(response.status, response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        return WebhookAnswer(exc.code, exc.read().decode("utf-8", "replace"), _seconds(exc.headers.get("Retry-After")))
    except urllib.error.URLError as exc:
        raise EngineUnreachable(f"Could not reach {url}: {exc.reason}") from exc
    except (OSError, TimeoutError) as exc:  # a reset or a read timeout after connecting
        raise EngineUnreachable(f"No answer from {url}: {exc}") from exc
