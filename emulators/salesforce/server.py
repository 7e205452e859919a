"""HTTPS server and request dispatch: classify the call, apply injected faults, authenticate, count it
against the API limit, run it, log it.

The TLS handshake runs in the connection's own thread (not in ``accept``), connections are HTTP/1.1
keep-alive, and ``stop()`` wakes every stalled handler and closes every open connection.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from . import soap
from .errors import RequestError, SFError, invalid_session, request_limit_exceeded, server_unavailable
from .errors import unable_to_lock_row as lock_error
from .faults import CallInfo
from .log import Entry
from .messages import Request, Response
from .record_page import record_page, record_path

if TYPE_CHECKING:
    from . import Emulator

QUIET_ERRORS = (ssl.SSLError, ConnectionError, TimeoutError)


class Dispatcher:
    """Everything between the parsed HTTP request and the response bytes."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator

    # ------------------------------------------------------------------ classification
    def classify(self, method: str, path: str) -> tuple[str, Any]:
        parts = path.split("/")
        # ['', 'services', ...]
        if path.rstrip("/") == "/services/oauth2/token":
            return "token", None
        if len(parts) >= 5 and parts[1:4] == ["services", "Soap", "u"]:
            return ("soap", parts[4]) if method == "POST" else ("unknown", None)
        if path.rstrip("/") == "/services/data":
            return "versions", None
        if method == "GET" and (record := record_path(parts)) is not None:
            return "record_page", record
        if len(parts) >= 4 and parts[1:3] == ["services", "data"] and parts[3].startswith("v"):
            version = parts[3][1:]
            route = self.emu.rest.route(method, version, parts[4:])
            return route.kind, (version, route)
        return "unknown", None

    # ------------------------------------------------------------------ dispatch
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes, conn_id: int = 0) -> Response:
        started = time.monotonic()
        split = urlsplit(raw_path)
        path, query_string = split.path, split.query
        if method == "POST" and "_HttpMethod=" in query_string:
            method = (parse_qs(query_string).get("_HttpMethod") or ["POST"])[0].upper()
        kind, info = self.classify(method, path)
        if kind == "soap" and body:
            kind = self._soap_kind(body)
        req = Request(method, path, query_string, headers, body)
        if kind == "record_page":
            req.page, route = info, None
        elif isinstance(info, tuple):
            req.api_version, route = info
            req.object_name = route.object_name
        elif kind in ("soap", "convert_lead"):
            req.api_version = info if isinstance(info, str) else ""
            route = None
        else:
            route = None
        entry = Entry(method, path, query_string, kind, object_name=req.object_name, connection=conn_id)
        plan = self.emu.faults.plan(CallInfo(method, path, kind))
        req.plan = plan
        response = self._run(req, kind, route, plan)
        if plan.commit_then_timeout is not None and response.drop_before is None:
            response.drop_after = self.emu.faults.sleep_for(plan.commit_then_timeout)
        entry.status = (
            None if (response.drop_before is not None or response.drop_after is not None) else response.status
        )
        entry.faults = list(plan.applied)
        entry.record_count = req.record_count
        entry.object_name = req.object_name
        if self.emu.log_bodies:
            entry.body = self._logged_body(req, kind)
            entry.response = response.data
        entry.duration = time.monotonic() - started
        self.emu.requests_log.append(entry)
        return response

    @staticmethod
    def _logged_body(req: Request, kind: str) -> Any:
        """What the call carried, for the log, also when a fault stopped it before its handler read it."""
        if req.parsed_body is not None or kind == "token" or not req.body:
            return req.parsed_body if req.parsed_body is not None else (kind if kind != "token" else None)
        if kind == "convert_lead":
            with contextlib.suppress(soap.SoapParseError):
                return soap.parse_request(req.body).lead_converts
        with contextlib.suppress(ValueError):
            return json.loads(req.body)
        return kind

    @staticmethod
    def _soap_kind(body: bytes) -> str:
        head = body[:4096]
        return "convert_lead" if b"convertLead" in head else "soap"

    def _run(self, req: Request, kind: str, route: Any, plan: Any) -> Response:
        emu = self.emu
        is_soap = kind in ("soap", "convert_lead")
        if plan.latency:
            emu.wait(plan.latency)
        terminal = plan.terminal
        if terminal is not None and terminal.action == "timeout":
            return Response(0, drop_before=emu.faults.sleep_for(terminal))
        if terminal is not None and terminal.action == "server_error":
            err = server_unavailable(int(terminal.params.get("status", 503)), terminal.params.get("error_code"))
            return self._fail(err, is_soap)
        try:
            if kind == "token":
                return emu.token_endpoint(req)
            if kind == "record_page":  # a browser following the engine's link: no API session, no API limit
                return record_page(emu.store, *req.page)
            if kind == "versions":
                return Response.json(200, [{"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"}])
            if kind == "unknown" and route is None:
                return Response.error(RequestError(404, SFError("NOT_FOUND", "The requested resource does not exist")))
            soap_request = None
            if is_soap:
                try:
                    soap_request = soap.parse_request(req.body)
                except soap.SoapParseError as exc:
                    return Response.xml(500, soap.fault("Client", str(exc), client=True))
                token = soap_request.session_id
            else:
                token = self._bearer(req.headers.get("authorization", ""))
            if not emu.auth.valid(token):
                return self._fail(invalid_session(), is_soap)
            if not emu.limits.charge():
                return self._with_limits(self._fail(request_limit_exceeded(), is_soap))
            if terminal is not None:
                if terminal.action == "invalid_session":
                    emu.auth.expire_all()
                    return self._fail(invalid_session(), is_soap)
                if terminal.action == "request_limit":
                    return self._with_limits(self._fail(request_limit_exceeded(), is_soap))
                if terminal.action == "lock_call":
                    return self._with_limits(self._fail(lock_error(), is_soap))
            if is_soap:
                return self._with_limits(emu.soap_call(req, soap_request))
            return self._with_limits(route.handler(req))
        except RequestError as err:
            return self._with_limits(Response.error(err)) if not is_soap else self._fail(err.errors[0], True)
        except SFError as err:
            return self._with_limits(Response.error(RequestError.of(err)))
        except Exception as exc:  # a bug here, or in a test's validation rule: answer like Salesforce's 500
            traceback.print_exc()
            err = server_unavailable(500)
            err.message = f"{err.message} [{type(exc).__name__}: {exc}]"
            return self._fail(err, is_soap)

    @staticmethod
    def _bearer(value: str) -> str | None:
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() in ("bearer", "oauth") and token.strip() else None

    def _fail(self, err: SFError, is_soap: bool) -> Response:
        if is_soap:
            status = err.status if err.status >= 500 else 500
            return Response.xml(status, soap.fault(err.code, err.message))
        return Response.error(RequestError.of(err))

    def _with_limits(self, response: Response) -> Response:
        response.headers["Sforce-Limit-Info"] = self.emu.limits.header()
        return response


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SFDC"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this long
    server: EmulatorHTTPServer

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        conn_id = self.server.connections.get(self.connection, 0)
        response = self.server.dispatcher.handle(self.command, self.path, headers, body, conn_id)
        stall = response.drop_before if response.drop_before is not None else response.drop_after
        if stall is not None:
            self.server.emulator.wait(stall)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        # Headers and body leave in one write: split writes meet delayed ACKs (40 ms per call).
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(response.body)
        self.flush_headers()

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.emulator.verbose:
            sys.stderr.write(f"[salesforce-emulator] {self.address_string()} {format % args}\n")


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: Emulator, context: ssl.SSLContext) -> None:
        self.emulator = emulator
        self.dispatcher = Dispatcher(emulator)
        self.ssl_context = context
        self.connections: dict[socket.socket, int] = {}
        self._next_conn = 0
        self._conn_lock = threading.Lock()
        super().__init__(address, Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's thread: the TLS handshake never blocks the accept loop.
        request.settimeout(Handler.timeout)
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except OSError:  # TLS errors (ssl.SSLError) included
            return
        with self._conn_lock:
            self._next_conn += 1
            self.connections[conn] = self._next_conn
        try:
            super().finish_request(conn, client_address)
        finally:
            with self._conn_lock:
                self.connections.pop(conn, None)
            with contextlib.suppress(OSError):
                conn.close()

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, QUIET_ERRORS) or self.emulator.stopping.is_set():
            return
        super().handle_error(request, client_address)
