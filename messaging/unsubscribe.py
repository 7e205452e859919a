"""Unsubscribing from marketing email: a signed link in every marketing message, a page that needs no
login, and the List-Unsubscribe header (RFC 2369) with one-click unsubscribe (RFC 8058).

The link carries the message's key signed with SECRET_KEY (a salt of its own), not the address: the URL
holds no personal data, yet a forged or altered token is refused. The address is read from the message's
dispatch row when the link is used. A GET shows a button (mail scanners follow links, so a GET changes
nothing); a POST — the button, or a mail client's one-click `List-Unsubscribe=One-Click` — records the
address. From then on an email marked marketing to that address is skipped at sending, the dispatch row
saying why; transactional messages and mail to reps are never held back.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse

from messaging.models import Dispatch, Unsubscribe

SALT = "messaging.unsubscribe"
#: The RFC 8058 body a mail client posts for one-click unsubscribe.
ONE_CLICK_BODY = "List-Unsubscribe=One-Click"


class TokenInvalid(ValueError):
    """An unsubscribe token that was not signed by this engine (altered, truncated or made up)."""


@dataclass(frozen=True)
class Footer:
    """What a marketing email carries at its end: the link, in words and in HTML."""

    url: str
    text: str
    html: str


def unsubscribe_token(key: str) -> str:
    """The signed token of a message's key (its dispatch key)."""
    return signing.Signer(salt=SALT).sign(key)


def token_key(token: str) -> str:
    """The message key a token was signed for; TokenInvalid when the signature does not hold."""
    try:
        return signing.Signer(salt=SALT).unsign(token)
    except signing.BadSignature as exc:
        raise TokenInvalid("This unsubscribe link is not valid (it may have been cut short).") from exc


def unsubscribe_url(key: str) -> str:
    """The absolute address of the unsubscribe page for a message (PUBLIC_BASE_URL, as in every email)."""
    return f"{settings.PUBLIC_BASE_URL}{reverse('unsubscribe', args=[unsubscribe_token(key)])}"


def marketing_footer(key: str) -> Footer:
    """The unsubscribe footer of a marketing message, rendered from templates/messaging/."""
    url = unsubscribe_url(key)
    context = {"unsubscribe_url": url}
    text = render_to_string("messaging/marketing_footer.txt", context).strip()
    html = render_to_string("messaging/marketing_footer.html", context).strip()
    return Footer(url=url, text=text, html=html)


def html_with_footer(html: str, footer: str) -> str:
    """The footer inside the body when the HTML has one, else at its end."""
    at = html.lower().rfind("</body>")
    return f"{html[:at]}{footer}\n{html[at:]}" if at >= 0 else f"{html.rstrip()}\n{footer}\n"


def address_of(key: str) -> str:
    """The lower-cased address a message went to ("" when its row is gone or has none)."""
    recipient = Dispatch.objects.filter(key=key).values_list("recipient", flat=True).first()
    return (recipient or "").strip().lower()


def unsubscribe_record(*, address: str, how: str, dispatch_key: str = "") -> Unsubscribe:
    """Record that an address wants no more marketing email; a repeat keeps the first record."""
    address = address.strip().lower()
    if not address:
        raise ValueError("address: an unsubscribe needs the address it is for.")
    existing = Unsubscribe.objects.filter(address=address).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return Unsubscribe.objects.create(address=address, how=how, dispatch_key=dispatch_key)
    except IntegrityError:  # two clicks at once: the other one recorded it
        return Unsubscribe.objects.get(address=address)


def unsubscribed(address: str) -> Unsubscribe | None:
    """The address's unsubscribe, if it has one."""
    return Unsubscribe.objects.filter(address=address.strip().lower()).first()


def marketing_skip_reason(address: str) -> str | None:
    """Why a marketing message to this address is not sent (it unsubscribed), or None."""
    row = unsubscribed(address)
    if row is None:
        return None
    return f"unsubscribed from marketing email on {row.created_at:%Y-%m-%d} ({row.get_how_display().lower()})"


def masked(address: str) -> str:
    """An address as the page shows it to whoever holds the link: enough to recognise, not to harvest."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}{'•' * max(len(local) - 1, 2)}@{domain}" if domain else ""
