"""The ``Emulator``: a local Salesforce org over real HTTPS on 127.0.0.1, started in a background thread."""

from __future__ import annotations

import base64
import threading
from typing import Any
from urllib.parse import parse_qs

from . import schema as s
from . import soap
from .auth import Auth, Limits
from .errors import SFError
from .faults import Faults
from .log import RequestLog
from .messages import Request, Response
from .rest import COLLECTION_LIMIT, RestAPI
from .server import EmulatorHTTPServer
from .store import Store
from .tls import EmulatorTLS

DEFAULT_CLIENT_ID = "lifecycle-engine-emulator"
DEFAULT_CLIENT_SECRET = "emulator-client-secret"  # noqa: S105 - a local stand-in's published test credential


class Emulator:
    """A local Salesforce stand-in. Use as a context manager or ``start()`` / ``stop()``::

    with Emulator() as sf:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", sf.ca_bundle_path)
        token = sf.issue_token()  # or POST sf.login_url + "/services/oauth2/token"
        ...
        assert sf.store.find("Account", Lifecycle_Engine_ID__c="acc_1")
        assert sf.requests_log.count("collection_upsert") == 1
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        api_version: str = "62.0",
        daily_api_max: int = 100_000,
        token_ttl: float | None = None,
        timeout_sleep: float = 30.0,
        seed: int | None = None,
        ca_bundle_path: str | None = None,
        schema: s.Schema | None = None,
        strict_fields: bool = True,
        query_batch_size: int = 2000,
        log_bodies: bool = True,
        log_maxlen: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.api_version = api_version
        self.log_bodies = log_bodies
        self.verbose = verbose
        self._bundle_target = ca_bundle_path
        self.store = Store(schema, strict_fields=strict_fields)
        self.faults = Faults(timeout_sleep=timeout_sleep, seed=seed)
        self.requests_log = RequestLog(log_maxlen)
        self.auth = Auth(client_id, client_secret, token_ttl=token_ttl)
        self.limits = Limits(daily_api_max)
        self.rest = RestAPI(self.store, self.limits, query_batch_size=query_batch_size)
        self.stopping = threading.Event()
        self.tls: EmulatorTLS | None = None
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Emulator:
        if self._server is not None:
            return self
        self.stopping.clear()
        self.tls = EmulatorTLS()
        self.tls.write_bundle(self._bundle_target)
        self._server = EmulatorHTTPServer((self.host, self._requested_port), self, self.tls.server_context())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="salesforce-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.tls is not None and self._bundle_target is None:
            self.tls.cleanup()

    def serve_forever(self) -> None:
        """Block until KeyboardInterrupt (the management command)."""
        self.start()
        try:
            while not self.stopping.wait(0.5):
                pass
        finally:
            self.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, seconds: float) -> None:
        """Sleep that ``stop()`` interrupts."""
        if seconds > 0:
            self.stopping.wait(seconds)

    def reset(self) -> None:
        """Fresh state without restarting: records, rules, faults, log, tokens, API usage, query cursors."""
        self.store.clear()
        self.faults.clear()
        self.requests_log.clear()
        self.auth.expire_all()
        self.limits.set(used=0)
        self.rest.reset()

    # ------------------------------------------------------------------ addresses and credentials
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return self._server.server_address[1]

    @property
    def instance_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def login_url(self) -> str:
        return self.instance_url

    @property
    def token_url(self) -> str:
        return f"{self.login_url}/services/oauth2/token"

    @property
    def soap_url(self) -> str:
        return f"{self.instance_url}/services/Soap/u/{self.api_version}"

    @property
    def ca_bundle_path(self) -> str:
        if self.tls is None or self.tls.bundle_path is None:
            raise RuntimeError("the emulator is not running")
        return self.tls.bundle_path

    @property
    def client_id(self) -> str:
        return self.auth.client_id

    @property
    def client_secret(self) -> str:
        return self.auth.client_secret

    def env(self) -> dict[str, str]:
        """The engine's settings (CONTRACT §1) pointing at this emulator."""
        return {
            "SALESFORCE_INSTANCE_URL": self.instance_url,
            "SALESFORCE_LOGIN_URL": self.login_url,
            "SALESFORCE_CLIENT_ID": self.client_id,
            "SALESFORCE_CLIENT_SECRET": self.client_secret,
            "SALESFORCE_API_VERSION": self.api_version,
            "REQUESTS_CA_BUNDLE": self.ca_bundle_path,
        }

    def issue_token(self) -> str:
        """A valid session id, as the token endpoint would give."""
        return self.auth.issue()

    def expire_tokens(self) -> None:
        """Every issued token now answers 401 INVALID_SESSION_ID."""
        self.auth.expire_all()

    def set_api_limit(self, daily_max: int | None = None, *, used: int | None = None) -> None:
        self.limits.set(daily_max=daily_max, used=used)

    @property
    def api_usage(self) -> tuple[int, int]:
        """(used, max) of DailyApiRequests."""
        return self.limits.usage()

    # ------------------------------------------------------------------ token and SOAP endpoints
    def token_endpoint(self, req: Request) -> Response:
        if req.method != "POST":
            return Response.json(400, {"error": "invalid_request", "error_description": "must use HTTP POST"})
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        for key, values in req.query.items():
            form.setdefault(key, values[0])
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = req.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                client_id = client_secret = None
        req.parsed_body = {"grant_type": form.get("grant_type"), "client_id": client_id}
        if form.get("grant_type") != "client_credentials":
            return Response.json(
                400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}
            )
        if not self.auth.check_client(client_id, client_secret):
            return Response.json(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        return Response.json(200, self.auth.token_response(self.instance_url))

    def soap_call(self, req: Request, request: soap.SoapRequest) -> Response:
        if "soapaction" not in req.headers:
            return Response.xml(500, soap.fault("Client", "No SOAPAction header!", client=True))
        if request.operation != "convertLead":
            message = f"No operation available for request {{{soap.PARTNER}}}{request.operation}"
            return Response.xml(500, soap.fault("Client", message, client=True))
        converts = request.lead_converts
        req.record_count = len(converts)
        req.parsed_body = converts
        if len(converts) > COLLECTION_LIMIT:
            message = "record limit reached. cannot submit more than 200 records into this call"
            return Response.xml(500, soap.fault("EXCEEDED_ID_LIMIT", message))
        results: list[dict[str, Any] | SFError] = []
        for index, lc in enumerate(converts):
            try:
                results.append(
                    self.store.convert_lead(
                        lc["lead_id"] or "",
                        converted_status=lc["converted_status"],
                        account_id=lc["account_id"],
                        contact_id=lc["contact_id"],
                        do_not_create_opportunity=lc["do_not_create_opportunity"],
                        opportunity_name=lc["opportunity_name"],
                        overwrite_lead_source=lc["overwrite_lead_source"],
                        fault=req.plan.record_fault(index, lc),
                    )
                )
            except SFError as err:
                results.append(err)
        body = soap.convert_lead_response(results, [lc["lead_id"] for lc in converts], self.limits.usage())
        return Response.xml(200, body)
