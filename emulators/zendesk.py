"""A minimal Zendesk Tickets API over HTTPS on loopback: tests and the demo only.

What it speaks (the subset the ticket channel uses, shaped like Zendesk's answers):
| call | answer |
| --- | --- |
| any call without Basic `{email}/token:{token}` | 401 `{"error": "Couldn't authenticate you"}` |
| `POST /api/v2/tickets.json` `{"ticket": {subject, comment, external_id, tags, requester}}` | 201 `{ticket, audit}` |
| `GET /api/v2/tickets.json?external_id=…` | 200 `{tickets, meta, links}` (one page) |
| `GET /api/v2/tickets/{id}.json` | 200 `{ticket}`; 404 `RecordNotFound` |
| `PUT /api/v2/tickets/{id}.json` `{"ticket": {comment?, status?, …}}` | 200 `{ticket, audit}`; a closed ticket 422 |

A ticket's `description` is its first comment; a `requester` given by email is found or created
(`requester_id`). `fail_next` makes the next calls answer an error (a 429
carries Retry-After), as the product webhook stand-in does.

```python
with ZendeskEmulator() as desk:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", desk.ca_bundle_path)  # appends to the bundle in use
    settings.ZENDESK_URL, settings.ZENDESK_EMAIL, settings.ZENDESK_API_TOKEN = desk.url, desk.email, desk.token
```
"""

from __future__ import annotations

import base64
import hmac
import itertools
import json
import re
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from emulators.mailsink import is_loopback
from emulators.salesforce.tls import EmulatorTLS

TICKETS = "/api/v2/tickets.json"
TICKET_RE = re.compile(r"/api/v2/tickets/(\d+)\.json")
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
#: Fields a client may set; everything else (id, description, timestamps) is the desk's.
WRITABLE = ("subject", "external_id", "tags", "status", "priority", "type")


