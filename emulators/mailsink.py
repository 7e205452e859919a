"""A local SMTP sink whose mails can be read in a browser: development and the demo only.

Alerts are sent over real SMTP (`EMAIL_URL=smtp://127.0.0.1:1025`); the sink keeps the last messages
in memory and serves them as HTML on another port. Without a password it serves loopback clients
only; `MAIL_SINK_PASSWORD` (HTTP Basic) is required to listen anywhere else.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hmac
import ipaddress
import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from django.template.loader import render_to_string

#: No scripts, no remote content; a mail's HTML renders inside a sandboxed frame of the page.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"


@dataclass(frozen=True)
class StoredMail:
    id: int
    received_at: datetime
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes

    @cached_property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]

    @property
    def subject(self) -> str:
        return str(self.message.get("subject", "(no subject)"))

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        return body.get_content() if body is not None and body.get_content_subtype() == subtype else ""

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at.isoformat().replace("+00:00", "Z"),
            "from": self.mail_from,
            "to": list(self.rcpt_tos),
            "subject": self.subject,
        }


class MailStore:
    """The last `limit` messages, newest first; safe across the SMTP and HTTP threads."""

    def __init__(self, limit: int = 1000) -> None:
        self._mails: deque[StoredMail] = deque(maxlen=limit)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, *, mail_from: str, rcpt_tos: list[str], raw: bytes) -> StoredMail:
        with self._lock:
            mail = StoredMail(next(self._ids), datetime.now(UTC), mail_from, tuple(rcpt_tos), raw)
            self._mails.appendleft(mail)
            return mail

    def all(self) -> list[StoredMail]:
        with self._lock:
            return list(self._mails)

    def get(self, mail_id: int) -> StoredMail | None:
        return next((mail for mail in self.all() if mail.id == mail_id), None)


class _SMTPHandler:
    def __init__(self, store: MailStore) -> None:
        self.store = store

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.store.add(mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos), raw=envelope.original_content)
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """aiosmtpd's controller, able to bind port 0: its readiness probe must dial the port actually bound."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


class _PageHandler(BaseHTTPRequestHandler):
    server: _PageServer

    def do_GET(self) -> None:
        if not self._allowed():
            return
        path = self.path.split("?", 1)[0]
        store = self.server.store
        if path == "/":
            self._send(200, render_to_string("mailsink/list.html", {"mails": store.all()}))
        elif path == "/api/messages":
            self._send(200, json.dumps([mail.summary() for mail in store.all()]), "application/json")
        elif path.startswith("/messages/") and (mail := self._mail(path)) is not None:
            if path.endswith(".eml"):
                self._send(200, mail.raw, "message/rfc822")
            else:
                context = {"mail": mail, "text": mail.part("plain"), "html": mail.part("html")}
                self._send(200, render_to_string("mailsink/detail.html", context))
        else:
            self._send(404, render_to_string("mailsink/list.html", {"mails": store.all(), "not_found": True}))

    def _mail(self, path: str) -> StoredMail | None:
        ident = path.removeprefix("/messages/").removesuffix(".eml").strip("/")
        return self.server.store.get(int(ident)) if ident.isdigit() else None

    def _allowed(self) -> bool:
        password = self.server.password
        if password is None:
            if is_loopback(self.client_address[0]):
                return True
            self._send(403, "Loopback clients only.", "text/plain")
            return False
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        try:
            given = base64.b64decode(value).decode().partition(":")[2] if scheme.lower() == "basic" else ""
        except (ValueError, UnicodeDecodeError):
            given = ""
        if hmac.compare_digest(given.encode(), password.encode()):
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="mail sink"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def _send(self, status: int, body: str | bytes, content_type: str = "text/html; charset=utf-8") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the demo's terminal is for what matters


class _PageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: MailStore, password: str | None) -> None:
        self.store = store
        self.password = password
        super().__init__(address, _PageHandler)


class MailSink:
    """SMTP in, HTML out. `with MailSink(smtp_port=0, http_port=0) as sink:` picks free ports."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        smtp_port: int = 1025,
        http_port: int = 8025,
        password: str | None = None,
        limit: int = 1000,
    ) -> None:
        if not is_loopback(host) and not password:
            raise ValueError(f"Listening on {host} needs a password (MAIL_SINK_PASSWORD): mails are personal data.")
        self.host = host
        self.store = MailStore(limit)
        self._smtp = _Controller(_SMTPHandler(self.store), hostname=host, port=smtp_port)
        self._http = _PageServer((host, http_port), self.store, password or None)
        self._thread = threading.Thread(target=self._http.serve_forever, name="mail-sink-http", daemon=True)

    @property
    def smtp_port(self) -> int:
        return self._smtp.port

    @property
    def http_port(self) -> int:
        return self._http.server_address[1]

    @property
    def email_url(self) -> str:
        return f"smtp://{self.host}:{self.smtp_port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.http_port}/"

    def start(self) -> MailSink:
        try:
            self._smtp.start()
        except BaseException:
            self._http.server_close()
            raise
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._smtp.stop()

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
