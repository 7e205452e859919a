"""Local stand-ins for the alert channels, over real sockets: an aiosmtpd SMTP server and a
Slack-compatible incoming-webhook server; plus reps and alert factories."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth import get_user_model

from alerts.models import Rep


@dataclass
class SmtpSink:
    """Collects every message; `refuse` (code, text) makes it answer RCPT with that code instead."""

    messages: list[EmailMessage] = field(default_factory=list)
    refuse: tuple[int, str] | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return f"{self.refuse[0]} {self.refuse[1]}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted"


@pytest.fixture
def smtp(settings) -> Iterator[SmtpSink]:
    """An SMTP server on a free loopback port, with Django's SMTP backend pointed at it."""
    sink = SmtpSink()
    with socket.socket() as probe:  # a free port (Controller checks readiness by connecting to it)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    try:
        yield sink
    finally:
        controller.stop()


@dataclass
class SlackStandIn:
    """Answers like Slack's incoming webhooks: 200 "ok", or what `answer` says (status, body, headers)."""

    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    answer: tuple[int, str, dict[str, str]] = (200, "ok", {})


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _handler(stand_in: SlackStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            stand_in.posts.append({"method": self.command, "path": self.path, "body": body})
            status, text, headers = stand_in.answer
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text.encode())))
            self.end_headers()
            self.wfile.write(text.encode())

        do_POST = do_GET = _record

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture
def slack(settings) -> Iterator[SlackStandIn]:
    """A Slack-compatible webhook server on loopback; SLACK_WEBHOOK_URL points at it."""
    stand_in = SlackStandIn()
    server, base = _serve(_handler(stand_in))
    stand_in.url = f"{base}/services/T000/B000/XXXX"
    settings.SLACK_ALLOW_LOOPBACK = True
    settings.SLACK_WEBHOOK_URL = stand_in.url
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def other_server() -> Iterator[SlackStandIn]:
    """A second server, the target of a redirect: it must never be reached."""
    stand_in = SlackStandIn()
    server, stand_in.url = _serve(_handler(stand_in))
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()


def make_rep(username: str, *, delivery: str = Rep.Delivery.INSTANT, active: bool = True, **rep: Any) -> Rep:
    user = get_user_model().objects.create_user(username=username, email=f"{username}@sales.example")
    return Rep.objects.create(user=user, delivery=delivery, active=active, **rep)
