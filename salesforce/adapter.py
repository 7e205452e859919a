"""The Salesforce adapter: the only module that imports simple_salesforce (STYLE habit 4).

It fetches its own token (client credentials at SALESFORCE_LOGIN_URL) or uses SALESFORCE_ACCESS_TOKEN,
refreshes once on INVALID_SESSION_ID, gives every call a timeout, reads API usage from
Sforce-Limit-Info, and turns every failure into one exception type, `SalesforceCallError`, carrying
Salesforce's errorCode. Retry decisions are made from that code, in one place (`salesforce/policy.py`).

Hedging (SALESFORCE_HEDGE): a call that outlives the usual time of its kind is sent a second time and
the first answer taken, so a stalled connection costs a moment instead of the whole timeout. Only calls
that are safe to repeat are hedged: upserts by external id and updates by Id (the same state twice),
queries, and convertLead (Salesforce refuses to convert a lead twice; the engine then re-reads it).
Deletions are not (the second would report ENTITY_IS_DELETED). While the slower copy of a write may
still land, `held_until` names its records, and the drainer sends no newer version of them (the same
guarantee as a retry after a timeout: nothing newer goes while an older copy is in flight from here).
"""

from __future__ import annotations

import logging
import threading
import time
import xml.etree.ElementTree as ET  # types only; parsing goes through defusedxml
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain
from typing import Any
from xml.sax.saxutils import escape

import requests
from defusedxml.ElementTree import fromstring as parse_xml
from django.conf import settings
from django.utils import timezone
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

logger = logging.getLogger(__name__)

SOAP_NS = {"soapenv": "http://schemas.xmlsoap.org/soap/envelope/", "sf": "urn:partner.soap.sforce.com"}


class SalesforceCallError(Exception):
    """A failed call or record. `code` is Salesforce's errorCode, or TIMEOUT / CONNECTION / HTTP_<status>."""

    def __init__(self, code: str, message: str, *, status: int | None = None, fields: list[str] | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.fields = fields or []


@dataclass(frozen=True)
class RecordResult:
    """One record's outcome in a collection call."""

    success: bool
    salesforce_id: str = ""
    created: bool = False
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True)
class Conversion:
    success: bool
    lead_id: str = ""
    account_id: str = ""
    contact_id: str = ""
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True)
class CollectionWrite:
    """One sObject Collections write inside a composite call: an update by Id of (type, record) pairs,
    types mixed, or (`upsert_type` set) an upsert of that type by the external id field."""

    records: list[tuple[str, dict]]
    upsert_type: str = ""


ANSWER_LOST = ("TIMEOUT", "CONNECTION")  # codes of a call whose answer never came: it may have been applied
HEDGE_MIN_SECONDS = 0.5
HOLD_MARGIN_SECONDS = 0.25  # a copy still out is held past its timeout by this much (clocks, the answer's parsing)
HEDGE_SAMPLES = 200  # answered calls of a kind the automatic hedge delay is taken from
HEDGE_MIN_SAMPLES = 20  # fewer: no hedge yet (nothing to call "slow" against)


