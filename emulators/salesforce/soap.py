"""The SOAP partner API's ``convertLead`` (``POST /services/Soap/u/<version>``).

Request: a SOAP 1.1 envelope, ``SessionHeader/sessionId`` carrying the same token as REST, body
``<convertLead><leadConverts>…</leadConverts>…</convertLead>`` in ``urn:partner.soap.sforce.com``.
Answer: ``convertLeadResponse`` with one ``result`` per leadConvert, in order, or a SOAP fault
(HTTP 500) such as ``sf:INVALID_SESSION_ID``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from .errors import SFError

SOAPENV = "http://schemas.xmlsoap.org/soap/envelope/"
PARTNER = "urn:partner.soap.sforce.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
FAULT_NS = "urn:fault.partner.soap.sforce.com"


@dataclass
class SoapRequest:
    operation: str | None
    session_id: str | None
    lead_converts: list[dict[str, Any]] = field(default_factory=list)


class SoapParseError(Exception):
    pass


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(elem: ET.Element, name: str) -> ET.Element | None:
    for child in elem:
        if _local(child.tag) == name:
            return child
    return None


def _text(elem: ET.Element, name: str) -> str | None:
    child = _child(elem, name)
    if child is None:
        return None
    if child.get(f"{{{XSI}}}nil") == "true":
        return None
    value = (child.text or "").strip()
    return value or None


def _bool(elem: ET.Element, name: str, default: bool = False) -> bool:
    value = _text(elem, name)
    return default if value is None else value.lower() == "true"


def parse_request(body: bytes) -> SoapRequest:
    try:
        # The partner envelope is produced by the engine on loopback; expat resolves no external entities.
        root = ET.fromstring(body)  # noqa: S314
    except ET.ParseError as exc:
        raise SoapParseError(str(exc)) from None
    if _local(root.tag) != "Envelope":
        raise SoapParseError("root element is not a SOAP Envelope")
    header = _child(root, "Header")
    session_id = None
    if header is not None:
        session = _child(header, "SessionHeader")
        if session is not None:
            session_id = _text(session, "sessionId")
    soap_body = _child(root, "Body")
    if soap_body is None or len(soap_body) == 0:
        raise SoapParseError("SOAP Body is missing or empty")
    op_elem = soap_body[0]
    request = SoapRequest(operation=_local(op_elem.tag), session_id=session_id)
    if request.operation == "convertLead":
        for lc in op_elem:
            if _local(lc.tag) != "leadConverts":
                continue
            request.lead_converts.append(
                {
                    "lead_id": _text(lc, "leadId"),
                    "account_id": _text(lc, "accountId"),
                    "contact_id": _text(lc, "contactId"),
                    "converted_status": _text(lc, "convertedStatus"),
                    "do_not_create_opportunity": _bool(lc, "doNotCreateOpportunity"),
                    "opportunity_name": _text(lc, "opportunityName"),
                    "overwrite_lead_source": _bool(lc, "overwriteLeadSource"),
                    "send_notification_email": _bool(lc, "sendNotificationEmail"),
                }
            )
    return request


def _envelope(body: str, header: str = "", namespaces: str = f'xmlns="{PARTNER}"') -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAPENV}" {namespaces} xmlns:xsi="{XSI}">'
        f"{header}<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    ).encode()


def _limit_header(used: int, limit: int) -> str:
    return (
        "<soapenv:Header><LimitInfoHeader><limitInfo>"
        f"<current>{used}</current><limit>{limit}</limit><type>API REQUESTS</type>"
        "</limitInfo></LimitInfoHeader></soapenv:Header>"
    )


def _id(name: str, value: str | None) -> str:
    return f"<{name}>{escape(value)}</{name}>" if value else f'<{name} xsi:nil="true"/>'


def convert_lead_response(
    results: list[dict[str, Any] | SFError], lead_ids: list[str | None], usage: tuple[int, int]
) -> bytes:
    parts = []
    for result, lead_id in zip(results, lead_ids, strict=True):
        if isinstance(result, SFError):
            fields = "".join(f"<fields>{escape(f)}</fields>" for f in result.fields)
            parts.append(
                "<result>"
                '<accountId xsi:nil="true"/><contactId xsi:nil="true"/>'
                f"<errors>{fields}<message>{escape(result.message)}</message>"
                f"<statusCode>{escape(result.code)}</statusCode></errors>"
                f"{_id('leadId', lead_id)}"
                '<opportunityId xsi:nil="true"/><success>false</success></result>'
            )
        else:
            parts.append(
                "<result>"
                f"{_id('accountId', result['accountId'])}{_id('contactId', result['contactId'])}"
                f"{_id('leadId', result['leadId'])}{_id('opportunityId', result['opportunityId'])}"
                "<success>true</success></result>"
            )
    return _envelope(f"<convertLeadResponse>{''.join(parts)}</convertLeadResponse>", _limit_header(*usage))


def fault(code: str, message: str, *, client: bool = False) -> bytes:
    """A SOAP fault (sent with HTTP 500); ``client`` faults use ``soapenv:Client`` (malformed requests)."""
    if client:
        faultcode, faultstring, detail = f"soapenv:{code}", message, ""
    else:
        faultcode, faultstring = f"sf:{code}", f"{code}: {message}"
        detail = (
            '<detail><sf:UnexpectedErrorFault xsi:type="sf:UnexpectedErrorFault">'
            f"<sf:exceptionCode>{escape(code)}</sf:exceptionCode>"
            f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
            "</sf:UnexpectedErrorFault></detail>"
        )
    # Fault children are unqualified: no default namespace on a fault envelope.
    return _envelope(
        f"<soapenv:Fault><faultcode>{faultcode}</faultcode>"
        f"<faultstring>{escape(faultstring)}</faultstring>{detail}</soapenv:Fault>",
        namespaces=f'xmlns:sf="{FAULT_NS}"',
    )
