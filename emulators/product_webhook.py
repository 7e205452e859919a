"""A local stand-in for the product's in-app message endpoint (CONTRACT §9): tests and the demo only.

It does what a careful product does: verifies the Standard Webhooks signature (401 otherwise), drops a
`webhook-id` it has already taken (answering 200, so the sender stops retrying) and records each new
message. It can be told to fail: the next N requests answer 500 (or any status, with a Location for a
redirect) or stall, to exercise the engine's retries, redirect refusal and timeouts.

```python
with ProductWebhookSink(secret=secret) as sink:  # HTTPS on a free loopback port, throwaway CA
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sink.ca_bundle_path)  # appends to the bundle in use
    settings.PRODUCT_WEBHOOK_URL = sink.url
    sink.fail_next(2)
```
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from emulators.mailsink import is_loopback
from emulators.salesforce.tls import EmulatorTLS

PATH = "/lifecycle/messages"


@dataclass(frozen=True)
class Fault:
    """What the next request gets instead of normal handling."""

    status: int = 500
    location: str = ""
    stall_seconds: float = 0.0


@dataclass(frozen=True)
class Received:
    webhook_id: str
    payload: dict[str, Any]
    headers: dict[str, str]


@dataclass
class SinkState:
    """Shared by the handler threads: what arrived, what was refused, which faults are pending."""

    secret: str
    received: list[Received] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    attempts: int = 0
    faults: deque[Fault] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, webhook_id: str, payload: dict[str, Any], headers: dict[str, str]) -> bool:
        """Record a verified message; False when its id was taken before (a retried duplicate)."""
        with self.lock:
            if any(item.webhook_id == webhook_id for item in self.received):
                self.duplicates.append(webhook_id)
                return False
            self.received.append(Received(webhook_id, payload, headers))
            return True

    def next_fault(self) -> Fault | None:
        with self.lock:
            self.attempts += 1
            return self.faults.popleft() if self.faults else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        state = self.server.state
        fault = state.next_fault()
        if fault is not None:
            self._fault(fault)
            return
        if self.path.split("?", 1)[0] != PATH:
            self._send(404, {"error": "not_found"})
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            payload = Webhook(state.secret).verify(body.decode("utf-8"), headers)
        except (WebhookVerificationError, UnicodeDecodeError, ValueError) as exc:
            with state.lock:
                state.rejected.append(str(exc))
            self._send(401, {"error": "invalid_signature", "detail": str(exc)})
            return
        fresh = state.take(headers["webhook-id"], payload, headers)
        self._send(200, {"status": "accepted" if fresh else "duplicate"})

    def do_GET(self) -> None:
        """The demo's view of what the product received, newest last; loopback clients only."""
        if not is_loopback(self.client_address[0]):
            self._send(403, {"error": "loopback only"})
            return
        with self.server.state.lock:
            items = [{"webhook_id": r.webhook_id, "payload": r.payload} for r in self.server.state.received]
        self._send(200, {"received": items})

    def _fault(self, fault: Fault) -> None:
        if fault.stall_seconds:
            time.sleep(fault.stall_seconds)
        self.send_response(fault.status)
        if fault.location:
            self.send_header("Location", fault.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: SinkState) -> None:
        self.state = state
        super().__init__(address, _Handler)


class ProductWebhookSink:
    """The product's endpoint on loopback: HTTPS with a throwaway CA unless `tls=False`."""

    def __init__(self, *, secret: str, host: str = "127.0.0.1", port: int = 0, tls: bool = True) -> None:
        if not is_loopback(host):
            raise ValueError("The product webhook stand-in listens on loopback only.")
        self.state = SinkState(secret=secret)
        self._server = _Server((host, port), self.state)
        self._tls = EmulatorTLS() if tls else None
        if self._tls is not None:
            self._server.socket = self._tls.server_context().wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )  # the handshake runs in the connection's thread, not in accept()
        self.ca_bundle_path = self._tls.write_bundle() if self._tls is not None else None
        self._thread = threading.Thread(target=self._serve, name="product-webhook", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{'https' if self._tls else 'http'}://{host}:{port}{PATH}"

    @property
    def received(self) -> list[Received]:
        with self.state.lock:
            return list(self.state.received)

    def fail_next(self, count: int = 1, *, status: int = 500, location: str = "", stall_seconds: float = 0.0) -> None:
        """The next `count` requests get `status` (with `location`, after `stall_seconds`) and are not recorded."""
        with self.state.lock:
            self.state.faults.extend(Fault(status, location, stall_seconds) for _ in range(count))

    def env(self) -> dict[str, str]:
        """The engine's settings that point the in-app channel here."""
        return {
            "PRODUCT_WEBHOOK_URL": self.url,
            "PRODUCT_WEBHOOK_SECRET": self.state.secret,
            "PRODUCT_WEBHOOK_ALLOW_LOOPBACK": "on",
        }

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=0.05)  # a short poll: stop() returns at once

    def start(self) -> ProductWebhookSink:
        """Serve in a background thread (tests, the demo); `url` and `env()` say where."""
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._tls is not None:
            self._tls.cleanup()

    def __enter__(self) -> ProductWebhookSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