class TimeoutSession(requests.Session):
    """A requests session whose every call has a timeout unless one is given."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32)  # the drainer's lanes and their hedges
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, **kwargs)


def _answer_lost(copy: Future) -> bool:
    error = copy.exception()
    return isinstance(error, SalesforceCallError) and error.code in ANSWER_LOST


def _error_from(exc: SalesforceError) -> SalesforceCallError:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        return SalesforceCallError(
            first.get("errorCode", f"HTTP_{exc.status}"),
            first.get("message", ""),
            status=exc.status,
            fields=first.get("fields"),
        )
    if exc.status == 300:
        return SalesforceCallError("MULTIPLE_MATCHES", f"external id matches several records: {content}", status=300)
    return SalesforceCallError(f"HTTP_{exc.status}", str(content)[:500], status=exc.status)


class CallTimes:
    """How long answered calls of each kind took lately: what "slow" means for the hedge."""

    def __init__(self) -> None:
        self._seconds: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, kind: str, seconds: float) -> None:
        with self._lock:
            self._seconds.setdefault(kind, deque(maxlen=HEDGE_SAMPLES)).append(seconds)

    def hedge_after(self, kind: str) -> float | None:
        """Seconds after which a call of this kind is sent again; None: not hedged."""
        if not settings.SALESFORCE_HEDGE:
            return None
        delay = settings.SALESFORCE_HEDGE_AFTER_SECONDS
        if not delay:
            with self._lock:
                seconds = sorted(self._seconds.get(kind, ()))
                if len(seconds) < HEDGE_MIN_SAMPLES:  # a kind seldom called: measured against every call
                    seconds = sorted(chain.from_iterable(self._seconds.values()))
            if len(seconds) < HEDGE_MIN_SAMPLES:
                return None
            delay = max(HEDGE_MIN_SECONDS, 2 * seconds[int(0.95 * (len(seconds) - 1))])
        return delay if delay < settings.SALESFORCE_TIMEOUT_SECONDS else None


class _InFlight:
    """Writes whose slower copy is still out: their records, and when that copy gives up at the latest."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], list[datetime]] = {}
        self._copies: set[Future] = set()
        self._lock = threading.Lock()

    def add(self, copy: Future, keys: list[tuple[str, str]], until: datetime) -> None:
        with self._lock:
            self._copies.add(copy)
            for key in keys:
                self._records.setdefault(key, []).append(until)

        def landed(_: Future) -> None:
            with self._lock:
                self._copies.discard(copy)
                for key in keys:
                    pending = self._records.get(key, [])
                    if until in pending:
                        pending.remove(until)
                    if not pending:
                        self._records.pop(key, None)

        copy.add_done_callback(landed)

    def held_until(self, object_type: str, external_ids: list[str]) -> dict[str, datetime]:
        """Until when each record with a copy still out waits (a little longer if it should be back by now)."""
        soon = timezone.now() + timedelta(seconds=HOLD_MARGIN_SECONDS)
        with self._lock:
            return {
                external_id: max(soon, *self._records[object_type, external_id])
                for external_id in external_ids
                if self._records.get((object_type, external_id))
            }

    def settle(self, timeout: float) -> bool:
        """Wait until every copy still out has answered or given up; True if none is left."""
        with self._lock:
            copies = list(self._copies)
        return not wait(copies, timeout=timeout).not_done if copies else True


