"""The email transport: one message through Django's configured backend (SMTP per EMAIL_URL).

A message marked marketing (`data["marketing"]`, set by the planner for an action marked so) carries the
List-Unsubscribe headers for its unsubscribe link, and is skipped when its address has unsubscribed
(messaging/unsubscribe.py); every other message goes out regardless.
"""

from __future__ import annotations

import re
import smtplib
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives

from messaging.registry import Message, Transport, TransportError, transport_register
from messaging.unsubscribe import ONE_CLICK_BODY, marketing_skip_reason

EMAIL_OFF = "email channel off: EMAIL_URL not set"


class MailError(TransportError):
    """A message the mail server did not take; `retryable` is False for permanent (5xx) refusals."""


def message_id(key: str) -> str:
    """A Message-ID made from the message's stable key: a copy sent again after a lost answer (or a worker
    killed between the server's "250" and the row's update) carries the same id, which mailboxes and the
    chaos test recognise as one message."""
    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "lifecycle-engine.invalid"
    # Only RFC 5322 atext on the left; anything else escaped as =XX, so two keys never share an id.
    left = re.sub(r"[^A-Za-z0-9_\-+]", lambda match: f"={ord(match.group()):02X}", key)
    return f"<{left}@{domain}>"


def mail_send(
    *, to: str, subject: str, text: str, html: str, key: str = "", headers: dict[str, str] | None = None
) -> None:
    """Send a text email with an HTML alternative; raise MailError if it was not accepted. `key`: the
    message's stable key, its Message-ID (else Django makes a random one); `headers`: more headers
    (List-Unsubscribe)."""
    headers = ({"Message-ID": message_id(key)} if key else {}) | (headers or {})
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [to], headers=headers or None)
    message.attach_alternative(html, "text/html")
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise MailError(f"recipient refused: {exc.recipients}", retryable=all(400 <= c < 500 for c in codes)) from exc
    except smtplib.SMTPResponseException as exc:
        detail = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        raise MailError(f"SMTP {exc.smtp_code}: {detail}", retryable=exc.smtp_code < 500) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"{type(exc).__name__}: {exc}", retryable=True) from exc


@transport_register
class EmailTransport(Transport):
    kind = "email"
    label = "Email"

    def off_reason(self) -> str | None:
        return None if settings.EMAIL_CHANNEL_ENABLED else EMAIL_OFF

    def skip_reason(self, message: Message) -> str | None:
        """A marketing message to an address that unsubscribed is not sent (transactional mail always is)."""
        return marketing_skip_reason(message.recipient) if message.data.get("marketing") else None

    def send(self, message: Message) -> None:
        mail_send(
            to=message.recipient,
            subject=message.subject,
            text=message.text,
            html=message.html,
            key=message.key,
            headers=unsubscribe_headers(message.data.get("unsubscribe_url") or ""),
        )


def unsubscribe_headers(url: str) -> dict[str, str]:
    """RFC 2369's List-Unsubscribe and RFC 8058's one-click List-Unsubscribe-Post, for a marketing message."""
    if not url:
        return {}
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": ONE_CLICK_BODY}
