"""The support-ticket transport (CONTRACT §9), the one module that imports zenpy (the Zendesk client).

Why zenpy: on PyPI it is maintained (2.0.57, February 2026, after a long run of releases) and resolves
with our dependencies (it adds only cachetools, pytz and six). Four of its habits are set aside here:
- it builds every address as `https://{subdomain}.{domain}`: ZENDESK_URL's host is split at its first
  dot into the two (a port stays with the domain), which is also how a local stand-in on 127.0.0.1 is
  reached; the process-wide ZENPY_FORCE_NETLOC override is not used;
- on 429 it would sleep in the worker for Retry-After: a zero `ratelimit_budget` makes it raise at once,
  and the caller's one backoff rule decides when to try again;
- it caches objects: the cache is off, because deduplication reads a ticket's current status;
- it puts query values into URLs unquoted: the external_id searched for is quoted here.
Its requests.Session follows no redirect (`max_redirects = 0`) and every call has a timeout.

One escalation, one open ticket: the ticket's `external_id` is the message key (the escalation key).
A second send finds the open ticket by it (`GET /api/v2/tickets.json?external_id=…`) and adds a private
comment; once that ticket is solved or closed, the next send opens a new one. A retry after a lost
answer therefore updates the ticket it created instead of opening a second one. Two sends of the same
escalation at the same moment could both find none and open two: the caller sends one escalation from
one worker at a time (Zendesk has no unique external_id to let the desk decide).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlparse

import requests
from django.conf import settings
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket, User
from zenpy.lib.exception import APIException, RatelimitBudgetExceeded, ZenpyException

from messaging.inapp import is_loopback_host
from messaging.registry import Message, Transport, TransportError, transport_register

ZENDESK_OFF = "ticket channel off: ZENDESK_URL, ZENDESK_EMAIL or ZENDESK_API_TOKEN not set"
#: Tickets in these states are finished: a new escalation opens a new ticket.
FINISHED_STATUSES = ("solved", "closed")
TICKET_TAGS = ("lifecycle_engine",)


class ZendeskError(TransportError):
    """A ticket Zendesk did not take; `retryable` says whether trying later can help."""


def zendesk_url_problem(url: str) -> str | None:
    """Why this Zendesk address is refused, or None when it is allowed."""
    parsed = urlparse(url)
    if parsed.scheme != "https" or not parsed.hostname:
        return f"ZENDESK_URL {url!r} must be an https:// address such as https://yourcompany.zendesk.com"
    if parsed.path.strip("/") or parsed.query or parsed.username:
        return "ZENDESK_URL must be the desk's base address only (no path, query or credentials)"
    if "." not in parsed.hostname:
        return f"ZENDESK_URL host {parsed.hostname!r} has no domain (use 127.0.0.1 for a local stand-in)"
    if is_loopback_host(parsed.hostname) and not settings.ZENDESK_ALLOW_LOOPBACK:
        return f"ZENDESK_URL: loopback host {parsed.hostname} is allowed only with ZENDESK_ALLOW_LOOPBACK=on"
    return None


def zendesk_client(*, url: str, email: str, token: str) -> Zenpy:
    """A client for this desk with API-token auth, no redirects, timeouts, no sleeping, no cache."""
    subdomain, _, domain = urlparse(url).netloc.partition(".")
    session = requests.Session()
    session.max_redirects = 0
    timeout = (settings.ZENDESK_CONNECT_TIMEOUT_SECONDS, settings.ZENDESK_TIMEOUT_SECONDS)
    return Zenpy(
        subdomain=subdomain,
        domain=domain,
        email=email,
        token=token,
        session=session,
        timeout=timeout,
        ratelimit_budget=0,
        disable_cache=True,
    )


@contextmanager
def _zendesk_errors() -> Iterator[None]:
    """Turn zenpy's and requests' exceptions into one ZendeskError with a verdict on retrying."""
    try:
        yield
    except RatelimitBudgetExceeded as exc:
        raise ZendeskError("Zendesk answered HTTP 429 (rate limited)", retryable=True) from exc
    except requests.TooManyRedirects as exc:
        raise ZendeskError("Zendesk answered with a redirect: redirects are not followed", retryable=False) from exc
    except requests.Timeout as exc:
        raise ZendeskError(f"Zendesk timed out: {exc}", retryable=True) from exc
    except (APIException, requests.HTTPError) as exc:
        raise _status_error(exc) from exc
    except requests.RequestException as exc:  # refused connection, TLS failure, DNS, ...
        raise ZendeskError(f"could not reach Zendesk: {exc}", retryable=True) from exc
    except ZenpyException as exc:
        raise ZendeskError(f"Zendesk client error: {exc}", retryable=False) from exc


def _status_error(exc: Exception) -> ZendeskError:
    response = getattr(exc, "response", None)
    status = response.status_code if response is not None else 0
    detail = (response.text if response is not None else str(exc)).strip()[:200]
    if status in (401, 403):
        return ZendeskError(
            f"Zendesk refused the credentials (HTTP {status}): check ZENDESK_EMAIL and ZENDESK_API_TOKEN",
            retryable=False,
        )
    retryable = status == 429 or status >= 500 or status == 0
    return ZendeskError(f"Zendesk answered HTTP {status}: {detail}", retryable=retryable)


def open_ticket_for(client: Zenpy, escalation_key: str) -> Ticket | None:
    """The unfinished ticket of this escalation, if any (the newest when several exist)."""
    # zenpy puts query values into the URL as they are: quote the key, or "&", "#" and spaces would cut it.
    found = client.tickets(external_id=quote(escalation_key, safe=""))
    tickets = [t for t in found if t.external_id == escalation_key and t.status not in FINISHED_STATUSES]
    return max(tickets, key=lambda t: t.id) if tickets else None


def ticket_escalate(*, client: Zenpy, escalation_key: str, subject: str, context: str, requester: str) -> int:
    """Open a ticket for this escalation, or comment on its open one; returns the ticket id."""
    with _zendesk_errors():
        ticket = open_ticket_for(client, escalation_key)
        if ticket is not None:
            ticket.comment = Comment(body=context, public=False)
            client.tickets.update(ticket)
            return int(ticket.id)
        new = Ticket(
            subject=subject,
            comment=Comment(body=context, public=False),
            external_id=escalation_key,
            tags=list(TICKET_TAGS),
        )
        if "@" in requester:
            new.requester = User(email=requester)  # Zendesk finds or creates the user by email
        return int(client.tickets.create(new).ticket.id)


@transport_register
class ZendeskTransport(Transport):
    """Escalates to the support desk: `key` is the escalation, `text` the behavioural context."""

    kind = "ticket"  # the ticket channel (CONTRACT §1, §9); Zendesk is its one desk today
    label = "Support ticket"

    def off_reason(self) -> str | None:
        configured = settings.ZENDESK_URL and settings.ZENDESK_EMAIL and settings.ZENDESK_API_TOKEN
        return None if configured else ZENDESK_OFF

    def send(self, message: Message) -> None:
        if not message.key:
            raise ZendeskError("a ticket needs the escalation key (Message.key) to avoid duplicates", retryable=False)
        problem = zendesk_url_problem(settings.ZENDESK_URL)
        if problem:
            raise ZendeskError(problem, retryable=False)
        client = zendesk_client(
            url=settings.ZENDESK_URL, email=settings.ZENDESK_EMAIL, token=settings.ZENDESK_API_TOKEN
        )
        ticket_escalate(
            client=client,
            escalation_key=message.key,
            subject=message.subject or "Lifecycle escalation",
            context=message.text,
            requester=message.recipient,
        )