class SalesforceClient:
    def __init__(self) -> None:
        self.session = TimeoutSession(settings.SALESFORCE_TIMEOUT_SECONDS)
        self.instance_url = settings.SALESFORCE_INSTANCE_URL.rstrip("/")
        self.version = settings.SALESFORCE_API_VERSION
        self._sf: Salesforce | None = None
        self._lock = threading.Lock()  # the drainer's stages share one client (one token) across threads
        self.call_times = CallTimes()
        self._in_flight = _InFlight()
        self._pool: ThreadPoolExecutor | None = None
        self.hedged_calls = 0  # calls sent a second time, for tests (operators read the INFO log line)

    # --- auth ------------------------------------------------------------------------------------

    def _token(self) -> str:
        if not settings.SALESFORCE_LOGIN_URL:
            return settings.SALESFORCE_ACCESS_TOKEN
        try:
            response = self.session.post(
                f"{settings.SALESFORCE_LOGIN_URL.rstrip('/')}/services/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": settings.SALESFORCE_CLIENT_ID,
                    "client_secret": settings.SALESFORCE_CLIENT_SECRET,
                },
            )
        except requests.RequestException as exc:
            raise SalesforceCallError("CONNECTION", f"token request failed: {exc}") from exc
        if response.status_code != 200:
            raise SalesforceCallError("AUTH_FAILED", response.text[:300], status=response.status_code)
        body = response.json()
        self.instance_url = body.get("instance_url", self.instance_url).rstrip("/")
        return body["access_token"]

    def _client(self) -> Salesforce:
        with self._lock:
            if self._sf is None:
                self._sf = Salesforce(
                    instance_url=self.instance_url,
                    session_id=self._token(),
                    version=self.version,
                    session=self.session,
                )
            return self._sf

    def _call(self, operation, *args: Any, **kwargs: Any) -> Any:
        """Run `operation(sf, …)`, refreshing the token once on INVALID_SESSION_ID."""
        for attempt in (1, 2):
            sf = self._client()
            try:
                return operation(sf, *args, **kwargs)
            except SalesforceError as exc:
                error = _error_from(exc)
                if error.code == "INVALID_SESSION_ID" and attempt == 1:
                    logger.info("Salesforce session expired; fetching a new token")
                    with self._lock:
                        if self._sf is sf:  # not already refreshed by another stage
                            self._sf = None
                    continue
                raise error from exc
            except requests.Timeout as exc:
                raise SalesforceCallError("TIMEOUT", str(exc)) from exc
            except requests.RequestException as exc:
                raise SalesforceCallError("CONNECTION", str(exc)) from exc
        raise AssertionError("unreachable")

    def _hedged(self, kind: str, operation, *args: Any, keys: list[tuple[str, str]] = ()) -> Any:
        """`_call(operation, …)`, sent a second time if it outlives `hedge_after(kind)`; the first answer
        wins (an answer from Salesforce, even an error; a copy that timed out or lost its connection
        waits for the other). `keys` ((type, external id) of a write's records) are held while a copy is out."""
        delay = self.call_times.hedge_after(kind)
        if delay is None:
            return self._timed(kind, operation, *args)
        pool = self._executor()
        first = pool.submit(self._timed, kind, operation, *args)
        if not wait([first], timeout=delay).not_done:
            return first.result()
        with self._lock:
            self.hedged_calls += 1
        logger.info("Salesforce %s call slower than %.2f s: sending it again", kind, delay)
        second = pool.submit(self._timed, kind, operation, *args)
        gives_up = {first: timezone.now() - timedelta(seconds=delay), second: timezone.now()}
        pending, winner = {first, second}, None
        while winner is None:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            answered = [copy for copy in done if not _answer_lost(copy)]
            winner = answered[0] if answered else (None if pending else done.pop())
        for copy in pending:  # still out: it may yet land, so its records wait until it gives up at the latest
            until = gives_up[copy] + timedelta(seconds=settings.SALESFORCE_TIMEOUT_SECONDS + HOLD_MARGIN_SECONDS)
            self._in_flight.add(copy, keys, until)
        return winner.result()

    def _timed(self, kind: str, operation, *args: Any) -> Any:
        started = time.monotonic()
        try:
            result = self._call(operation, *args)
        except SalesforceCallError as exc:
            if exc.code not in ANSWER_LOST:
                self.call_times.add(kind, time.monotonic() - started)
            raise
        self.call_times.add(kind, time.monotonic() - started)
        return result

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="salesforce-call")
            return self._pool

    def held_until(self, object_type: str, external_ids: list[str]) -> dict[str, datetime]:
        """Records of this type with a copy of an earlier write still out: until when, at the latest."""
        return self._in_flight.held_until(object_type, external_ids)

    def settle(self, timeout: float | None = None) -> bool:
        """Wait for the copies still out (at most the call timeout); True if none is left."""
        return self._in_flight.settle(settings.SALESFORCE_TIMEOUT_SECONDS + 1 if timeout is None else timeout)

    @property
    def api_usage(self) -> tuple[int, int] | None:
        """(used, max) of the daily API allocation, from the last Sforce-Limit-Info header."""
        usage = self._sf.api_usage.get("api-usage") if self._sf else None
        return (usage.used, usage.total) if usage else None

    # --- calls -----------------------------------------------------------------------------------

    def upsert_collection(self, object_type: str, external_field: str, records: list[dict]) -> list[RecordResult]:
        """sObject Collections upsert (≤ 200 records, allOrNone false): one result per record, in order."""
        typed = [(object_type, record) for record in records]
        body = {"allOrNone": False, "records": _with_types(typed)}
        results = self._hedged(
            "upsert",
            lambda sf: sf.restful(f"composite/sobjects/{object_type}/{external_field}", method="PATCH", json=body),
            keys=_keys(typed, external_field),
        )
        return [_record_result(result) for result in results]

    def update_collection(self, records: list[tuple[str, dict]], *, external_field: str = "") -> list[RecordResult]:
        """sObject Collections update by Id of (type, record) pairs, types mixed in one call
        (used to stamp external ids on the records a lead conversion made; `external_field` names them
        while a hedged copy is out)."""
        body = {"allOrNone": False, "records": _with_types(records)}
        results = self._hedged(
            "update",
            lambda sf: sf.restful("composite/sobjects", method="PATCH", json=body),
            keys=_keys(records, external_field),
        )
        return [_record_result(result) for result in results]

    def write_collections(self, writes: list[CollectionWrite], *, external_field: str) -> list[list[RecordResult]]:
        """Several collection writes in one Composite call (≤ 5, each ≤ 200 records), run in the order given
        (collateSubrequests false: a later write may look up a record an earlier one stamped). Each stands
        alone (allOrNone false); a write refused whole gives each of its records that error."""
        base = f"/services/data/v{self.version}/composite/sobjects"
        subrequests = [
            {
                "method": "PATCH",
                "url": f"{base}/{write.upsert_type}/{external_field}" if write.upsert_type else base,
                "referenceId": f"write{index}",
                "body": {"allOrNone": False, "records": _with_types(write.records)},
            }
            for index, write in enumerate(writes)
        ]
        body = {"allOrNone": False, "collateSubrequests": False, "compositeRequest": subrequests}
        answer = self._hedged(
            "composite",
            lambda sf: sf.restful("composite", method="POST", json=body),
            keys=[key for write in writes for key in _keys(write.records, external_field)],
        )
        return [
            _subrequest_results(part, len(write.records))
            for part, write in zip(answer["compositeResponse"], writes, strict=True)
        ]

    def delete_collection(self, record_ids: list[str]) -> list[RecordResult]:
        """sObject Collections delete by Id (≤ 200, allOrNone false): one result per id, in order."""
        params = {"ids": ",".join(record_ids), "allOrNone": "false"}
        results = self._call(lambda sf: sf.restful("composite/sobjects", params=params, method="DELETE"))
        return [_record_result(result) for result in results]

    def query(self, soql: str) -> list[dict]:
        return self._hedged("query", lambda sf: sf.query_all(soql))["records"]

    def limits(self) -> dict:
        return self._call(lambda sf: sf.limits())

    def convert_leads(self, conversions: list[tuple[str, str | None, str | None]]) -> list[Conversion]:
        """SOAP convertLead for [(lead id, account id or None, contact id or None)], no opportunity; ≤ 200 a
        call. Without an account id Salesforce creates the account; with a contact id it merges the lead
        into that contact instead of creating one."""
        return self._hedged("convert", self._convert, conversions)

    def _convert(self, sf: Salesforce, conversions: list[tuple[str, str | None, str | None]]) -> list[Conversion]:
        url = f"{self.instance_url}/services/Soap/u/{self.version}"
        body = _convert_envelope(sf.session_id, conversions)
        try:
            response = self.session.post(
                url, data=body.encode(), headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": '""'}
            )
        except requests.Timeout as exc:
            raise SalesforceCallError("TIMEOUT", str(exc)) from exc
        except requests.RequestException as exc:
            raise SalesforceCallError("CONNECTION", str(exc)) from exc
        root = parse_xml(response.content)
        fault = root.find(".//soapenv:Fault", SOAP_NS)
        if fault is not None:
            code = (fault.findtext("faultcode") or "").rpartition(":")[2]
            message = fault.findtext("faultstring") or ""
            if code == "INVALID_SESSION_ID":
                from simple_salesforce.exceptions import SalesforceExpiredSession

                raise SalesforceExpiredSession(url, 401, "convertLead", [{"errorCode": code, "message": message}])
            raise SalesforceCallError(code or f"HTTP_{response.status_code}", message, status=response.status_code)
        if response.status_code >= 500:
            raise SalesforceCallError(f"HTTP_{response.status_code}", response.text[:300], status=response.status_code)
        return [_conversion(result) for result in root.iterfind(".//sf:result", SOAP_NS)]


