"""The Slack transport, the one module that talks to Slack (slack_sdk's WebhookClient): allowlist, no
redirects, one error type.

WebhookClient posts with urllib, whose default opener follows redirects (and turns a redirected POST
into a GET to wherever the answer points). A webhook address that redirects is misconfigured or
hostile, so here the opener refuses every redirect and a 3xx is a failure like any other.
"""

from __future__ import annotations

import os
import ssl
import urllib.request
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlparse
from urllib.request import Request

from django.conf import settings
from slack_sdk.webhook import WebhookClient, WebhookResponse

from messaging.registry import Message, Transport, TransportError, transport_register

SLACK_HOSTS = ("hooks.slack.com",)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SLACK_OFF = "Slack channel off: SLACK_WEBHOOK_URL not set"


class SlackError(TransportError):
    """A message Slack did not take; `retryable` says whether trying later can help."""


def slack_url_problem(url: str) -> str | None:
    """Why this webhook address is refused, or None when it is allowed."""
    parsed = urlparse(url)
    if parsed.scheme == "https" and parsed.hostname in SLACK_HOSTS:
        return None
    if parsed.hostname in LOOPBACK_HOSTS and parsed.scheme in ("http", "https"):
        if settings.SLACK_ALLOW_LOOPBACK:
            return None
        return f"SLACK_WEBHOOK_URL: loopback host {parsed.hostname} is allowed only with SLACK_ALLOW_LOOPBACK=on"
    return f"SLACK_WEBHOOK_URL: host {parsed.hostname!r} is not allowed (only https://hooks.slack.com/…)"


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Request, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


class _NoRedirectWebhookClient(WebhookClient):
    """WebhookClient whose requests go through an opener that never follows a redirect."""

    def _perform_http_request_internal(self, url: str, req: Request) -> WebhookResponse:
        opener = urllib.request.build_opener(_RefuseRedirects(), urllib.request.HTTPSHandler(context=self.ssl))
        with opener.open(req, timeout=self.timeout) as http_resp:
            charset = http_resp.headers.get_content_charset() or "utf-8"
            body = http_resp.read().decode(charset)
            return WebhookResponse(url=url, status_code=http_resp.status, body=body, headers=dict(http_resp.headers))


def _ssl_context() -> ssl.SSLContext:
    """Trust what REQUESTS_CA_BUNDLE names (CONTRACT §1), else the system store."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or None
    return ssl.create_default_context(cafile=bundle)


def slack_post(*, url: str, text: str, blocks: list[dict[str, Any]]) -> None:
    """Post one message; raise SlackError unless Slack answered 200 "ok"."""
    problem = slack_url_problem(url)
    if problem:
        raise SlackError(problem, retryable=False)
    client = _NoRedirectWebhookClient(url=url, timeout=settings.SLACK_TIMEOUT_SECONDS, ssl=_ssl_context())
    try:
        response = client.send(text=text, blocks=blocks)
    except HTTPError as exc:  # not raised by send() today, but urllib may: same rules
        raise _status_error(exc.code, str(exc.reason)) from exc
    except OSError as exc:
        raise SlackError(f"could not reach Slack: {exc}", retryable=True) from exc
    if response.status_code != 200 or (response.body or "").strip() != "ok":
        raise _status_error(response.status_code, response.body or "")


def _status_error(status: int, body: str) -> SlackError:
    detail = body.strip()[:200]
    if 300 <= status < 400:
        return SlackError(f"HTTP {status}: redirects are not followed", retryable=False)
    retryable = status == 429 or status >= 500
    return SlackError(f"HTTP {status}: {detail}", retryable=retryable)


@transport_register
class SlackTransport(Transport):
    """Posts to the one channel webhook (SLACK_WEBHOOK_URL); a message's recipient is "webhook"."""

    kind = "slack"
    label = "Slack"

    def off_reason(self) -> str | None:
        return None if settings.SLACK_WEBHOOK_URL else SLACK_OFF

    def send(self, message: Message) -> None:
        slack_post(url=settings.SLACK_WEBHOOK_URL, text=message.text, blocks=message.blocks)
