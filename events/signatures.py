"""Standard Webhooks verification with key rotation (CONTRACT §2), via the `standardwebhooks` library."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class SignatureError(Exception):
    """The request is not provably from the sender; `code` is the error named in the 401 body."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@lru_cache(maxsize=16)
def _verifier(secret: str) -> Webhook:
    return Webhook(secret)


def verify_standard_webhook(*, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    """Accept the body if any configured key signed it within ±300 s; raise SignatureError otherwise.

    The library checks the timestamp in both directions before the signature, so a stale message is
    reported as such whichever key is tried.
    """
    wanted = {name: headers.get(name, "") for name in SIGNATURE_HEADERS}
    if not all(wanted.values()):
        raise SignatureError("invalid_signature", "missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SignatureError("invalid_signature", "body is not UTF-8") from exc
    for secret in secrets:
        verifier = _verifier(secret)
        try:
            verifier.verify(text, wanted, json_parse=False)
            return
        except WebhookVerificationError as exc:
            if "timestamp too" in str(exc):
                raise SignatureError("stale_timestamp", str(exc)) from exc
            if "Invalid Signature Headers" in str(exc):
                raise SignatureError("invalid_signature", "webhook-timestamp is not a number") from exc
        except (ValueError, TypeError) as exc:  # malformed signature list or base64
            raise SignatureError("invalid_signature", f"malformed webhook-signature: {exc}") from exc
    raise SignatureError("invalid_signature", "no signature matches a configured key")


def sign_standard_webhook(*, secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header value for a body (used by `sign_webhook` and the tests)."""
    return _verifier(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body)