def _record_result(result: dict) -> RecordResult:
    if result.get("success"):
        return RecordResult(True, result.get("id") or "", bool(result.get("created")))
    error = (result.get("errors") or [{}])[0]
    return RecordResult(
        False,
        result.get("id") or "",
        False,
        error.get("statusCode") or error.get("errorCode", "UNKNOWN"),
        error.get("message", ""),
    )


def _with_types(records: list[tuple[str, dict]]) -> list[dict]:
    """(type, record) pairs as sObject Collections records: each carries its type in `attributes`."""
    return [{"attributes": {"type": object_type}, **record} for object_type, record in records]


def _keys(records: list[tuple[str, dict]], external_field: str) -> list[tuple[str, str]]:
    """(type, external id) of the records that carry one: what a hedged write holds while a copy is out."""
    return [(t, record[external_field]) for t, record in records if external_field and record.get(external_field)]


def _subrequest_results(part: dict, count: int) -> list[RecordResult]:
    if part.get("httpStatusCode", 500) < 400:
        return [_record_result(result) for result in part["body"]]
    error = (part.get("body") or [{}])[0]
    code = error.get("errorCode") or f"HTTP_{part.get('httpStatusCode')}"
    return [RecordResult(False, error_code=code, error_message=error.get("message", ""))] * count