class DeskError(Exception):
    def __init__(self, status: int, document: dict[str, Any]) -> None:
        super().__init__(document)
        self.status = status
        self.document = document


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Desk:
    """The tickets and their comments; safe across handler threads."""

    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)  # email -> id: a requester is found or created
    faults: deque[int] = field(default_factory=deque)
    calls: list[str] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        comment = _comment(fields)
        if comment is None:
            raise DeskError(422, _invalid("description", "Description: cannot be blank"))
        with self.lock:
            ticket_id = next(self._ids)
            ticket = {"id": ticket_id, "status": "new", "tags": [], "external_id": None, "subject": ""}
            ticket.update({name: fields[name] for name in WRITABLE if name in fields})
            ticket.update(description=comment["body"], created_at=_now(), updated_at=_now())
            if isinstance(fields.get("requester"), dict) and (email := fields["requester"].get("email")):
                ticket["requester_id"] = self.users.setdefault(str(email), 1000 + len(self.users))
            self.tickets[ticket_id] = ticket
            self.comments[ticket_id] = [comment]
            return dict(ticket)

    def update(self, ticket_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            ticket = self.get(ticket_id)
            if ticket["status"] == "closed":
                raise DeskError(422, _invalid("status", "Status: closed prevents ticket update"))
            if fields.get("status", ticket["status"]) not in STATUSES:
                raise DeskError(422, _invalid("status", f"Status: {fields['status']} is not valid"))
            if (comment := _comment(fields)) is not None:
                self.comments[ticket_id].append(comment)
            self.tickets[ticket_id].update({name: fields[name] for name in WRITABLE if name in fields})
            self.tickets[ticket_id]["updated_at"] = _now()
            return dict(self.tickets[ticket_id])

    def get(self, ticket_id: int) -> dict[str, Any]:
        with self.lock:
            if ticket_id not in self.tickets:
                raise DeskError(404, {"error": "RecordNotFound", "description": "Not found"})
            return dict(self.tickets[ticket_id])

    def with_external_id(self, external_id: str | None = None) -> list[dict[str, Any]]:
        """Tickets with this external_id, or every ticket when None."""
        with self.lock:
            return [dict(t) for t in self.tickets.values() if external_id is None or t["external_id"] == external_id]


def _comment(fields: dict[str, Any]) -> dict[str, Any] | None:
    """The comment a create or update carries (`comment.body`, or `description` on create)."""
    raw = fields.get("comment")
    body = raw.get("body") if isinstance(raw, dict) else fields.get("description")
    if not body:
        return None
    public = raw.get("public", True) if isinstance(raw, dict) else True
    return {"body": str(body), "public": bool(public), "created_at": _now()}


def _invalid(name: str, description: str) -> dict[str, Any]:
    details = {name: [{"description": description, "error": "InvalidValue"}]}
    return {"error": "RecordInvalid", "description": "Record validation errors", "details": details}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        desk = self.server.desk
        with desk.lock:
            desk.calls.append(f"{method} {self.path}")
            fault = desk.faults.popleft() if desk.faults else None
        try:
            if fault is not None:
                raise DeskError(fault, {"error": "Simulated", "description": f"fault injected: HTTP {fault}"})
            self._authenticate()
            status, document = self._route(method, body)
        except DeskError as exc:
            status, document = exc.status, exc.document
        self._send(status, document)

    def _authenticate(self) -> None:
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        try:
            given = base64.b64decode(value).decode() if scheme.lower() == "basic" else ""
        except (ValueError, UnicodeDecodeError):
            given = ""
        wanted = f"{self.server.email}/token:{self.server.token}"
        if not hmac.compare_digest(given.encode(), wanted.encode()):
            raise DeskError(401, {"error": "Couldn't authenticate you"})

    def _route(self, method: str, body: bytes) -> tuple[int, dict[str, Any]]:
        desk = self.server.desk
        split = urlsplit(self.path)
        if split.path == TICKETS and method == "POST":
            ticket = desk.create(_ticket_fields(body))
            return 201, {"ticket": ticket, "audit": _audit(ticket)}
        if split.path == TICKETS and method == "GET":
            external_id = (parse_qs(split.query).get("external_id") or [None])[0]
            tickets = desk.with_external_id(external_id)
            page = {"tickets": tickets, "count": len(tickets), "next_page": None, "previous_page": None}
            return 200, page | {"meta": {"has_more": False}, "links": {"next": None, "prev": None}}
        if match := TICKET_RE.fullmatch(split.path):
            ticket_id = int(match.group(1))
            if method == "GET":
                return 200, {"ticket": desk.get(ticket_id)}
            if method == "PUT":
                ticket = desk.update(ticket_id, _ticket_fields(body))
                return 200, {"ticket": ticket, "audit": _audit(ticket)}
        raise DeskError(404, {"error": "InvalidEndpoint", "description": "Not found"})

    def _send(self, status: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "30")
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _ticket_fields(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body or b"{}")
    except ValueError as exc:
        raise DeskError(400, {"error": "Unprocessable Entity", "description": f"invalid JSON: {exc}"}) from exc
    ticket = document.get("ticket") if isinstance(document, dict) else None
    if not isinstance(ticket, dict):
        raise DeskError(400, {"error": "Unprocessable Entity", "description": 'expected {"ticket": {...}}'})
    return ticket


def _audit(ticket: dict[str, Any]) -> dict[str, Any]:
    return {"id": secrets.randbelow(10**9), "ticket_id": ticket["id"], "created_at": _now(), "events": []}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], desk: Desk, email: str, token: str) -> None:
        self.desk, self.email, self.token = desk, email, token
        super().__init__(address, _Handler)


class ZendeskEmulator:
    """The desk on a loopback port over HTTPS (a throwaway CA; `ca_bundle_path` appends it to the bundle in use)."""

    def __init__(
        self, *, email: str = "engine@example.com", token: str = "", host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if not is_loopback(host):
            raise ValueError("The Zendesk stand-in listens on loopback only.")
        self.email, self.token = email, token or secrets.token_urlsafe(30)
        self.desk = Desk()
        self._tls = EmulatorTLS()
        self._server = _Server((host, port), self.desk, self.email, self.token)
        self._server.socket = self._tls.server_context().wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )  # the handshake runs in the connection's thread, not in accept()
        self.ca_bundle_path = self._tls.write_bundle()
        self._thread = threading.Thread(target=self._serve, name="zendesk-emulator", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"https://{host}:{port}"

    def fail_next(self, count: int = 1, *, status: int = 500) -> None:
        """The next `count` calls answer `status` (429 with Retry-After) before authentication."""
        with self.desk.lock:
            self.desk.faults.extend([status] * count)

    def env(self) -> dict[str, str]:
        """The engine's settings that point the ticket channel here."""
        return {
            "ZENDESK_URL": self.url,
            "ZENDESK_EMAIL": self.email,
            "ZENDESK_API_TOKEN": self.token,
            "ZENDESK_ALLOW_LOOPBACK": "on",
        }

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=0.05)  # a short poll: stop() returns at once

    def start(self) -> ZendeskEmulator:
        """Serve in a background thread (tests, the demo); `url` and `env()` say where."""
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._tls.cleanup()

    def __enter__(self) -> ZendeskEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