def _conversion(result: ET.Element) -> Conversion:
    def text(tag: str) -> str:
        return result.findtext(f"sf:{tag}", default="", namespaces=SOAP_NS) or ""

    if text("success") == "true":
        return Conversion(True, text("leadId"), text("accountId"), text("contactId"))
    error = result.find("sf:errors", SOAP_NS)
    code = error.findtext("sf:statusCode", default="UNKNOWN", namespaces=SOAP_NS) if error is not None else "UNKNOWN"
    message = error.findtext("sf:message", default="", namespaces=SOAP_NS) if error is not None else ""
    return Conversion(False, text("leadId"), error_code=code, error_message=message)


def _convert_envelope(session_id: str, conversions: list[tuple[str, str | None, str | None]]) -> str:
    items = "".join(
        "<urn:leadConverts>"
        + (f"<urn:accountId>{escape(account_id)}</urn:accountId>" if account_id else "")
        + (f"<urn:contactId>{escape(contact_id)}</urn:contactId>" if contact_id else "")
        + "<urn:convertedStatus>Closed - Converted</urn:convertedStatus>"
        + "<urn:doNotCreateOpportunity>true</urn:doNotCreateOpportunity>"
        + f"<urn:leadId>{escape(lead_id)}</urn:leadId>"
        + "<urn:overwriteLeadSource>false</urn:overwriteLeadSource>"
        + "<urn:sendNotificationEmail>false</urn:sendNotificationEmail>"
        + "</urn:leadConverts>"
        for lead_id, account_id, contact_id in conversions
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:partner.soap.sforce.com">'
        f"<soapenv:Header><urn:SessionHeader><urn:sessionId>{escape(session_id)}</urn:sessionId>"
        "</urn:SessionHeader></soapenv:Header>"
        f"<soapenv:Body><urn:convertLead>{items}</urn:convertLead></soapenv:Body></soapenv:Envelope>"
    )


_clients: dict[tuple, SalesforceClient] = {}


def shared_client() -> SalesforceClient:
    """One client per process and configuration, so its token and connections are reused across drains."""
    key = (
        settings.SALESFORCE_INSTANCE_URL,
        settings.SALESFORCE_LOGIN_URL,
        settings.SALESFORCE_CLIENT_ID,
        settings.SALESFORCE_ACCESS_TOKEN,
        settings.SALESFORCE_API_VERSION,
        settings.SALESFORCE_TIMEOUT_SECONDS,
    )
    if key not in _clients:
        _clients.clear()
        _clients[key] = SalesforceClient()
    return _clients[key]
